// The ember command as a client of libember: what the command line (vmm/cli.h)
// or the control socket (vmm/api) asked for, as libember's public
// configuration (include/ember/vm.h). Both keep parsing into the internal
// VmConfig; every VM the command runs is an ember::embed::Vm.
#pragma once

#include "ember/vm.h"
#include "vmm/cli.h"

namespace ember {

// Throws ember::Error for what libember cannot express (a callback console,
// which the CLI never produces).
embed::VmConfig to_embed(const VmConfig& config);
embed::VmConfig to_embed(const RunRequest& run);
embed::ConsoleConfig to_embed(const ConsoleSpec& console);
embed::RateLimitConfig to_embed(const RateLimit& limit);
embed::RestoreOverrides to_embed(const RestoreRequest& restore);

// Logs how the VM stopped, for the person at the terminal, and returns the
// exit status (README "Exit status"): 0 poweroff, reboot, checkpoint or
// Ctrl-A x; 1 panic or error.
int report_exit(const embed::ExitInfo& exit);

} // namespace ember
