#include "vmm/embed/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fmt/format.h>
#include <set>

#include "devices/block/block_disk.h"
#include "devices/block/disk_spec.h"
#include "vmm/cpu_affinity.h"
#include "vmm/platform.h"
#include "vmm/snapshot/snapshot.h"

namespace ember::embed {
namespace {

// Exists, is a regular file, and may be opened as the VM will open it.
void require_file(const std::filesystem::path& path, std::string_view what, int mode) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        throw Error(fmt::format("{} {}: {}", what, path.string(), std::strerror(errno)));
    if (!S_ISREG(st.st_mode))
        throw Error(fmt::format("{} {}: not a regular file", what, path.string()));
    if (::access(path.c_str(), mode) != 0)
        throw Error(fmt::format("{} {}: {}", what, path.string(), std::strerror(errno)));
}

} // namespace

const char* to_string(ExitReason reason) noexcept {
    switch (reason) {
    case ExitReason::poweroff:
        return "poweroff";
    case ExitReason::reboot:
        return "reboot";
    case ExitReason::panic:
        return "panic";
    case ExitReason::error:
        return "error";
    case ExitReason::stopped:
        return "stopped";
    }
    return "unknown";
}

::ember::ConsoleSpec to_internal(const ConsoleConfig& console) {
    ::ember::ConsoleSpec spec;
    if (console.interactive && console.kind != ConsoleConfig::Kind::stdio)
        throw Error("console: interactive is only for a stdio console");
    switch (console.kind) {
    case ConsoleConfig::Kind::none:
        spec.kind = ConsoleSpec::Kind::none;
        break;
    case ConsoleConfig::Kind::stdio:
        spec.kind = ConsoleSpec::Kind::stdio;
        break;
    case ConsoleConfig::Kind::file:
        if (console.file.empty()) throw Error("console: a file console needs a file path");
        spec.kind = ConsoleSpec::Kind::file;
        spec.path = console.file.string();
        break;
    case ConsoleConfig::Kind::callback: {
        if (!console.callback) throw Error("console: a callback console needs a callback");
        spec.kind = ConsoleSpec::Kind::callback;
        spec.callback = [fn = console.callback](std::span<const uint8_t> bytes) {
            // The caller's exception must not unwind through a vcpu's MMIO
            // dispatch; the text is lost, the guest goes on.
            try {
                fn(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
            } catch (...) {
            }
        };
        break;
    }
    }
    return spec;
}

::ember::RunOptions run_options(const ConsoleConfig& console,
                                const std::optional<SignalCheckpoint>& on_signal) {
    ::ember::RunOptions o;
    o.console_input = console.kind == ConsoleConfig::Kind::stdio && console.interactive;
    o.checkpoint_on_sigusr1 = on_signal.has_value();
    return o;
}

void apply_signal_checkpoint(::ember::VmConfig& config,
                             const std::optional<SignalCheckpoint>& on_signal) {
    if (!on_signal) return;
    if (on_signal->dir.empty()) throw Error("checkpoint_on_sigusr1: no checkpoint directory given");
    if (auto why = checkpoint_dir_problem(on_signal->dir))
        throw Error(fmt::format("checkpoint directory {}: {}", on_signal->dir.string(), *why));
    config.checkpoint_dir = on_signal->dir;
    config.continue_after_checkpoint = on_signal->then == AfterCheckpoint::keep_running;
}

void apply_checkpoint_options(::ember::VmConfig& config, const CheckpointOptions& options) {
    config.checkpoint_drain = options.drain;
    config.checkpoint_copy_disks = options.copy_disks;
}

std::vector<fault::FaultSpec> to_internal(const std::vector<std::string>& faults) {
    std::vector<fault::FaultSpec> out;
    // A bad spec throws fault::FaultSpecError, an ember::Error naming it.
    for (const auto& f : faults) out.push_back(fault::parse_fault_spec(f));
    return out;
}

::ember::RateLimit to_internal(const RateLimitConfig& limit) {
    auto bucket =
        [](const std::optional<TokenBucketConfig>& b) -> std::optional<::ember::TokenBucketSpec> {
        if (!b) return std::nullopt;
        return ::ember::TokenBucketSpec{b->size, b->one_time_burst, b->refill_time_ms};
    };
    return {bucket(limit.bandwidth), bucket(limit.ops)};
}

::ember::VmConfig to_internal(const VmConfig& c) {
    ::ember::VmConfig out;
    if (c.kernel.empty()) throw Error("no kernel image given (VmConfig::kernel)");
    require_file(c.kernel, "kernel", R_OK);
    out.kernel = c.kernel;
    if (c.initrd) {
        require_file(*c.initrd, "initrd", R_OK);
        out.initrd = *c.initrd;
    }
    out.cmdline = c.cmdline;
    if (c.cpus < 1 || c.cpus > kMaxCpus)
        throw Error(fmt::format("{} vcpus asked for: must be between 1 and {}", c.cpus, kMaxCpus));
    out.cpus = c.cpus;
    check_vcpu_cpus(c.vcpu_cpus, c.cpus);
    out.vcpu_cpus = c.vcpu_cpus;
    if (c.memory_bytes < kMinMemBytes)
        throw Error(fmt::format("{} bytes of memory asked for: a guest needs at least {} MiB",
                                c.memory_bytes, kMinMemBytes >> 20));
    if (c.memory_bytes % 4096 != 0)
        throw Error(fmt::format("{} bytes of memory asked for: must be a multiple of 4 KiB",
                                c.memory_bytes));
    if (c.huge_pages_2m && c.memory_bytes % kHugePageBytes != 0)
        throw Error(fmt::format("{} bytes of memory asked for with 2 MiB huge pages: must be a "
                                "multiple of 2 MiB",
                                c.memory_bytes));
    out.mem_bytes = c.memory_bytes;
    out.huge_pages = c.huge_pages_2m ? HugePages::two_mib : HugePages::none;
    if (c.disks.size() > platform::kMaxDisks)
        throw Error(fmt::format("{} disks given; ember supports at most {}", c.disks.size(),
                                platform::kMaxDisks));
    std::set<std::string> ids;
    for (const auto& d : c.disks) {
        if (d.path.empty()) throw Error("a disk has no path");
        DiskSpec spec;
        spec.path = d.path.string();
        spec.readonly = d.readonly;
        spec.cache = d.cache == DiskConfig::Cache::none ? DiskSpec::Cache::none
                                                         : DiskSpec::Cache::writeback;
        spec.engine = d.engine == DiskConfig::Engine::sync ? DiskSpec::Engine::sync
                                                            : DiskSpec::Engine::uring;
        spec.poll_us = d.poll_us;
        spec.iothread_cpu = d.iothread_cpu;
        spec.rate_limit = to_internal(d.rate_limit);
        check_disk_spec(spec);
        // As BlockDisk does for the GET_ID string; here so that a checkpoint
        // records the id a restore override names.
        spec.id = d.id.empty() ? d.path.filename().string().substr(0, kBlockIdMax) : d.id;
        if (spec.id.size() > kBlockIdMax)
            throw Error(fmt::format("disk {}: id '{}' is longer than {} bytes", spec.path, spec.id,
                                    kBlockIdMax));
        if (!ids.insert(spec.id).second)
            throw Error(
                fmt::format("disk {}: another disk already has the id '{}'", spec.path, spec.id));
        // The device's own checks (exists, file or block device, opens as
        // asked, size a whole number of sectors), with its messages, before
        // KVM is touched; the VM opens it again.
        BlockDisk::open(spec);
        out.disks.push_back(std::move(spec));
    }
    for (const auto& n : c.nets) {
        NetSpec spec{n.id, n.tap, std::nullopt};
        spec.rx_limit = to_internal(n.rx_rate_limit);
        spec.tx_limit = to_internal(n.tx_rate_limit);
        try {
            if (!n.mac.empty()) spec.mac = parse_mac(n.mac);
            check_net_spec(spec); // the rate limits' buckets too
        } catch (const NetSpecError& e) {
            throw Error(
                fmt::format("network device {}: {}", n.id.empty() ? n.tap : n.id, e.what()));
        }
        out.nets.push_back(std::move(spec));
    }
    try {
        resolve_net_ids(out.nets); // checks each too
    } catch (const NetSpecError& e) {
        throw Error(e.what());
    }
    out.console = to_internal(c.console);
    out.virtio_cmdline = c.virtio_cmdline;
    out.entropy = c.entropy;
    apply_signal_checkpoint(out, c.checkpoint_on_sigusr1);
    apply_checkpoint_options(out, c.checkpoints);
    out.faults = to_internal(c.faults);
    return out;
}

ExitInfo to_public(const ::ember::VmExit& e) {
    switch (e.reason) {
    case ::ember::ExitReason::poweroff:
        return {ExitReason::poweroff, e.message};
    case ::ember::ExitReason::reboot:
        return {ExitReason::reboot, e.message};
    case ::ember::ExitReason::panic:
        return {ExitReason::panic, e.message};
    case ::ember::ExitReason::error:
        return {ExitReason::error, e.message};
    case ::ember::ExitReason::user_quit:
        return {ExitReason::stopped,
                e.message.empty() ? "stopped from the console (Ctrl-A x)" : e.message};
    case ::ember::ExitReason::checkpointed:
        return {ExitReason::stopped, e.message.empty() ? "checkpoint taken" : e.message, true};
    }
    return {ExitReason::error, "unknown exit reason"};
}

} // namespace ember::embed
