#include "vmm/vm.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>

#include <chrono>
#include <thread>
#include <fmt/format.h>
#include <fmt/std.h>

#include "devices/block/block_disk.h"
#include "devices/block/virtio_block.h"
#include "devices/legacy.h"
#include "devices/net/tap.h"
#include "devices/rng/virtio_rng.h"
#include "vmm/boot/kernel_image.h"
#include "vmm/boot/memory_map.h"
#include "vmm/boot/x86_boot.h"
#include "vmm/cpu_affinity.h"
#include "vmm/cpuid.h"
#include "vmm/fault/fault_points.h"
#include "vmm/fault/io_supervisor.h"
#include "vmm/log.h"
#include "vmm/platform.h"
#include "vmm/snapshot/disk_copy.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/vcpu_describe.h"

namespace ember {
namespace {

// KVM on Intel needs a 3-page TSS region and an identity-map page somewhere
// in guest-physical space; put them inside the MMIO hole where no RAM is.
constexpr uint64_t kTssAddress = 0xfffb'd000;
constexpr uint64_t kIdentityMapAddress = 0xfffb'c000;

GuestMemory make_memory(const VmConfig& config) {
    const auto layout = ram_layout(config.mem_bytes);
    return GuestMemory(layout, config.huge_pages);
}

} // namespace

Vm::Vm(const VmConfig& config)
    : config_(config), vm_(kvm_), mem_(make_memory(config)), console_(config.console) {
    setup_memory();
    setup_devices();
    setup_disks();
    setup_nets();
    setup_entropy();
    setup_faults();
    load_guest();
    diagnostics_ = diagnostics::add_source([this] { return describe(); });
}

Vm::Vm(const VmConfig& config, const SnapshotReader& snapshot)
    : config_(config), vm_(kvm_), mem_(make_memory(config)), console_(config.console) {
    setup_memory();
    setup_devices();
    setup_disks();
    setup_nets();
    setup_entropy();
    setup_faults();
    restore_from(snapshot);
    diagnostics_ = diagnostics::add_source([this] { return describe(); });
}

Vm::~Vm() {
    diagnostics_ = {}; // no dump reads the devices while they go away
    shutdown();
    if (!config_.faults.empty()) fault::disarm_all();
}

void Vm::setup_memory() {
    vm_.set_tss_address(kTssAddress);
    vm_.set_identity_map_address(kIdentityMapAddress);
    vm_.create_irqchip();
    vm_.create_pit2();
    uint32_t slot = 0;
    for (const auto& r : mem_.regions()) {
        try {
            vm_.set_user_memory_region(slot++, r.start.value, r.size, r.host);
        } catch (const SystemError& e) {
            if (e.code() != EINVAL) throw;
            // The bare ioctl error says nothing about --mem, the only cause
            // a user can act on.
            throw Error(
                fmt::format("KVM refused {} MiB of guest RAM at {:#x}: more than KVM maps in "
                            "one memory slot (8 TiB on x86) or than the host's physical "
                            "address width; ask for less --mem ({})",
                            r.size >> 20, r.start.value, e.what()));
        }
    }
}

void Vm::setup_devices() {
    GuestEventSink sink = [this](GuestEvent e) {
        switch (e) {
        case GuestEvent::poweroff: exits_.report(ExitReason::poweroff); break;
        case GuestEvent::reboot: exits_.report(ExitReason::reboot); break;
        case GuestEvent::panic: exits_.report(ExitReason::panic); break;
        }
    };
    serial_ = std::make_shared<Serial>([this](std::span<const uint8_t> b) { console_.write(b); }, serial_irq_);
    pio_.add(platform::kCom1Port, 8, serial_);
    vm_.add_irqfd(serial_irq_.fd(), platform::kCom1Gsi);
    i8042_ = std::make_shared<I8042>(sink, [this] { keyboard_irq_.signal(); });
    vm_.add_irqfd(keyboard_irq_.fd(), platform::kI8042Gsi);
    pio_.add(platform::kI8042DataPort, platform::kI8042CommandPort - platform::kI8042DataPort + 1, i8042_);
    pio_.add(platform::kAcpiSleepControlPort, 4, std::make_shared<AcpiPowerRegisters>(sink));
    pio_.add(platform::kPvPanicPort, 1, std::make_shared<PvPanic>(sink));
}

void Vm::setup_disks() {
    if (config_.disks.size() > platform::kMaxDisks)
        throw Error(fmt::format("{} disks given; ember supports at most {}", config_.disks.size(),
                                platform::kMaxDisks));
    for (const auto& spec : config_.disks) {
        auto disk = BlockDisk::open(spec); // validates the file before the guest starts
        auto block = std::make_unique<VirtioBlock>(std::move(disk));
        blocks_.push_back(block.get());
        add_virtio_device(std::move(block));
    }
}

// Network devices take the slots after the disks, so a VM's disks keep their
// slots (and the guest its vdX names) with or without them. Each tap is
// attached here, before the guest starts: a missing or busy tap is a setup
// error, not a device the guest finds dead.
void Vm::setup_nets() {
    resolve_net_ids(config_.nets);
    for (const auto& spec : config_.nets) {
        auto net = std::make_unique<VirtioNet>(spec, open_tap(spec.tap));
        nets_.push_back(net.get());
        add_virtio_device(std::move(net));
    }
}

// The entropy device takes the slot after the last disk and network device,
// so those keep their slots with or without it.
void Vm::setup_entropy() {
    if (!config_.entropy) return;
    auto rng = std::make_unique<VirtioRng>();
    rng_ = rng.get();
    add_virtio_device(std::move(rng));
}

// The next virtio-mmio slot: its 4 KiB window, its GSI through an irqfd, and
// for a device with an I/O thread one KVM_IOEVENTFD per queue.
void Vm::add_virtio_device(std::unique_ptr<VirtioDevice> device) {
    const uint64_t slot = virtio_.size();
    const uint64_t base = platform::kVirtioMmioBase + slot * platform::kVirtioMmioSize;
    const uint32_t gsi = platform::kVirtioFirstGsi + static_cast<uint32_t>(slot);
    EventFd irq;
    vm_.add_irqfd(irq.fd(), gsi);
    auto dev = std::make_shared<VirtioMmioTransport>(mem_, std::move(device), std::move(irq));
    mmio_.add(base, platform::kVirtioMmioSize, dev);
    // Guest kicks go straight to the I/O thread's eventfd (virtio 1.2 §4.2.2
    // QueueNotify at 0x50, value = queue index): no vcpu exit. A device that
    // takes its kicks inline (VirtioDevice::kicks_inline) needs the exit.
    if (!dev->device().kicks_inline())
        for (uint16_t q = 0; q < dev->device().queue_count(); ++q)
            vm_.add_ioeventfd_mmio(base + 0x50, 4, q, dev->notify_event(q).fd());
    log::debug("{} at {:#x}, GSI {}", dev->device().name(), base, gsi);
    virtio_.push_back(std::move(dev));
    virtio_slots_.push_back({base, platform::kVirtioMmioSize, gsi});
}

// Crash injection (DESIGN.md "Fault points"): before any device is activated,
// so a lost I/O thread always finds the supervisor. Hits count from here on
// (for restore: including the resubmission of in-flight requests).
void Vm::setup_faults() {
    if (config_.faults.empty()) return;
    uint32_t random_period = 0;
    bool restarts = false;
    for (const auto& f : config_.faults) {
        if (f.random) random_period = f.period_ms;
        restarts = restarts || f.action == fault::Action::restart_io;
    }
    if (restarts && !blocks_.empty()) {
        // The disks only: the entropy device has no I/O thread to restart.
        std::vector<VirtioMmioTransport*> devices;
        for (size_t i = 0; i < blocks_.size(); ++i)
            devices.push_back(virtio_[i].get());
        IoSupervisor::Options o;
        o.random_period_ms = random_period;
        o.seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        // No restart in the middle of a checkpoint or pause/resume.
        o.guard = [this](const std::function<void()>& restart) {
            std::lock_guard lock(control_mu_);
            restart();
        };
        io_supervisor_ = std::make_unique<IoSupervisor>(devices, std::move(o));
    }
    for (const auto& f : config_.faults) {
        fault::arm(f);
        log::info("fault armed: {}", fault::to_string(f));
    }
}

void Vm::load_guest() {
    const uint64_t low_end = ram_end_low(config_.mem_bytes);
    BootInfo info;
    info.kernel = load_kernel(config_.kernel, mem_, low_end);
    if (config_.initrd) info.initrd_addr = load_initrd(*config_.initrd, mem_, info.kernel, low_end, info.initrd_size);
    info.cmdline = config_.cmdline;
    if (config_.virtio_cmdline) {
        // For kernels built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, which
        // may not read the DSDT (Documentation/admin-guide/kernel-parameters).
        for (const auto& slot : virtio_slots_)
            info.cmdline += fmt::format(" virtio_mmio.device={}K@{:#x}:{}", slot.size >> 10, slot.base, slot.gsi);
    }
    info.e820 = e820_map(config_.mem_bytes);

    acpi::PlatformConfig acpi_config{config_.cpus, virtio_slots_};
    const auto tables = acpi::build_tables(acpi_config, platform::kAcpiTablesAddr);
    mem_.write_bytes(GuestAddress{platform::kAcpiTablesAddr}, tables);
    info.rsdp_addr = platform::kAcpiTablesAddr;
    write_boot_structures(mem_, info);
    log::debug("kernel entry {:#x} ({}), initrd {:#x}+{:#x}", info.kernel.entry,
               info.kernel.mode == EntryMode::linux64 ? "64-bit" : "PVH", info.initrd_addr, info.initrd_size);

    create_vcpus();
    for (auto& v : vcpus_) setup_vcpu_common(v->vcpu());
    setup_boot_vcpu(vcpus_.front()->vcpu(), info);
}

void Vm::create_vcpus() {
    VcpuThread::install_kick_handler();
    const auto supported = kvm_.supported_cpuid();
    msr_indices_ = kvm_.msr_index_list();
    // Every way in (CLI, libember, a checkpoint) checked it already; this is
    // the last word before the threads exist.
    check_vcpu_cpus(config_.vcpu_cpus, config_.cpus);
    for (uint32_t i = 0; i < config_.cpus; ++i) {
        auto vcpu = std::make_unique<KvmVcpu>(vm_, i);
        vcpu_cpuid_.push_back(vcpu_cpuid(supported, i, config_.cpus));
        vcpu->set_cpuid(vcpu_cpuid_.back());
        const auto host_cpu = config_.vcpu_cpus.empty()
                                  ? std::nullopt
                                  : std::optional<uint32_t>(config_.vcpu_cpus[i]);
        vcpus_.push_back(
            std::make_unique<VcpuThread>(std::move(vcpu), pio_, mmio_, exits_, host_cpu));
    }
}

void Vm::restore_from(const SnapshotReader& snapshot) {
    snapshot.read_memory(mem_);
    vm_.restore_device_state(snapshot.read_value<VmDeviceState>("vm"));
    serial_->restore_state(snapshot.read_value<Serial::State>("serial"));
    // Snapshots from before the keyboard had state have no i8042 section.
    if (snapshot.has("i8042")) i8042_->restore_state(snapshot.read_value<I8042::State>("i8042"));
    // Before the devices' I/O threads first run: they take from these buckets.
    for (size_t i = 0; i < blocks_.size(); ++i) {
        if (auto fill = saved_rate_limit_fill(snapshot.config(), i, config_.disks[i].rate_limit))
            blocks_[i]->restore_rate_limit_fill(*fill);
    }
    for (size_t i = 0; i < nets_.size(); ++i)
        nets_[i]->restore_rate_limit_fills(
            saved_net_rate_limit_fills(snapshot.config(), i, config_.nets[i]));
    // Devices after memory: restore validates the rings against guest RAM and
    // resubmits the in-flight requests before any vcpu runs.
    for (size_t i = 0; i < virtio_.size(); ++i) {
        const auto name = fmt::format("virtio{}", i);
        try {
            // Started with the vcpus (resume()): restored paused, the VM
            // stays exactly as saved, in-flight requests included.
            virtio_[i]->restore_state(snapshot.read(name), VirtioMmioTransport::RestoreStart::deferred);
        } catch (const SnapshotError&) {
            throw;
        } catch (const Error& e) {
            const size_t nets_end = config_.disks.size() + config_.nets.size();
            const std::string what =
                i < config_.disks.size() ? fmt::format("disk {}", config_.disks[i].path)
                : i < nets_end
                    ? fmt::format("network device {}", config_.nets[i - config_.disks.size()].id)
                    : std::string("entropy device");
            throw SnapshotError(fmt::format("snapshot section {} ({}): {}", name, what, e.what()));
        }
    }
    create_vcpus();
    for (uint32_t i = 0; i < config_.cpus; ++i) {
        const auto state = std::make_unique<VcpuState>(snapshot.read_value<VcpuState>(fmt::format("vcpu{}", i)));
        vcpus_[i]->vcpu().restore_state(*state);
    }
}

void Vm::pause() {
    std::lock_guard lock(control_mu_);
    paused_ = true;
    for (auto& v : vcpus_) v->pause();
}

void Vm::resume() {
    std::lock_guard lock(control_mu_);
    paused_ = false;
    if (!vcpus_started_) {
        for (auto& d : virtio_) d->start_restored();
        for (auto& v : vcpus_) v->start();
        vcpus_started_ = true;
        return;
    }
    for (auto& v : vcpus_) v->resume();
}

void Vm::send_ctrl_alt_del() { i8042_->press_ctrl_alt_del(); }

CheckpointStats Vm::checkpoint(const std::filesystem::path& dir, bool then_resume) {
    std::lock_guard lock(control_mu_);
    const bool was_running = vcpus_started_ && !paused_;
    CheckpointStats stats;
    const auto t0 = std::chrono::steady_clock::now();
    pause();
    // The I/O threads park at their next park point: a completion is in
    // the snapshot entirely or not at all. Host I/O in flight is not drained;
    // its requests stay marked in the in-flight regions.
    auto unquiesce_all = [&] {
        for (auto& d : virtio_) d->unquiesce();
    };
    try {
        quiesce_all();
        if (config_.checkpoint_drain) drain_io();
        for (auto& d : virtio_) stats.inflight_requests += d->inflight_requests();
        SnapshotWriter w(dir);
        stats.memory_bytes = w.add_memory(mem_);
        fault::hit(fault::Point::checkpoint_memory);
        w.add_value("vm", vm_.save_device_state());
        w.add_value("serial", serial_->save_state());
        w.add_value("i8042", i8042_->save_state());
        for (size_t i = 0; i < virtio_.size(); ++i) w.add(fmt::format("virtio{}", i), virtio_[i]->save_state());
        fault::hit(fault::Point::checkpoint_devices);
        for (uint32_t i = 0; i < vcpus_.size(); ++i) {
            const auto state = std::make_unique<VcpuState>(vcpus_[i]->vcpu().save_state(msr_indices_, vcpu_cpuid_[i]));
            w.add_value(fmt::format("vcpu{}", i), *state);
        }
        auto config = config_to_json(config_);
        save_rate_limit_fills(config);
        if (config_.checkpoint_copy_disks) capture_disks(dir, config);
        w.finish(config);
    } catch (...) {
        unquiesce_all();
        if (was_running) resume();
        throw;
    }
    stats.pause_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    unquiesce_all();
    if (was_running && then_resume) resume();
    return stats;
}

void Vm::quiesce_all() {
    for (auto& d : virtio_) d->quiesce();
}

void Vm::drain_io() {
    // Called quiesced. The vcpus are paused, so the guest adds nothing; let
    // the I/O threads run until a quiesce finds nothing in flight (counting
    // while they run could miss a request popped right after the count).
    using namespace std::chrono;
    const auto deadline = steady_clock::now() + seconds(60);
    for (;;) {
        uint32_t n = 0;
        for (auto& d : virtio_) n += d->inflight_requests();
        if (n == 0) return;
        if (steady_clock::now() > deadline)
            throw Error(fmt::format("--checkpoint-drain: {} requests still in flight after 60 s", n));
        for (auto& d : virtio_) d->unquiesce();
        std::this_thread::sleep_for(milliseconds(1));
        quiesce_all();
    }
}

void Vm::capture_disks(const std::filesystem::path& dir, nlohmann::json& config) {
    // Host writes still in flight may or may not be in a copy: either way
    // they are resubmitted on restore, and a write is idempotent.
    for (size_t i = 0; i < config_.disks.size(); ++i) {
        const auto& d = config_.disks[i];
        if (d.readonly) continue; // nothing the guest did can change it
        const std::string name = fmt::format("disk{}.img", i);
        const auto r = copy_disk_image(d.path, dir / name, [&](uint64_t at, uint64_t size) {
            log::info("disk {}: copying into the checkpoint: {} of {} MiB", d.id, at >> 20,
                      size >> 20);
        });
        config["disks"][i]["captured"] = name;
        log::info("disk {}: copied into the checkpoint as {} ({})", d.id, name,
                  r.cloned ? "reflink" : fmt::format("{} MiB of data", r.data_bytes >> 20));
    }
}

namespace {
// What a bucket pair held, as a checkpoint saves it (saved_fill reads it).
nlohmann::json rate_limit_fill_to_json(const RateLimitFill& fill) {
    nlohmann::json j = nlohmann::json::object();
    auto bucket = [&](const std::optional<TokenBucketFill>& b, const char* key) {
        if (b)
            j[key] = {{"budget", b->budget},
                      {"one_time_burst", b->burst},
                      {"partial_token_ns", b->carry_ns}};
    };
    bucket(fill.bandwidth, "bandwidth");
    bucket(fill.ops, "ops");
    return j;
}
} // namespace

void Vm::save_rate_limit_fills(nlohmann::json& config) const {
    // Quiesced: no I/O thread takes from a bucket now. Absent: full.
    const auto now = std::chrono::steady_clock::now();
    for (size_t i = 0; i < blocks_.size(); ++i)
        if (const auto fill = blocks_[i]->rate_limit_fill(now))
            config["disks"][i]["rate_limit_fill"] = rate_limit_fill_to_json(*fill);
    for (size_t i = 0; i < nets_.size(); ++i) {
        const auto fills = nets_[i]->rate_limit_fills(now);
        if (fills.rx) config["nets"][i]["rx_rate_limit_fill"] = rate_limit_fill_to_json(*fills.rx);
        if (fills.tx) config["nets"][i]["tx_rate_limit_fill"] = rate_limit_fill_to_json(*fills.tx);
    }
}

nlohmann::json Vm::rate_limit_to_json(const RateLimit& limit) {
    nlohmann::json j = nlohmann::json::object();
    auto bucket = [&](const std::optional<TokenBucketSpec>& b, const char* key) {
        if (b)
            j[key] = {{"size", b->size},
                      {"one_time_burst", b->one_time_burst},
                      {"refill_time", b->refill_time_ms}};
    };
    bucket(limit.bandwidth, "bandwidth");
    bucket(limit.ops, "ops");
    return j;
}

nlohmann::json Vm::config_to_json(const VmConfig& c) {
    nlohmann::json disks = nlohmann::json::array();
    for (const auto& d : c.disks) {
        std::error_code ec;
        const auto size = std::filesystem::file_size(d.path, ec);
        nlohmann::json disk{{"path", d.path},
                            {"readonly", d.readonly},
                            {"id", d.id},
                            {"cache", d.cache == DiskSpec::Cache::none ? "none" : "writeback"},
                            {"engine", d.engine == DiskSpec::Engine::sync ? "sync" : "uring"},
                            {"poll_us", d.poll_us},
                            {"size", ec ? 0 : size}};
        if (d.iothread_cpu) disk["iothread_cpu"] = *d.iothread_cpu;
        // Absent: no limit.
        if (d.rate_limit.enabled()) disk["rate_limit"] = rate_limit_to_json(d.rate_limit);
        disks.push_back(std::move(disk));
    }
    nlohmann::json out{{"kernel", c.kernel.string()},
                       {"cmdline", c.cmdline},
                       {"cpus", c.cpus},
                       {"mem_bytes", c.mem_bytes},
                       {"disks", disks}};
    if (!c.vcpu_cpus.empty()) out["vcpu_cpus"] = c.vcpu_cpus;
    // Where the guest's initrd came from, for snapshot-info and GET /vm/config
    // after a load; a restore does not read it (guest memory holds it).
    if (c.initrd) out["initrd"] = c.initrd->string();
    // Absent: no network devices. A restore attaches the same taps by name.
    if (!c.nets.empty()) {
        nlohmann::json nets = nlohmann::json::array();
        for (const auto& n : c.nets) {
            nlohmann::json net{{"id", n.id}, {"tap", n.tap}};
            if (n.mac) net["mac"] = format_mac(*n.mac);
            // Absent: no limit. The current ones, after any live change.
            if (n.rx_limit.enabled()) net["rx_rate_limit"] = rate_limit_to_json(n.rx_limit);
            if (n.tx_limit.enabled()) net["tx_rate_limit"] = rate_limit_to_json(n.tx_limit);
            nets.push_back(std::move(net));
        }
        out["nets"] = std::move(nets);
    }
    // Absent: no entropy device (the restore builds the same virtio slots).
    if (c.entropy) out["entropy"] = true;
    // Absent: 4 KiB pages. A restore maps guest RAM the same way.
    if (c.huge_pages == HugePages::two_mib) out["huge_pages"] = "2M";
    return out;
}

namespace {
constexpr std::string_view kWhere = "snapshot configuration";
// Where a field of the saved configuration's disk `i` is, in errors.
std::string disk_where(size_t i) {
    return fmt::format("{}, disk {}", kWhere, i);
}
std::string net_where(size_t i) {
    return fmt::format("{}, network device {}", kWhere, i);
}

// The limit saved under `key` of a device's object (as rate_limit_to_json
// writes it; `where` names the device in errors). Absent: no limit (also in
// checkpoints from before rate limits).
RateLimit saved_rate_limit(const nlohmann::json& device, const char* key,
                           const std::string& where) {
    if (!device.contains(key)) return {};
    const auto limit = manifest_field<nlohmann::json>(device, key, where);
    if (!limit.is_object())
        throw SnapshotError(fmt::format("{}: '{}' is not an object (corrupt)", where, key));
    const auto bucket = [&](const char* name) -> std::optional<TokenBucketSpec> {
        if (!limit.contains(name)) return std::nullopt;
        const auto b = manifest_field<nlohmann::json>(limit, name, where);
        const auto at = fmt::format("{}, {} {}", where, key, name);
        return TokenBucketSpec{manifest_field<uint64_t>(b, "size", at),
                               manifest_field<uint64_t>(b, "one_time_burst", at),
                               manifest_field<uint64_t>(b, "refill_time", at)};
    };
    return {bucket("bandwidth"), bucket("ops")};
}

// What the buckets of `limit` held, saved under `key` of a device's object;
// checked against the limit (`whose` names it in errors, `ops_unit` what its
// ops bucket counts). Absent: full.
std::optional<RateLimitFill> saved_fill(const nlohmann::json& device, const char* key,
                                        const std::string& where, const RateLimit& limit,
                                        std::string_view whose, std::string_view ops_unit) {
    if (!device.contains(key)) return std::nullopt;
    const auto saved = manifest_field<nlohmann::json>(device, key, where);
    if (!saved.is_object())
        throw SnapshotError(fmt::format("{}: '{}' is not an object (corrupt)", where, key));
    const auto bucket = [&](const char* name) -> std::optional<TokenBucketFill> {
        if (!saved.contains(name)) return std::nullopt;
        const auto b = manifest_field<nlohmann::json>(saved, name, where);
        const auto at = fmt::format("{}, {} {}", where, key, name);
        // Negative in debt: nlohmann would wrap a number out of int64's
        // range into one that looks plausible.
        const auto budget = manifest_field<nlohmann::json>(b, "budget", at);
        const bool fits = budget.is_number_unsigned()
                              ? budget.get<uint64_t>() <= uint64_t{INT64_MAX}
                              : budget.is_number_integer();
        if (!fits)
            throw SnapshotError(fmt::format(
                "{}: 'budget' is {}, not a whole number of tokens (corrupt)", at, budget.dump()));
        return TokenBucketFill{budget.get<int64_t>(),
                               manifest_field<uint64_t>(b, "one_time_burst", at),
                               manifest_field<uint64_t>(b, "partial_token_ns", at)};
    };
    const RateLimitFill fill{bucket("bandwidth"), bucket("ops")};
    if (auto problem = fill_problem(limit, fill))
        throw SnapshotError(fmt::format("{}: '{}' does not fit {} ({}): {} (corrupt)", where, key,
                                        whose, ember::describe(limit, ops_unit), *problem));
    return fill;
}
} // namespace

VmConfig Vm::saved_config(const nlohmann::json& j) {
    try {
        VmConfig c;
        c.kernel = manifest_field<std::string>(j, "kernel", kWhere);
        c.cmdline = manifest_field<std::string>(j, "cmdline", kWhere);
        // Absent: booted without one (or checkpointed before it was saved).
        if (j.contains("initrd")) c.initrd = manifest_field<std::string>(j, "initrd", kWhere);
        c.cpus = manifest_field<uint32_t>(j, "cpus", kWhere);
        c.mem_bytes = manifest_field<uint64_t>(j, "mem_bytes", kWhere);
        // Absent: vcpus not placed (also in checkpoints from before --vcpu-cpus).
        if (j.contains("vcpu_cpus"))
            c.vcpu_cpus = manifest_field<std::vector<uint32_t>>(j, "vcpu_cpus", kWhere);
        // Absent: none (also in checkpoints from before the entropy device).
        if (j.contains("entropy")) c.entropy = manifest_field<bool>(j, "entropy", kWhere);
        // Absent: none (also in checkpoints from before network devices).
        if (j.contains("nets")) {
            const auto nets = manifest_field<nlohmann::json>(j, "nets", kWhere);
            if (!nets.is_array())
                throw SnapshotError("snapshot configuration: 'nets' is not a list (corrupt)");
            for (size_t i = 0; i < nets.size(); ++i) {
                const auto where = net_where(i);
                NetSpec n;
                n.id = manifest_field<std::string>(nets[i], "id", where);
                n.tap = manifest_field<std::string>(nets[i], "tap", where);
                n.rx_limit = saved_rate_limit(nets[i], "rx_rate_limit", where);
                n.tx_limit = saved_rate_limit(nets[i], "tx_rate_limit", where);
                try {
                    if (nets[i].contains("mac"))
                        n.mac = parse_mac(manifest_field<std::string>(nets[i], "mac", where));
                    check_net_spec(n);
                } catch (const NetSpecError& e) {
                    throw SnapshotError(fmt::format("{}: {} (corrupt)", where, e.what()));
                }
                c.nets.push_back(std::move(n));
            }
            try {
                resolve_net_ids(c.nets);
            } catch (const NetSpecError& e) {
                throw SnapshotError(fmt::format("{}: {} (corrupt)", kWhere, e.what()));
            }
        }
        // Absent: 4 KiB pages (also in checkpoints from before huge pages).
        if (j.contains("huge_pages")) {
            const auto h = manifest_field<std::string>(j, "huge_pages", kWhere);
            if (h != "2M")
                throw SnapshotError(fmt::format(
                    "snapshot configuration: 'huge_pages' is '{}', not 2M (corrupt)", h));
            c.huge_pages = HugePages::two_mib;
        }
        const auto disks = manifest_field<nlohmann::json>(j, "disks", kWhere);
        if (!disks.is_array())
            throw SnapshotError("snapshot configuration: 'disks' is not a list (corrupt)");
        for (size_t i = 0; i < disks.size(); ++i) {
            const auto& d = disks[i];
            const auto where = disk_where(i);
            DiskSpec s;
            s.path = manifest_field<std::string>(d, "path", where);
            s.readonly = manifest_field<bool>(d, "readonly", where);
            s.id = manifest_field<std::string>(d, "id", where);
            // One of the two words config_to_json writes: anything else would
            // silently switch O_DIRECT or the engine.
            const auto either = [&](const char* key, const char* a, const char* b) {
                auto v = manifest_field<std::string>(d, key, where);
                if (v != a && v != b)
                    throw SnapshotError(fmt::format("{}: '{}' is '{}', not {} or {} (corrupt)",
                                                    where, key, v, a, b));
                return v == a;
            };
            s.cache = either("cache", "none", "writeback") ? DiskSpec::Cache::none
                                                           : DiskSpec::Cache::writeback;
            s.engine = either("engine", "sync", "uring") ? DiskSpec::Engine::sync
                                                         : DiskSpec::Engine::uring;
            // Absent in checkpoints from before poll= existed.
            if (d.contains("poll_us")) s.poll_us = manifest_field<uint32_t>(d, "poll_us", where);
            // Absent: not placed (also in checkpoints from before it existed).
            if (d.contains("iothread_cpu"))
                s.iothread_cpu = manifest_field<uint32_t>(d, "iothread_cpu", where);
            s.rate_limit = saved_rate_limit(d, "rate_limit", where);
            c.disks.push_back(s);
        }
        return c;
    } catch (const nlohmann::json::exception& e) {
        throw SnapshotError(fmt::format("snapshot configuration is malformed: {}", e.what()));
    }
}

uint64_t Vm::saved_disk_size(const nlohmann::json& j, size_t i) {
    return manifest_field<uint64_t>(j.at("disks").at(i), "size", disk_where(i));
}

std::string Vm::saved_disk_capture(const nlohmann::json& j, size_t i) {
    const auto& d = j.at("disks").at(i);
    return d.contains("captured") ? manifest_field<std::string>(d, "captured", disk_where(i)) : "";
}

std::optional<RateLimitFill> Vm::saved_rate_limit_fill(const nlohmann::json& j, size_t i,
                                                       const RateLimit& limit) {
    return saved_fill(j.at("disks").at(i), "rate_limit_fill", disk_where(i), limit,
                      "the disk's rate limit", "requests");
}

NetRateLimitFills Vm::saved_net_rate_limit_fills(const nlohmann::json& j, size_t i,
                                                 const NetSpec& net) {
    const auto& n = j.at("nets").at(i);
    const auto where = net_where(i);
    return {saved_fill(n, "rx_rate_limit_fill", where, net.rx_limit, "the receive rate limit",
                       "frames"),
            saved_fill(n, "tx_rate_limit_fill", where, net.tx_limit, "the transmit rate limit",
                       "frames")};
}

VmConfig Vm::config_from_json(const nlohmann::json& j) {
    VmConfig c = saved_config(j);
    if (c.cpus < 1 || c.cpus > kMaxCpus || c.mem_bytes < kMinMemBytes || c.mem_bytes % 4096 != 0 ||
        (c.huge_pages == HugePages::two_mib && c.mem_bytes % kHugePageBytes != 0))
        throw SnapshotError("snapshot configuration has an impossible CPU count or memory size");
    try {
        if (j.contains("vcpu_cpus")) check_vcpu_cpus(c.vcpu_cpus, c.cpus);
    } catch (const Error& e) {
        throw SnapshotError(fmt::format("snapshot configuration: {}", e.what()));
    }
    for (size_t i = 0; i < c.disks.size(); ++i) {
        const auto& s = c.disks[i];
        saved_rate_limit_fill(j, i, s.rate_limit); // refused here, before anything is built
        try {
            check_disk_spec(s);
        } catch (const DiskSpecError& e) {
            throw SnapshotError(fmt::format("snapshot configuration: {}", e.what()));
        }
    }
    for (size_t i = 0; i < c.nets.size(); ++i)
        saved_net_rate_limit_fills(j, i, c.nets[i]);
    return c;
}

VmExit Vm::run(const RunOptions& options) {
    if (options.console_input)
        console_.start_input([this](std::span<const uint8_t> b) { serial_->enqueue_input(b); },
                             [this] { exits_.report(ExitReason::user_quit); });
    // SIGUSR1 is process-directed: every other thread blocks it (they inherit
    // this mask), and this thread takes it through a signalfd (DESIGN.md).
    UniqueFd sigfd;
    if (options.checkpoint_on_sigusr1) {
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
        sigfd = UniqueFd(::signalfd(-1, &usr1, SFD_CLOEXEC | SFD_NONBLOCK));
        if (!sigfd) throw_errno("signalfd(SIGUSR1)");
    }
    // Whoever drives the VM (libember, the control socket) may have started
    // the vcpus before calling run(); then they are left as they are.
    bool started = false;
    {
        std::lock_guard lock(control_mu_);
        started = vcpus_started_;
    }
    if (!started && !config_.start_paused) {
        resume();
    } else if (!started && options.checkpoint_on_sigusr1) {
        log::info("VM is paused (restored with --paused); send SIGUSR1 to checkpoint it");
    }
    for (;;) {
        pollfd fds[2] = {{exits_.event_fd(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
        if (::poll(fds, sigfd ? 2 : 1, -1) < 0 && errno != EINTR) throw_errno("poll");
        if (auto e = exits_.exit()) {
            shutdown();
            return *e;
        }
        if (sigfd && (fds[1].revents & POLLIN)) {
            signalfd_siginfo si{};
            while (::read(sigfd.get(), &si, sizeof si) == sizeof si) {
            }
            take_checkpoint_now();
        }
    }
}

void Vm::take_checkpoint_now() {
    if (!config_.checkpoint_dir) {
        log::warn("SIGUSR1: no --checkpoint-dir given, so no checkpoint is taken");
        return;
    }
    try {
        // --on-checkpoint exit: the guest stays paused until the process
        // exits (see checkpoint()); a failed checkpoint resumes it.
        const auto stats = checkpoint(*config_.checkpoint_dir, config_.continue_after_checkpoint);
        log::info("checkpoint written to {}: {} MiB of memory, {} requests in flight, guest paused {:.1f} ms",
                  config_.checkpoint_dir->string(), stats.memory_bytes >> 20, stats.inflight_requests,
                  stats.pause_ms);
        if (!config_.continue_after_checkpoint) exits_.report(ExitReason::checkpointed);
    } catch (const std::exception& e) {
        log::error("checkpoint failed: {}", e.what());
    }
}

VmMetrics Vm::metrics() const {
    VmMetrics m;
    for (const auto& v : vcpus_)
        m.vcpus.push_back(v->exit_counts());
    for (const auto* b : blocks_)
        m.disks.push_back({b->disk().id(), b->disk().path(), b->stats()});
    for (const auto* n : nets_)
        m.nets.push_back({n->spec().id, n->spec().tap, n->stats()});
    if (rng_ != nullptr) m.entropy = rng_->stats();
    return m;
}

void Vm::set_disk_rate_limit(std::string_view id, const RateLimit& limit) {
    // A checkpoint saves config_ under the same lock.
    std::lock_guard lock(control_mu_);
    std::string ids;
    for (size_t i = 0; i < config_.disks.size(); ++i) {
        if (config_.disks[i].id != id) {
            ids += (ids.empty() ? "" : ", ") + config_.disks[i].id;
            continue;
        }
        DiskSpec changed = config_.disks[i];
        changed.rate_limit = limit;
        check_disk_spec(changed);
        blocks_.at(i)->set_rate_limit(limit);
        config_.disks[i] = std::move(changed);
        log::info("disk {}: rate limit now {}", id, ember::describe(limit));
        return;
    }
    throw Error(
        fmt::format("no disk has the id '{}' (the disks: {})", id, ids.empty() ? "none" : ids));
}

void Vm::set_net_rate_limit(std::string_view id, const std::optional<RateLimit>& rx,
                            const std::optional<RateLimit>& tx) {
    // A checkpoint saves config_ under the same lock.
    std::lock_guard lock(control_mu_);
    std::string ids;
    for (size_t i = 0; i < config_.nets.size(); ++i) {
        if (config_.nets[i].id != id) {
            ids += (ids.empty() ? "" : ", ") + config_.nets[i].id;
            continue;
        }
        NetSpec changed = config_.nets[i];
        if (rx) changed.rx_limit = *rx;
        if (tx) changed.tx_limit = *tx;
        try {
            check_net_spec(changed); // both usable before either is applied
        } catch (const NetSpecError& e) {
            throw Error(fmt::format("network device {}: {}", id, e.what()));
        }
        if (rx) nets_.at(i)->set_rx_rate_limit(*rx);
        if (tx) nets_.at(i)->set_tx_rate_limit(*tx);
        config_.nets[i] = std::move(changed);
        log::info("network device {}: receive rate limit now {}, transmit rate limit now {}", id,
                  ember::describe(config_.nets[i].rx_limit, "frames"),
                  ember::describe(config_.nets[i].tx_limit, "frames"));
        return;
    }
    throw Error(fmt::format("no network device has the id '{}' (the network devices: {})", id,
                            ids.empty() ? "none" : ids));
}

std::string Vm::describe() {
    // try_lock: a dump is most wanted when a pause or checkpoint hangs.
    std::string life = "pause or checkpoint in progress";
    std::string vcpus;
    if (std::unique_lock lock(control_mu_, std::try_to_lock); lock.owns_lock()) {
        life = paused_ ? "paused" : (vcpus_started_ ? "running" : "not started");
        if (vcpus_started_) {
            // A short pause: a vcpu's registers can only be read outside KVM_RUN.
            const bool was_running = !paused_;
            if (was_running) pause();
            try {
                for (size_t i = 0; i < vcpus_.size(); ++i)
                    vcpus += "  " +
                             describe_vcpu(static_cast<uint32_t>(i),
                                           vcpus_[i]->vcpu().save_state(msr_indices_, vcpu_cpuid_[i])) +
                             " | " + vcpus_[i]->describe_exits() + "\n";
                vcpus += "  " +
                         describe_ioapic(vm_.save_device_state().ioapic, 1,
                                         platform::kVirtioFirstGsi + static_cast<unsigned>(virtio_.size()) - 1) +
                         "\n";
            } catch (const std::exception& e) {
                vcpus += fmt::format("  vcpu state not available: {}\n", e.what());
            }
            if (was_running) resume();
        }
    }
    std::string s = fmt::format("VM: {} vcpus, {} MiB, {}\n", vcpus_.size(), config_.mem_bytes >> 20, life) + vcpus;
    for (auto& d : virtio_) s += "  " + d->describe() + "\n";
    return s;
}

void Vm::shutdown() {
    for (auto& v : vcpus_) v->stop();
    for (auto& v : vcpus_) v->join();
    if (io_supervisor_) io_supervisor_->stop();
    // After the vcpus: no register access can race the I/O threads' teardown.
    for (auto& d : virtio_) d->shutdown();
    console_.stop_input();
}

} // namespace ember
