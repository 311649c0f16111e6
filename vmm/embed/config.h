// libember's public configuration (include/ember/vm.h) turned into the
// internal one (vmm/vm_config.h). Every check that needs no KVM is done here,
// so a bad configuration fails with a clear ember::Error before /dev/kvm is
// opened (and can be unit-tested without KVM).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ember/vm.h"
#include "vmm/exit_monitor.h"
#include "vmm/vm.h"
#include "vmm/vm_config.h"

namespace ember::embed {

::ember::VmConfig to_internal(const VmConfig& config);
::ember::ConsoleSpec to_internal(const ConsoleConfig& console);
::ember::RateLimit to_internal(const RateLimitConfig& limit);
// What the VM's thread may take over in the process: only what was asked for.
::ember::RunOptions run_options(const ConsoleConfig& console,
                                const std::optional<SignalCheckpoint>& on_signal);
// Applies an opt-in SIGUSR1 checkpoint to the internal configuration.
void apply_signal_checkpoint(::ember::VmConfig& config,
                             const std::optional<SignalCheckpoint>& on_signal);
// Applies how checkpoints are written (drain, disk copies).
void apply_checkpoint_options(::ember::VmConfig& config, const CheckpointOptions& options);
// Parses fault specs (VmConfig::faults); throws ember::Error naming a bad one.
std::vector<fault::FaultSpec> to_internal(const std::vector<std::string>& faults);
ExitInfo to_public(const ::ember::VmExit& exit);

} // namespace ember::embed
