// `ember --api-sock PATH` and `ember run ... --api-sock PATH`: serve the
// control API until the VM stops (or, with no VM yet, until SIGINT/SIGTERM).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "ember/vm.h"
#include "vmm/api/metrics_file.h"
#include "vmm/vm_config.h"

namespace ember {

// `vm` is a libember VM already built from `config` (ember run), or empty to
// wait for configuration over the socket. `metrics`: --metrics-path, as if
// PUT /metrics had named it; `instance_id`: --id, for GET /. Returns the
// process exit status.
int serve_api(const std::filesystem::path& socket, const VmConfig& config,
              std::optional<embed::Vm> vm, std::optional<api::MetricsFile> metrics,
              const std::string& instance_id);

} // namespace ember
