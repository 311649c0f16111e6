#include "vmm/api/api_router.h"

#include <fmt/format.h>

#include <algorithm>

#include "vmm/api/api_error.h"
#include "vmm/api/output_file.h"
#include "vmm/log.h"
#include "vmm/platform.h"
#include "vmm/snapshot/restore_config.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/vm.h"

namespace ember::api {
namespace {

constexpr std::string_view kDrivesPrefix = "/drives/";
constexpr std::string_view kNetPrefix = "/network-interfaces/";

// 405 carries the Allow header (RFC 9110 §15.5.6) with it.
class MethodNotAllowed final : public ApiError {
  public:
    MethodNotAllowed(const HttpRequest& r, std::string_view allow)
        : ApiError(fmt::format("{} {}: method not allowed (use {})", r.method, r.path, allow), 405),
          allow_(allow) {}
    const std::string& allow() const noexcept { return allow_; }

  private:
    std::string allow_;
};

[[noreturn]] void method_not_allowed(const HttpRequest& r, std::string_view allow) {
    throw MethodNotAllowed(r, allow);
}

} // namespace

ApiRouter::ApiRouter(VmController& controller, VmConfig defaults, InstanceInfo info)
    : controller_(controller), defaults_(std::move(defaults)), info_(std::move(info)) {
    machine_.vcpu_count = defaults_.cpus;
    machine_.mem_size_mib = defaults_.mem_bytes >> 20;
}

void ApiRouter::attach_running(const VmConfig& config) {
    state_.transition(VmState::running);
    defaults_ = config;
    describe_vm(config);
    configured_ = true;
}

void ApiRouter::describe_vm(const VmConfig& config) {
    boot_ = BootSource{config.kernel, config.initrd, config.cmdline};
    machine_ =
        MachineConfig{config.cpus, config.mem_bytes >> 20, config.huge_pages == HugePages::two_mib};
    drives_.clear();
    for (const auto& d : config.disks)
        drives_.push_back(DriveConfig{d.id, d.path, false, d.readonly, std::nullopt, d.cache,
                                      d.engine, d.rate_limit});
    entropy_ = config.entropy;
    nets_ = config.nets;
}

void ApiRouter::describe_loaded(const RestoreRequest& request) {
    try {
        VmConfig c = Vm::saved_config(SnapshotReader(request.dir).config());
        for (auto& d : c.disks)
            if (const auto it = request.disk_overrides.find(d.id);
                it != request.disk_overrides.end())
                d.path = it->second.string();
        apply_net_overrides(c, request.net_overrides);
        describe_vm(c);
    } catch (const Error& e) {
        log::debug("GET /vm/config will not describe the loaded VM: {}", e.what());
    }
}

void ApiRouter::vm_stopped() {
    if (state_.state() != VmState::stopped) state_.transition(VmState::stopped);
}

HttpResponse ApiRouter::handle(const HttpRequest& request) noexcept {
    try {
        HttpResponse r = dispatch(request);
        log::debug("API {} {}: {}", request.method, request.path, r.status);
        return r;
    } catch (const MethodNotAllowed& e) {
        log::info("API {} {}: 405", request.method, request.path);
        HttpResponse r = fault(405, e.what());
        r.allow = e.allow();
        return r;
    } catch (const ApiError& e) {
        log::info("API {} {}: {} {}", request.method, request.path, e.status(), e.what());
        return fault(e.status(), e.what());
    } catch (const Error& e) {
        // The VM refused (a file it could not open, KVM, a checkpoint): the
        // request was valid but could not be carried out; Firecracker
        // answers these with 400 too.
        log::info("API {} {}: 400 {}", request.method, request.path, e.what());
        return fault(400, e.what());
    } catch (const std::exception& e) {
        log::error("API {} {}: internal error: {}", request.method, request.path, e.what());
        return fault(500, fmt::format("internal error: {}", e.what()));
    }
}

HttpResponse ApiRouter::dispatch(const HttpRequest& r) {
    const auto& p = r.path;
    const auto& m = r.method;
    if (p == "/") {
        if (m == "GET") return get_instance();
        method_not_allowed(r, "GET");
    }
    if (p == "/version") {
        if (m == "GET") return get_version();
        method_not_allowed(r, "GET");
    }
    if (p == "/boot-source") {
        if (m == "PUT") return put_boot_source(r.body);
        method_not_allowed(r, "PUT");
    }
    if (p == "/machine-config") {
        if (m == "GET") return get_machine_config();
        if (m == "PUT") return put_machine_config(r.body, false);
        if (m == "PATCH") return put_machine_config(r.body, true);
        method_not_allowed(r, "GET, PUT, PATCH");
    }
    if (p.starts_with(kDrivesPrefix) && p.size() > kDrivesPrefix.size() &&
        p.find('/', kDrivesPrefix.size()) == std::string::npos) {
        if (m == "PUT") return put_drive(p.substr(kDrivesPrefix.size()), r.body);
        if (m == "PATCH") return patch_drive(p.substr(kDrivesPrefix.size()), r.body);
        method_not_allowed(r, "PUT, PATCH");
    }
    if (p.starts_with(kNetPrefix) && p.size() > kNetPrefix.size() &&
        p.find('/', kNetPrefix.size()) == std::string::npos) {
        if (m == "PUT") return put_network_interface(p.substr(kNetPrefix.size()), r.body);
        if (m == "PATCH") return patch_network_interface(p.substr(kNetPrefix.size()), r.body);
        method_not_allowed(r, "PUT, PATCH");
    }
    if (p == "/actions") {
        if (m == "PUT") return put_action(r.body);
        method_not_allowed(r, "PUT");
    }
    if (p == "/vm") {
        if (m == "PATCH") return patch_vm(r.body);
        method_not_allowed(r, "PATCH");
    }
    if (p == "/vm/config") {
        if (m == "GET") return get_vm_config();
        method_not_allowed(r, "GET");
    }
    if (p == "/snapshot/create") {
        if (m == "PUT") return put_snapshot_create(r.body);
        method_not_allowed(r, "PUT");
    }
    if (p == "/entropy") {
        if (m == "PUT") return put_entropy(r.body);
        method_not_allowed(r, "PUT");
    }
    if (p == "/metrics") {
        if (m == "PUT") return put_metrics(r.body);
        method_not_allowed(r, "PUT");
    }
    if (p == "/logger") {
        if (m == "PUT") return put_logger(r.body);
        method_not_allowed(r, "PUT");
    }
    if (p == "/snapshot/load") {
        if (m == "PUT") return put_snapshot_load(r.body);
        method_not_allowed(r, "PUT");
    }
    throw ApiError(fmt::format("{} {}: no such resource", m, p), 404);
}

HttpResponse ApiRouter::get_instance() const {
    return json_response(200, {{"id", info_.id},
                               {"state", to_string(state_.state())},
                               {"vmm_version", info_.vmm_version},
                               {"app_name", "ember"}});
}

HttpResponse ApiRouter::get_version() const {
    // Firecracker's FirecrackerVersion; the value is ember's version.
    return json_response(200, {{"firecracker_version", info_.vmm_version}});
}

HttpResponse ApiRouter::get_machine_config() const {
    return json_response(200, to_json(machine_));
}

HttpResponse ApiRouter::get_vm_config() const {
    // A subset of Firecracker's FullVmConfiguration: what ember configures.
    nlohmann::json out;
    out["machine-config"] = to_json(machine_);
    if (boot_) {
        nlohmann::json b = {{"kernel_image_path", boot_->kernel.string()}};
        if (boot_->initrd) b["initrd_path"] = boot_->initrd->string();
        if (boot_->boot_args) b["boot_args"] = *boot_->boot_args;
        out["boot-source"] = b;
    }
    auto drives = nlohmann::json::array();
    for (const auto& d : drives_) {
        nlohmann::json j = {
            {"drive_id", d.drive_id},
            {"path_on_host", d.path_on_host.string()},
            {"is_root_device", d.is_root_device},
            {"is_read_only", d.is_read_only},
            {"cache_type", d.cache == DiskSpec::Cache::none ? "Direct" : "Writeback"},
            {"io_engine", d.engine == DiskSpec::Engine::sync ? "Sync" : "Async"}};
        if (d.partuuid) j["partuuid"] = *d.partuuid;
        if (d.rate_limit.enabled()) j["rate_limiter"] = Vm::rate_limit_to_json(d.rate_limit);
        drives.push_back(std::move(j));
    }
    out["drives"] = std::move(drives);
    if (!nets_.empty()) {
        auto nets = nlohmann::json::array();
        for (const auto& n : nets_) {
            nlohmann::json j = {{"iface_id", n.id}, {"host_dev_name", n.tap}};
            if (n.mac) j["guest_mac"] = format_mac(*n.mac);
            if (n.rx_limit.enabled()) j["rx_rate_limiter"] = Vm::rate_limit_to_json(n.rx_limit);
            if (n.tx_limit.enabled()) j["tx_rate_limiter"] = Vm::rate_limit_to_json(n.tx_limit);
            nets.push_back(std::move(j));
        }
        out["network-interfaces"] = std::move(nets);
    }
    // Firecracker's EntropyDeviceConfig; ember's has no rate limiter.
    if (entropy_) out["entropy"] = nlohmann::json::object();
    // Firecracker reports these two as well, once they are configured.
    if (metrics_) out["metrics"] = {{"metrics_path", metrics_->path().string()}};
    if (const auto log = log::output_name(); !log.empty()) out["logger"] = {{"log_path", log}};
    return json_response(200, out);
}

HttpResponse ApiRouter::put_boot_source(const std::string& body) {
    state_.require_not_started("change the boot source");
    boot_ = parse_boot_source(body);
    configured_ = true;
    return no_content();
}

HttpResponse ApiRouter::put_machine_config(const std::string& body, bool patch) {
    state_.require_not_started("change the machine configuration");
    machine_ = parse_machine_config(body, patch ? &machine_ : nullptr);
    configured_ = true;
    return no_content();
}

HttpResponse ApiRouter::put_drive(const std::string& id, const std::string& body) {
    state_.require_not_started("change drives");
    DriveConfig d = parse_drive(body, id);
    auto same = [&](const DriveConfig& x) { return x.drive_id == d.drive_id; };
    if (d.is_root_device) {
        // Firecracker: "A root block device already exists!"; one root only.
        for (const auto& other : drives_)
            if (other.is_root_device && other.drive_id != d.drive_id)
                throw ApiError(fmt::format("PUT /drives/{}: drive '{}' is already the root device",
                                           id, other.drive_id));
    }
    if (auto it = std::find_if(drives_.begin(), drives_.end(), same); it != drives_.end()) {
        *it = std::move(d); // PUT on an existing id updates it, as in Firecracker
    } else {
        if (drives_.size() >= platform::kMaxDisks)
            throw ApiError(fmt::format("PUT /drives/{}: ember supports at most {} drives", id,
                                       platform::kMaxDisks));
        drives_.push_back(std::move(d));
    }
    configured_ = true;
    return no_content();
}

HttpResponse ApiRouter::patch_drive(const std::string& id, const std::string& body) {
    const DriveUpdate u = parse_drive_update(body, id);
    // Firecracker, too: before the start a drive is changed with PUT.
    state_.require_started(
        fmt::format("update drive '{}' (before InstanceStart: PUT /drives)", id));
    if (!u.rate_limiter) return no_content();
    const auto it = std::find_if(drives_.begin(), drives_.end(),
                                 [&](const DriveConfig& d) { return d.drive_id == id; });
    // A drive the router does not know (a loaded VM whose manifest it could
    // not read): it cannot keep a bucket the body leaves out.
    if (it == drives_.end() && (!u.rate_limiter->bandwidth || !u.rate_limiter->ops))
        throw ApiError(fmt::format("PATCH /drives/{}: the drive's current limit is not known here "
                                   "(the VM was loaded from a snapshot): give both bandwidth and "
                                   "ops (size 0 for no limit)",
                                   id));
    const RateLimit limit =
        u.rate_limiter->applied_to(it != drives_.end() ? it->rate_limit : RateLimit{});
    controller_.set_rate_limit(id, limit);
    if (it != drives_.end()) it->rate_limit = limit;
    return no_content();
}

VmConfig ApiRouter::build_config() const {
    if (!boot_) throw ApiError("cannot start the VM without a kernel: PUT /boot-source first");
    VmConfig c = defaults_;
    c.kernel = boot_->kernel;
    c.initrd = boot_->initrd;
    c.cmdline = boot_->boot_args.value_or(kDefaultCmdline);
    c.cpus = machine_.vcpu_count;
    c.mem_bytes = machine_.mem_size_mib << 20;
    c.huge_pages = machine_.huge_pages_2m ? HugePages::two_mib : HugePages::none;
    c.entropy = entropy_;
    c.nets = nets_;
    c.disks.clear();
    // Like Firecracker, the root device is the first virtio disk (/dev/vda)
    // and its root= argument is added to the kernel command line.
    auto to_spec = [](const DriveConfig& d) {
        DiskSpec s;
        s.path = d.path_on_host.string();
        s.readonly = d.is_read_only;
        s.id = d.drive_id;
        s.cache = d.cache;
        s.engine = d.engine;
        s.rate_limit = d.rate_limit;
        return s;
    };
    for (const auto& d : drives_) {
        if (!d.is_root_device) continue;
        c.disks.push_back(to_spec(d));
        c.cmdline += d.partuuid ? fmt::format(" root=PARTUUID={}", *d.partuuid) : " root=/dev/vda";
        c.cmdline += d.is_read_only ? " ro" : " rw";
    }
    for (const auto& d : drives_)
        if (!d.is_root_device) c.disks.push_back(to_spec(d));
    return c;
}

HttpResponse ApiRouter::put_action(const std::string& body) {
    switch (parse_action(body)) {
    case ActionType::instance_start: {
        state_.require_not_started("start the VM");
        const VmConfig config = build_config();
        controller_.start(config);
        state_.transition(VmState::running);
        return no_content();
    }
    case ActionType::send_ctrl_alt_del:
        state_.require_running("send Ctrl-Alt-Del");
        controller_.send_ctrl_alt_del();
        return no_content();
    case ActionType::flush_metrics:
        return flush_metrics();
    }
    throw ApiError("PUT /actions: unknown action");
}

HttpResponse ApiRouter::patch_vm(const std::string& body) {
    switch (parse_vm_state(body)) {
    case VmStateChange::pause:
        state_.require_running("pause the VM");
        controller_.pause();
        state_.transition(VmState::paused);
        break;
    case VmStateChange::resume:
        state_.require_paused("resume the VM");
        controller_.resume();
        state_.transition(VmState::running);
        break;
    }
    return no_content();
}

HttpResponse ApiRouter::put_snapshot_create(const std::string& body) {
    const auto s = parse_snapshot_create(body);
    // Firecracker requires Paused; ember also checkpoints a running VM (it
    // quiesces the vcpus and I/O threads itself and lets them go on after).
    state_.require_started("create a snapshot");
    if (s.mem_file_path)
        log::debug("snapshot: mem_file_path {} is not used; guest memory is written inside {}",
                   s.mem_file_path->string(), s.dir.string());
    controller_.checkpoint(s.dir);
    return no_content();
}

HttpResponse ApiRouter::put_snapshot_load(const std::string& body) {
    const auto s = parse_snapshot_load(body);
    state_.require_not_started("load a snapshot");
    if (configured_)
        throw ApiError("cannot load a snapshot after configuring boot resources (boot-source, "
                       "machine-config, drives): use a fresh ember process");
    const RestoreRequest request{s.dir, s.drive_overrides, s.net_overrides};
    controller_.restore(request);
    state_.transition(VmState::paused);
    describe_loaded(request);
    if (s.resume_vm) {
        controller_.resume();
        state_.transition(VmState::running);
    }
    return no_content();
}

void ApiRouter::set_metrics(MetricsFile file) {
    require_no_metrics("--metrics-path");
    metrics_.emplace(std::move(file));
}

// Firecracker: "Reinitialization of metrics not allowed."
void ApiRouter::require_no_metrics(std::string_view what) const {
    if (metrics_)
        throw ApiError(fmt::format("{}: metrics already go to {}; they can be set once per process",
                                   what, metrics_->path().string()));
}

bool ApiRouter::write_metrics() {
    return !metrics_ || metrics_->write_counts(controller_.metrics());
}

HttpResponse ApiRouter::put_entropy(const std::string& body) {
    state_.require_not_started("add the entropy device");
    parse_entropy_config(body);
    entropy_ = true;
    configured_ = true;
    return no_content();
}

HttpResponse ApiRouter::put_network_interface(const std::string& id, const std::string& body) {
    state_.require_not_started(fmt::format("add network interface '{}'", id));
    NetSpec n = parse_network_interface(body, id);
    // The interfaces as they would be, checked whole (one tap per
    // interface) before they replace the current ones: a refused PUT
    // changes nothing, also when it would have replaced an interface.
    std::vector<NetSpec> next = nets_;
    const auto same = [&](const NetSpec& o) { return o.id == n.id; };
    if (auto it = std::find_if(next.begin(), next.end(), same); it != next.end()) {
        *it = std::move(n); // Firecracker: a second PUT replaces the interface
    } else {
        if (next.size() >= platform::kMaxNets)
            throw ApiError(fmt::format("PUT /network-interfaces/{}: ember supports at most {} "
                                       "network interfaces",
                                       id, platform::kMaxNets));
        next.push_back(std::move(n));
    }
    try {
        resolve_net_ids(next);
    } catch (const NetSpecError& e) {
        throw ApiError(fmt::format("PUT /network-interfaces/{}: {}", id, e.what()));
    }
    nets_ = std::move(next);
    configured_ = true;
    return no_content();
}

HttpResponse ApiRouter::patch_network_interface(const std::string& id, const std::string& body) {
    const NetUpdate u = parse_network_interface_update(body, id);
    const std::string what = fmt::format("PATCH /network-interfaces/{}", id);
    const auto it =
        std::find_if(nets_.begin(), nets_.end(), [&](const NetSpec& n) { return n.id == id; });
    const bool known = it != nets_.end();
    // Before the start the router holds every interface: the next
    // InstanceStart builds the device with the new limits. After it, the
    // running device takes them.
    const bool started = state_.state() != VmState::not_started;
    if (!started && !known)
        throw ApiError(fmt::format("{}: there is no network interface '{}' to update (add it "
                                   "with PUT /network-interfaces/{})",
                                   what, id, id));
    if (started) state_.require_started(fmt::format("update network interface '{}'", id));
    if (!u.rx_rate_limiter && !u.tx_rate_limiter) return no_content();
    // An interface the router does not know (a loaded VM whose manifest it
    // could not read): it cannot keep a bucket the body leaves out. The VM
    // refuses an id it does not have.
    const auto whole = [](const std::optional<RateLimitUpdate>& l) {
        return !l || (l->bandwidth && l->ops);
    };
    if (!known && (!whole(u.rx_rate_limiter) || !whole(u.tx_rate_limiter)))
        throw ApiError(fmt::format("{}: the interface's current limits are not known here (the VM "
                                   "was loaded from a snapshot): give both bandwidth and ops in "
                                   "each rate limiter (size 0 for no limit)",
                                   what));
    std::optional<RateLimit> rx, tx;
    if (u.rx_rate_limiter) rx = u.rx_rate_limiter->applied_to(known ? it->rx_limit : RateLimit{});
    if (u.tx_rate_limiter) tx = u.tx_rate_limiter->applied_to(known ? it->tx_limit : RateLimit{});
    if (started) controller_.set_net_rate_limit(id, rx, tx);
    if (known) {
        if (rx) it->rx_limit = *rx;
        if (tx) it->tx_limit = *tx;
    }
    return no_content();
}

HttpResponse ApiRouter::put_metrics(const std::string& body) {
    const auto path = parse_metrics_config(body);
    require_no_metrics("PUT /metrics");
    try {
        metrics_.emplace(path);
    } catch (const Error& e) {
        throw ApiError(fmt::format("PUT /metrics: {}", e.what()));
    }
    return no_content();
}

HttpResponse ApiRouter::put_logger(const std::string& body) {
    const auto c = parse_logger_config(body);
    if (c.log_path) {
        try {
            move_log_to(*c.log_path, "PUT /logger");
        } catch (const Error& e) {
            throw ApiError(e.what());
        }
    }
    if (c.level) log::set_level(*c.level);
    return no_content();
}

HttpResponse ApiRouter::flush_metrics() {
    if (!metrics_) throw ApiError("FlushMetrics: metrics are not configured: PUT /metrics first");
    if (!write_metrics())
        throw ApiError(fmt::format("FlushMetrics: the line could not be written to {} (see ember's "
                                   "log)",
                                   metrics_->path().string()));
    return no_content();
}

} // namespace ember::api
