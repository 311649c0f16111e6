// The ember command as a client of libember: what the command line asked for
// (vmm/cli.h) as libember's public configuration (include/ember/vm.h). The
// CLI keeps parsing into the internal VmConfig, which `run --api-sock` hands
// to the control socket; `run` and `restore` go through ember::embed::Vm.
#pragma once

#include "ember/vm.h"
#include "vmm/cli.h"

namespace ember {

// Throws ember::Error for what libember cannot express (a callback console,
// which the CLI never produces).
embed::VmConfig to_embed(const RunRequest& run);
embed::RestoreOverrides to_embed(const RestoreRequest& restore);

} // namespace ember
