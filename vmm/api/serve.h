// `ember --api-sock PATH` and `ember run ... --api-sock PATH`: serve the
// control API until the VM stops (or, with no VM yet, until SIGINT/SIGTERM).
#pragma once

#include <filesystem>
#include <memory>

#include "vmm/vm_config.h"

namespace ember {
class Vm;

// `vm` is a VM already built from `config` (ember run), or null to wait for
// configuration over the socket. Returns the process exit status.
int serve_api(const std::filesystem::path& socket, const VmConfig& config, std::unique_ptr<Vm> vm);

} // namespace ember
