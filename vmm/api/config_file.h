// `ember --config-file PATH`: Firecracker's JSON VM configuration file, whose
// sections are the bodies of its API requests ("boot-source",
// "machine-config", "drives", "logger", "metrics"). Each section goes through
// the control socket's own request handling (ApiRouter), so a section is
// accepted or refused here exactly as the same body would be by PUT, with
// the same message, and a Firecracker configuration runs unchanged where
// ember has what it asks for.
#pragma once

#include <filesystem>
#include <optional>

#include "vmm/api/request_bodies.h"
#include "vmm/errors.h"
#include "vmm/vm_config.h"

namespace ember::api {

// The file cannot be read or says something ember cannot do. what() names
// the file and the section; the ember command exits 2, as for a bad flag.
class ConfigFileError : public Error {
  public:
    using Error::Error;
};

struct ConfigFile {
    VmConfig config;                                   // what InstanceStart would build
    LoggerConfig logger;                               // "logger" (empty when absent)
    std::optional<std::filesystem::path> metrics_path; // "metrics"
};

// Reads and checks `path`; `defaults` supplies what the file does not
// configure (the console), as the control socket's defaults do. The kernel,
// initrd and drive files are checked as PUT checks them. Throws
// ConfigFileError.
ConfigFile read_config_file(const std::filesystem::path& path, const VmConfig& defaults);

} // namespace ember::api
