#include "vmm/api/request_bodies.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "devices/net/tap.h"
#include "vmm/api/api_error.h"
#include "vmm/api/json_fields.h"
#include "vmm/vm_config.h"

namespace ember::api {
namespace {

// Firecracker opens the kernel and initrd when the boot source is PUT, so a
// wrong path fails at once rather than at InstanceStart; ember checks too.
void require_host_file(const std::filesystem::path& path, std::string_view what,
                       std::string_view field) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (path.empty()) throw ApiError(fmt::format("{}: field '{}' is empty", what, field));
    if (ec || !std::filesystem::exists(status))
        throw ApiError(fmt::format("{}: {} {}: no such file", what, field, path.string()));
    if (std::filesystem::is_directory(status))
        throw ApiError(
            fmt::format("{}: {} {}: is a directory, not a file", what, field, path.string()));
}

// Accepts only the value ember implements for a Firecracker option it does
// not support, so a client asking for more gets an error, not less.
void only_default(JsonFields& f, std::string_view key, std::string_view expected,
                  std::string_view why) {
    if (auto v = f.optional_string(key); v && *v != expected)
        throw ApiError(fmt::format("{}: {} '{}' is not supported: {}", f.what(), key, *v, why));
}

void only_false(JsonFields& f, std::string_view key, std::string_view why) {
    if (f.optional_bool(key).value_or(false))
        throw ApiError(fmt::format("{}: {} true is not supported: {}", f.what(), key, why));
}

} // namespace

void validate_drive_id(std::string_view id) {
    if (id.empty() || id.size() > kBlockIdMax)
        throw ApiError(fmt::format("drive id '{}' must be 1 to {} characters (it is the disk's "
                                   "virtio serial number)",
                                   id, kBlockIdMax));
    for (char c : id) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
        if (!ok)
            throw ApiError(fmt::format(
                "drive id '{}': only letters, digits, '_', '-' and '.' are allowed", id));
    }
}

BootSource parse_boot_source(std::string_view body) {
    constexpr std::string_view what = "PUT /boot-source";
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    BootSource b;
    b.kernel = f.required_string("kernel_image_path");
    require_host_file(b.kernel, what, "kernel_image_path");
    if (auto initrd = f.optional_string("initrd_path")) {
        b.initrd = *initrd;
        require_host_file(*b.initrd, what, "initrd_path");
    }
    b.boot_args = f.optional_string("boot_args");
    f.finish();
    return b;
}

MachineConfig parse_machine_config(std::string_view body, const MachineConfig* base) {
    const std::string_view what = base ? "PATCH /machine-config" : "PUT /machine-config";
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    MachineConfig m = base ? *base : MachineConfig{};
    // Firecracker caps vcpus at 32; ember's limit is its one IOAPIC's APIC ids.
    auto cpus = base ? f.optional_uint("vcpu_count", kMaxCpus)
                     : std::optional{f.required_uint("vcpu_count", kMaxCpus)};
    if (cpus) {
        if (*cpus == 0) throw ApiError(fmt::format("{}: vcpu_count must be at least 1", what));
        m.vcpu_count = static_cast<uint32_t>(*cpus);
    }
    // The upper bound only keeps mem_size_mib << 20 from overflowing; the
    // host decides at InstanceStart whether it can provide that much.
    auto mib = base ? f.optional_uint("mem_size_mib", UINT64_MAX >> 20)
                    : std::optional{f.required_uint("mem_size_mib", UINT64_MAX >> 20)};
    if (mib) {
        if (*mib < (kMinMemBytes >> 20))
            throw ApiError(
                fmt::format("{}: mem_size_mib {} is too small: a guest needs at least {}", what,
                            *mib, kMinMemBytes >> 20));
        m.mem_size_mib = *mib;
    }
    only_false(f, "smt", "ember gives each vcpu its own core");
    only_false(f, "track_dirty_pages", "ember writes full checkpoints only");
    only_default(f, "cpu_template", "None", "ember passes the host CPUID through, filtered");
    if (auto h = f.optional_string("huge_pages")) {
        if (*h != "None" && *h != "2M")
            throw ApiError(
                fmt::format("{}: huge_pages '{}' is not supported: None or 2M", what, *h));
        m.huge_pages_2m = *h == "2M";
    }
    f.finish();
    if (m.huge_pages_2m && m.mem_size_mib % 2 != 0)
        throw ApiError(
            fmt::format("{}: mem_size_mib {} with huge_pages 2M: must be a multiple of 2", what,
                        m.mem_size_mib));
    return m;
}

namespace {
// A body's id field (drive_id, iface_id), which must be the one in the path.
std::string body_id(JsonFields& f, const char* key, std::string_view path_id) {
    auto id = f.required_string(key);
    if (id != path_id)
        throw ApiError(fmt::format("{}: {} '{}' in the body does not match '{}' in the path",
                                   f.what(), key, id, path_id));
    return id;
}
} // namespace

RateLimitUpdate parse_rate_limiter_update(const nlohmann::json& value, std::string_view what,
                                          std::string_view key) {
    const std::string where = fmt::format("{}: {}", what, key);
    if (!value.is_object()) throw ApiError(fmt::format("{} must be an object", where));
    JsonFields f(value, where);
    auto bucket = [&](std::string_view name) -> std::optional<std::optional<TokenBucketSpec>> {
        const auto* b = f.optional_value(name);
        if (b == nullptr) return std::nullopt; // left out
        const std::string at = fmt::format("{}.{}", where, name);
        if (!b->is_object()) throw ApiError(fmt::format("{} must be an object", at));
        JsonFields g(*b, at);
        TokenBucketSpec spec{g.required_uint("size", kMaxBucketTokens),
                             g.optional_uint("one_time_burst", kMaxBucketTokens).value_or(0),
                             g.required_uint("refill_time", kMaxRefillTimeMs)};
        g.finish();
        // Firecracker's rule: such a bucket limits nothing.
        if (spec.size == 0 || spec.refill_time_ms == 0)
            return std::optional<TokenBucketSpec>{std::nullopt};
        return std::optional<TokenBucketSpec>{spec};
    };
    RateLimitUpdate update{bucket("bandwidth"), bucket("ops")};
    f.finish();
    return update;
}

RateLimit RateLimitUpdate::applied_to(const RateLimit& current) const {
    return {bandwidth ? *bandwidth : current.bandwidth, ops ? *ops : current.ops};
}

RateLimit parse_rate_limiter(const nlohmann::json& value, std::string_view what,
                             std::string_view key) {
    return parse_rate_limiter_update(value, what, key).applied_to({});
}

DriveUpdate parse_drive_update(std::string_view body, std::string_view path_id) {
    const std::string what = fmt::format("PATCH /drives/{}", path_id);
    validate_drive_id(path_id);
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    DriveUpdate u;
    u.drive_id = body_id(f, "drive_id", path_id);
    if (f.optional_value("path_on_host"))
        throw ApiError(fmt::format("{}: ember cannot change the file of a running VM's drive "
                                   "(path_on_host); only rate_limiter",
                                   what));
    if (const auto* limit = f.optional_value("rate_limiter"))
        u.rate_limiter = parse_rate_limiter_update(*limit, what);
    f.finish();
    return u;
}

DriveConfig parse_drive(std::string_view body, std::string_view path_id) {
    const std::string what = fmt::format("PUT /drives/{}", path_id);
    validate_drive_id(path_id);
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    DriveConfig d;
    d.drive_id = body_id(f, "drive_id", path_id);
    d.is_root_device = f.required_bool("is_root_device");
    d.path_on_host = f.required_string("path_on_host");
    require_host_file(d.path_on_host, what, "path_on_host");
    d.is_read_only = f.optional_bool("is_read_only").value_or(false);
    d.partuuid = f.optional_string("partuuid");
    if (auto cache = f.optional_string("cache_type")) {
        // "Unsafe" (Firecracker's default) acknowledges flushes without doing
        // them; ember always honours VIRTIO_BLK_T_FLUSH, which is safe for
        // both. "Direct" is ember's O_DIRECT mode (--disk ...,cache=none).
        if (*cache == "Unsafe" || *cache == "Writeback")
            d.cache = DiskSpec::Cache::writeback;
        else if (*cache == "Direct")
            d.cache = DiskSpec::Cache::none;
        else
            throw ApiError(fmt::format(
                "{}: cache_type '{}' is not one of Unsafe, Writeback, Direct", what, *cache));
    }
    if (auto engine = f.optional_string("io_engine")) {
        if (*engine == "Sync")
            d.engine = DiskSpec::Engine::sync;
        else if (*engine == "Async")
            d.engine = DiskSpec::Engine::uring;
        else
            throw ApiError(
                fmt::format("{}: io_engine '{}' is not one of Sync, Async", what, *engine));
    }
    if (const auto* limit = f.optional_value("rate_limiter"))
        d.rate_limit = parse_rate_limiter(*limit, what);
    if (f.optional_value("socket"))
        throw ApiError(
            fmt::format("{}: vhost-user drives (socket) are not supported by ember", what));
    f.finish();
    return d;
}

ActionType parse_action(std::string_view body) {
    constexpr std::string_view what = "PUT /actions";
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    const auto type = f.required_string("action_type");
    f.finish();
    if (type == "InstanceStart") return ActionType::instance_start;
    if (type == "SendCtrlAltDel") return ActionType::send_ctrl_alt_del;
    if (type == "FlushMetrics") return ActionType::flush_metrics;
    throw ApiError(fmt::format(
        "{}: action_type '{}' is not one of InstanceStart, SendCtrlAltDel, FlushMetrics", what,
        type));
}

VmStateChange parse_vm_state(std::string_view body) {
    constexpr std::string_view what = "PATCH /vm";
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    const auto state = f.required_string("state");
    f.finish();
    if (state == "Paused") return VmStateChange::pause;
    if (state == "Resumed") return VmStateChange::resume;
    throw ApiError(fmt::format("{}: state '{}' is not one of Paused, Resumed", what, state));
}

void parse_entropy_config(std::string_view body) {
    constexpr std::string_view what = "PUT /entropy";
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    if (const auto* limiter = f.optional_value("rate_limiter"); limiter && !limiter->is_null())
        throw ApiError(fmt::format(
            "{}: ember's entropy device has no rate_limiter: each request is served on the "
            "guest's own vcpu, so a guest that reads without end slows only itself; leave "
            "rate_limiter out (or null)",
            what));
    f.finish();
}

namespace {
// The {iface_id} of a network-interfaces URL, checked before anything else
// (it names the interface in every later message).
void check_iface_id(std::string_view what, std::string_view path_id) {
    try {
        check_net_spec(NetSpec{std::string(path_id), "tap", std::nullopt});
    } catch (const NetSpecError& e) {
        throw ApiError(fmt::format("{}: {}", what, e.what()));
    }
}
} // namespace

NetSpec parse_network_interface(std::string_view body, std::string_view path_id) {
    const std::string what = fmt::format("PUT /network-interfaces/{}", path_id);
    check_iface_id(what, path_id);
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    NetSpec n;
    n.id = body_id(f, "iface_id", path_id);
    n.tap = f.required_string("host_dev_name");
    if (const auto* limit = f.optional_value("rx_rate_limiter"))
        n.rx_limit = parse_rate_limiter(*limit, what, "rx_rate_limiter");
    if (const auto* limit = f.optional_value("tx_rate_limiter"))
        n.tx_limit = parse_rate_limiter(*limit, what, "tx_rate_limiter");
    try {
        if (auto mac = f.optional_string("guest_mac")) n.mac = parse_mac(*mac);
        check_net_spec(n);
    } catch (const NetSpecError& e) {
        throw ApiError(fmt::format("{}: {}", what, e.what()));
    }
    f.finish();
    return n;
}

NetUpdate parse_network_interface_update(std::string_view body, std::string_view path_id) {
    const std::string what = fmt::format("PATCH /network-interfaces/{}", path_id);
    check_iface_id(what, path_id);
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    NetUpdate u;
    u.iface_id = body_id(f, "iface_id", path_id);
    // Firecracker's PATCH takes the rate limiters only, too: a guest's NIC
    // keeps its tap and its MAC while it runs.
    for (const char* key : {"host_dev_name", "guest_mac"})
        if (f.optional_value(key))
            throw ApiError(fmt::format("{}: {} cannot be changed with PATCH, only rx_rate_limiter "
                                       "and tx_rate_limiter (before InstanceStart, PUT the "
                                       "interface again)",
                                       what, key));
    if (const auto* limit = f.optional_value("rx_rate_limiter"))
        u.rx_rate_limiter = parse_rate_limiter_update(*limit, what, "rx_rate_limiter");
    if (const auto* limit = f.optional_value("tx_rate_limiter"))
        u.tx_rate_limiter = parse_rate_limiter_update(*limit, what, "tx_rate_limiter");
    f.finish();
    return u;
}

std::filesystem::path parse_metrics_config(std::string_view body) {
    constexpr std::string_view what = "PUT /metrics";
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    std::filesystem::path path = f.required_string("metrics_path");
    f.finish();
    if (path.empty()) throw ApiError(fmt::format("{}: metrics_path is empty", what));
    return path;
}

LoggerConfig parse_logger_config(std::string_view body) {
    constexpr std::string_view what = "PUT /logger";
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    LoggerConfig c;
    if (auto p = f.optional_string("log_path")) {
        if (p->empty()) throw ApiError(fmt::format("{}: log_path is empty", what));
        c.log_path = *p;
    }
    if (auto level = f.optional_string("level")) {
        c.level = log::parse_level(*level);
        if (!c.level)
            throw ApiError(fmt::format("{}: level '{}' is not one of Error, Warning, Info, Debug, "
                                       "Trace, Off",
                                       what, *level));
    }
    // Accepted for Firecracker's clients; ember's line format is fixed (the
    // level named on all but info lines, no source location).
    f.optional_bool("show_level");
    f.optional_bool("show_log_origin");
    if (auto module = f.optional_string("module"); module && !module->empty())
        throw ApiError(fmt::format("{}: module '{}' is not supported: ember's log has no modules "
                                   "to filter",
                                   what, *module));
    f.finish();
    return c;
}

SnapshotCreate parse_snapshot_create(std::string_view body) {
    constexpr std::string_view what = "PUT /snapshot/create";
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    SnapshotCreate s;
    s.dir = f.required_string("snapshot_path");
    if (s.dir.empty()) throw ApiError(fmt::format("{}: snapshot_path is empty", what));
    if (auto mem = f.optional_string("mem_file_path")) s.mem_file_path = *mem;
    only_default(f, "snapshot_type", "Full", "ember writes full checkpoints only");
    f.finish();
    std::error_code ec;
    if (std::filesystem::exists(s.dir, ec) && !std::filesystem::is_directory(s.dir, ec))
        throw ApiError(fmt::format("{}: snapshot_path {} exists and is not a directory (ember "
                                   "writes a checkpoint directory there)",
                                   what, s.dir.string()));
    return s;
}

namespace {
// The entries of an optional list field of PUT /snapshot/load (`key`), each
// an object read by `entry` (which calls finish() on it).
template <class Entry>
void each_override(JsonFields& f, std::string_view key, std::string_view what, Entry&& entry) {
    const auto* list = f.optional_value(key);
    if (list == nullptr) return;
    if (!list->is_array())
        throw ApiError(
            fmt::format("{}: {} must be an array, not {}", what, key, list->type_name()));
    for (const auto& item : *list) {
        if (!item.is_object())
            throw ApiError(fmt::format("{}: each {} entry must be an object", what, key));
        JsonFields o(item, fmt::format("{} {}", what, key));
        entry(o);
    }
}
} // namespace

SnapshotLoad parse_snapshot_load(std::string_view body) {
    constexpr std::string_view what = "PUT /snapshot/load";
    const auto json = parse_json_object(body, what);
    JsonFields f(json, what);
    SnapshotLoad s;
    s.dir = f.required_string("snapshot_path");
    // Guest memory lives inside the checkpoint directory; Firecracker's
    // memory file fields are accepted (so its clients work unchanged) but the
    // memory is always read from the directory.
    const bool has_mem_file = f.optional_string("mem_file_path").has_value();
    if (const auto* backend = f.optional_value("mem_backend")) {
        if (has_mem_file)
            throw ApiError(fmt::format("{}: give mem_file_path or mem_backend, not both", what));
        if (!backend->is_object())
            throw ApiError(fmt::format("{}: mem_backend must be an object, not {}", what,
                                       backend->type_name()));
        JsonFields b(*backend, fmt::format("{} mem_backend", what));
        const auto type = b.required_string("backend_type");
        b.required_string("backend_path");
        b.finish();
        if (type != "File")
            throw ApiError(fmt::format("{}: mem_backend backend_type '{}' is not supported (ember "
                                       "loads memory from the checkpoint directory: use File)",
                                       what, type));
    }
    s.resume_vm = f.optional_bool("resume_vm").value_or(false);
    only_false(f, "enable_diff_snapshots", "ember writes full checkpoints only");
    only_false(f, "track_dirty_pages", "ember writes full checkpoints only");
    only_false(f, "clock_realtime", "kvmclock resumes from the checkpoint");
    each_override(f, "network_overrides", what, [&](JsonFields& o) {
        auto id = o.required_string("iface_id");
        auto tap = o.required_string("host_dev_name");
        o.finish();
        if (auto why = tap_name_problem(tap))
            throw ApiError(fmt::format("{}: network_overrides {}: {}", what, id, *why));
        if (!s.net_overrides.emplace(id, tap).second)
            throw ApiError(
                fmt::format("{}: network_overrides names interface '{}' twice", what, id));
    });
    if (f.optional_value("vsock_override"))
        throw ApiError(fmt::format("{}: vsock_override: ember has no vsock device", what));
    each_override(f, "drive_overrides", what, [&](JsonFields& o) {
        auto id = o.required_string("drive_id");
        std::filesystem::path path = o.required_string("path_on_host");
        o.finish();
        validate_drive_id(id);
        require_host_file(path, what, "drive_overrides path_on_host");
        if (!s.drive_overrides.emplace(id, path).second)
            throw ApiError(fmt::format("{}: drive_overrides names drive '{}' twice", what, id));
    });
    f.finish();
    std::error_code ec;
    if (!std::filesystem::is_directory(s.dir, ec))
        throw ApiError(fmt::format("{}: snapshot_path {} is not a checkpoint directory", what,
                                   s.dir.string()));
    return s;
}

nlohmann::json to_json(const MachineConfig& config) {
    return {{"vcpu_count", config.vcpu_count},
            {"mem_size_mib", config.mem_size_mib},
            {"smt", false},
            {"track_dirty_pages", false},
            {"huge_pages", config.huge_pages_2m ? "2M" : "None"}};
}

} // namespace ember::api
