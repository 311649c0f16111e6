// Command-line parsing for the `ember` binary (README "Command line").
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "vmm/errors.h"
#include "vmm/log.h"
#include "vmm/vm_config.h"

namespace ember {

// Bad usage: the process exits with status 2 after printing the message.
class UsageError : public Error {
public:
    using Error::Error;
};

struct HelpRequest {
    std::string text;
};
struct VersionRequest {};
// `ember --list-faults`: every fault point with a one-line description.
struct ListFaultsRequest {
    std::string text;
};
// Firecracker's default --id: what GET / reports without one.
inline constexpr const char* kDefaultInstanceId = "anonymous-instance";

// What every command that runs a VM (run, restore, --api-sock, --config-file)
// takes about the process rather than the VM: its log, its metrics file, its
// system-call filter. main() applies them before anything is built.
struct ProcessOptions {
    bool verbose = false;                              // -v: --level Debug
    std::optional<log::Level> log_level;               // --level
    std::optional<std::filesystem::path> metrics_path; // --metrics-path
    std::optional<std::filesystem::path> log_path;     // --log-path
    bool seccomp = true;                               // not with --no-seccomp
};

struct RunRequest {
    VmConfig config;
    std::optional<std::filesystem::path> api_sock; // also serve the control socket
    std::string instance_id = kDefaultInstanceId;  // --id: GET / on the socket
    ProcessOptions process;
};
// `ember --api-sock PATH` with no command: wait for configuration over the socket.
struct ApiServeRequest {
    std::filesystem::path api_sock;
    std::string instance_id = kDefaultInstanceId;
    ProcessOptions process;
};

// `ember --config-file PATH [--api-sock PATH]`: build the VM from a
// Firecracker JSON configuration file and run it (serving the control socket
// too when asked), as Firecracker does.
struct ConfigFileRequest {
    std::filesystem::path config_file;
    std::optional<std::filesystem::path> api_sock;
    std::string instance_id = kDefaultInstanceId;
    ProcessOptions process;
};

// What SIGUSR1 does (`run` and `restore` take the same options).
struct CheckpointOptions {
    std::optional<std::filesystem::path> dir; // --checkpoint-dir
    bool continue_after = false;              // --on-checkpoint continue
    bool drain = false;                       // --checkpoint-drain
    bool copy_disks = false;                  // --checkpoint-disks copy
    void apply_to(VmConfig& c) const {
        c.checkpoint_dir = dir;
        c.continue_after_checkpoint = continue_after;
        c.checkpoint_drain = drain;
        c.checkpoint_copy_disks = copy_disks;
    }
};
struct RestoreRequest {
    std::filesystem::path snapshot_dir;
    std::vector<std::pair<std::string, std::string>> disk_overrides; // id -> new path
    std::vector<std::pair<std::string, std::string>> net_overrides;  // id -> tap
    ConsoleSpec console;
    CheckpointOptions checkpoint;
    bool paused = false;
    std::vector<fault::FaultSpec> faults; // --fault, as for run
    ProcessOptions process;
};
struct SnapshotInfoRequest {
    std::filesystem::path snapshot_dir;
    std::optional<std::filesystem::path> compare_with;
};

using Command =
    std::variant<HelpRequest, VersionRequest, RunRequest, RestoreRequest, SnapshotInfoRequest,
                 ApiServeRequest, ConfigFileRequest, ListFaultsRequest>;

// Parses argv (without argv[0] semantics: args[0] is the program name).
// Throws UsageError with a message naming the offending value.
Command parse_command_line(const std::vector<std::string>& args);

// "512M", "2G", "1024K", "4096" (MiB when there is no suffix). Throws UsageError.
uint64_t parse_size(std::string_view text, std::string_view option);

// "2,3": one host CPU number per vcpu (--vcpu-cpus), in vcpu order; checked
// here only as numbers (check_vcpu_cpus checks them against the host).
// Throws UsageError.
std::vector<uint32_t> parse_cpu_numbers(std::string_view text, std::string_view option);

} // namespace ember
