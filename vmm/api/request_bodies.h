// Firecracker's request bodies (swagger firecracker.yaml, definitions
// BootSource, MachineConfiguration, Drive, InstanceActionInfo, Vm,
// SnapshotCreateParams, SnapshotLoadParams), parsed strictly into ember's
// terms. Every function throws ApiError (400) with a message naming the
// request and the field; the README table "Control socket" lists what
// matches Firecracker and what differs.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "devices/block/disk_spec.h"
#include "devices/net/net_spec.h"
#include "vmm/log.h"

namespace ember::api {

struct BootSource {
    std::filesystem::path kernel;                // kernel_image_path
    std::optional<std::filesystem::path> initrd; // initrd_path
    std::optional<std::string> boot_args;        // absent: ember's default command line
};

struct MachineConfig {
    uint32_t vcpu_count{1};
    uint64_t mem_size_mib{512}; // ember's default (Firecracker's is 128)
    bool huge_pages_2m{false};  // huge_pages "2M" (Firecracker's names: "None", "2M")
};

struct DriveConfig {
    std::string drive_id;
    std::filesystem::path path_on_host;
    bool is_root_device{false};
    bool is_read_only{false};
    std::optional<std::string> partuuid;
    DiskSpec::Cache cache{DiskSpec::Cache::writeback};
    DiskSpec::Engine engine{DiskSpec::Engine::uring};
    RateLimit rate_limit{}; // rate_limiter
};

// A drive's "rate_limiter" object (and a network interface's
// "rx_rate_limiter" and "tx_rate_limiter": `key` names the field in
// messages): optional "bandwidth" and "ops" buckets of {size, one_time_burst
// (optional), refill_time (ms)}. As in Firecracker, a bucket whose size or
// refill_time is 0 is no limit.
RateLimit parse_rate_limiter(const nlohmann::json& value, std::string_view what,
                             std::string_view key = "rate_limiter");

// The same object in PATCH /drives and PATCH /network-interfaces, where a
// bucket left out keeps the current one (Firecracker's BucketUpdate: none,
// disabled, or a new one).
struct RateLimitUpdate {
    std::optional<std::optional<TokenBucketSpec>> bandwidth;
    std::optional<std::optional<TokenBucketSpec>> ops;
    RateLimit applied_to(const RateLimit& current) const;
};
RateLimitUpdate parse_rate_limiter_update(const nlohmann::json& value, std::string_view what,
                                          std::string_view key = "rate_limiter");

// PATCH /drives/{id} on a started VM: the rate limiter only (ember cannot
// change a running disk's file).
struct DriveUpdate {
    std::string drive_id;
    std::optional<RateLimitUpdate> rate_limiter;
};
DriveUpdate parse_drive_update(std::string_view body, std::string_view path_id);

enum class ActionType { instance_start, send_ctrl_alt_del, flush_metrics };
enum class VmStateChange { pause, resume };

// PUT /entropy: Firecracker's EntropyDeviceConfig. ember's device has no rate
// limiter (see VirtioRng): a "rate_limiter" other than null is refused.
void parse_entropy_config(std::string_view body);
// PUT /network-interfaces/{id}: Firecracker's NetworkInterface (iface_id,
// host_dev_name, guest_mac, rx_rate_limiter, tx_rate_limiter; a limiter
// left out or null is no limit).
NetSpec parse_network_interface(std::string_view body, std::string_view path_id);

// PATCH /network-interfaces/{id}: Firecracker's PartialNetworkInterface, the
// rate limiters only (a limiter left out or null is kept; so is a bucket
// left out of one). The tap and the MAC cannot change on a running guest.
struct NetUpdate {
    std::string iface_id;
    std::optional<RateLimitUpdate> rx_rate_limiter;
    std::optional<RateLimitUpdate> tx_rate_limiter;
};
NetUpdate parse_network_interface_update(std::string_view body, std::string_view path_id);

// PUT /metrics: where metrics lines go (a file or a named pipe).
std::filesystem::path parse_metrics_config(std::string_view body);

// PUT /logger: where ember's log goes from now on, and from which level.
struct LoggerConfig {
    std::optional<std::filesystem::path> log_path; // unset: stays where it is
    std::optional<log::Level> level;               // unset: unchanged
};
LoggerConfig parse_logger_config(std::string_view body);

struct SnapshotCreate {
    std::filesystem::path dir; // snapshot_path: ember's checkpoint directory
    std::optional<std::filesystem::path> mem_file_path; // accepted, not used
};

struct SnapshotLoad {
    std::filesystem::path dir; // snapshot_path
    bool resume_vm{false};
    std::map<std::string, std::filesystem::path> drive_overrides; // ember extension
    std::map<std::string, std::string> net_overrides; // network_overrides: iface_id -> tap
};

BootSource parse_boot_source(std::string_view body);
// PUT replaces the whole configuration (both fields required); PATCH
// (`base` non-null) changes only the fields present.
MachineConfig parse_machine_config(std::string_view body, const MachineConfig* base = nullptr);
// `path_id` is the {drive_id} of the URL; the body's drive_id must match it.
DriveConfig parse_drive(std::string_view body, std::string_view path_id);
ActionType parse_action(std::string_view body);
VmStateChange parse_vm_state(std::string_view body);
SnapshotCreate parse_snapshot_create(std::string_view body);
SnapshotLoad parse_snapshot_load(std::string_view body);

// Firecracker's MachineConfiguration as GET /machine-config returns it.
nlohmann::json to_json(const MachineConfig& config);

// Drive ids double as the virtio-blk serial (GET_ID, at most 20 bytes).
void validate_drive_id(std::string_view id);

} // namespace ember::api
