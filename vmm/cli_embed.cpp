#include "vmm/cli_embed.h"

#include "vmm/log.h"

namespace ember {
namespace {

// The command's console: a stdio console is interactive (stdin forwarded,
// Ctrl-A x quits), as it always was for `ember run` and `ember restore`.
embed::ConsoleConfig console_of(const ConsoleSpec& spec) {
    switch (spec.kind) {
    case ConsoleSpec::Kind::stdio:
        return embed::ConsoleConfig::to_stdout(true);
    case ConsoleSpec::Kind::none:
        return embed::ConsoleConfig::none();
    case ConsoleSpec::Kind::file:
        return embed::ConsoleConfig::to_file(spec.path);
    case ConsoleSpec::Kind::callback:
        break;
    }
    throw Error("the command line cannot give a callback console");
}

// --checkpoint-dir arms SIGUSR1; without it SIGUSR1 stays blocked (main()
// blocks it before any thread starts) and does nothing.
std::optional<embed::SignalCheckpoint> on_sigusr1(const CheckpointOptions& c) {
    if (!c.dir) return std::nullopt;
    return embed::SignalCheckpoint{
        *c.dir, c.continue_after ? embed::AfterCheckpoint::keep_running : embed::AfterCheckpoint::stop};
}

embed::CheckpointOptions checkpoints_of(const CheckpointOptions& c) {
    return embed::CheckpointOptions{c.drain, c.copy_disks};
}

std::vector<std::string> fault_texts(const std::vector<fault::FaultSpec>& faults) {
    std::vector<std::string> out;
    for (const auto& f : faults) out.push_back(fault::to_string(f)); // parses back to f
    return out;
}

} // namespace

embed::VmConfig to_embed(const RunRequest& run) {
    return to_embed(run.config);
}

embed::RateLimitConfig to_embed(const RateLimit& limit) {
    auto bucket =
        [](const std::optional<TokenBucketSpec>& b) -> std::optional<embed::TokenBucketConfig> {
        if (!b) return std::nullopt;
        return embed::TokenBucketConfig{b->size, b->one_time_burst, b->refill_time_ms};
    };
    return {bucket(limit.bandwidth), bucket(limit.ops)};
}

embed::VmConfig to_embed(const VmConfig& c) {
    embed::VmConfig out;
    out.kernel = c.kernel;
    out.initrd = c.initrd;
    out.cmdline = c.cmdline;
    out.cpus = c.cpus;
    out.vcpu_cpus = c.vcpu_cpus;
    out.memory_bytes = c.mem_bytes;
    out.huge_pages_2m = c.huge_pages == HugePages::two_mib;
    for (const auto& d : c.disks) {
        embed::DiskConfig disk;
        disk.id = d.id;
        disk.path = d.path;
        disk.readonly = d.readonly;
        disk.cache = d.cache == DiskSpec::Cache::none ? embed::DiskConfig::Cache::none
                                                      : embed::DiskConfig::Cache::writeback;
        disk.engine = d.engine == DiskSpec::Engine::sync ? embed::DiskConfig::Engine::sync
                                                         : embed::DiskConfig::Engine::uring;
        disk.poll_us = d.poll_us;
        disk.iothread_cpu = d.iothread_cpu;
        disk.rate_limit = to_embed(d.rate_limit);
        out.disks.push_back(std::move(disk));
    }
    for (const auto& n : c.nets)
        out.nets.push_back({n.id, n.tap, n.mac ? format_mac(*n.mac) : std::string(),
                            to_embed(n.rx_limit), to_embed(n.tx_limit)});
    out.console = console_of(c.console);
    out.virtio_cmdline = c.virtio_cmdline;
    out.entropy = c.entropy;
    const CheckpointOptions ckpt{c.checkpoint_dir, c.continue_after_checkpoint, c.checkpoint_drain,
                                 c.checkpoint_copy_disks};
    out.checkpoint_on_sigusr1 = on_sigusr1(ckpt);
    out.checkpoints = checkpoints_of(ckpt);
    out.faults = fault_texts(c.faults);
    return out;
}

embed::ConsoleConfig to_embed(const ConsoleSpec& console) {
    return console_of(console);
}

embed::RestoreOverrides to_embed(const RestoreRequest& r) {
    embed::RestoreOverrides out;
    for (const auto& [id, path] : r.disk_overrides) out.disks.emplace(id, path); // the first one for an id wins, as before
    for (const auto& [id, tap] : r.net_overrides)
        out.nets.emplace(id, tap);
    out.console = console_of(r.console);
    out.checkpoint_on_sigusr1 = on_sigusr1(r.checkpoint);
    out.checkpoints = checkpoints_of(r.checkpoint);
    out.faults = fault_texts(r.faults);
    out.paused = r.paused;
    return out;
}

int report_exit(const embed::ExitInfo& e) {
    switch (e.reason) {
    case embed::ExitReason::error:
        log::error("{}", e.message);
        return 1;
    case embed::ExitReason::stopped:
        log::info("{}", e.checkpointed ? "checkpoint taken; exiting" : e.message);
        return 0;
    case embed::ExitReason::poweroff:
    case embed::ExitReason::reboot:
    case embed::ExitReason::panic:
        break;
    }
    const char* what = e.reason == embed::ExitReason::poweroff ? "guest powered off"
                       : e.reason == embed::ExitReason::reboot ? "guest rebooted"
                                                               : "guest kernel panicked";
    if (e.message.empty()) {
        log::info("{}", what);
    } else {
        log::info("{} ({})", what, e.message);
    }
    return e.reason == embed::ExitReason::panic ? 1 : 0;
}

} // namespace ember
