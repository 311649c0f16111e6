#include "devices/block/disk_spec.h"

#include <fmt/format.h>

#include <charconv>

#include "vmm/cpu_affinity.h"

namespace ember {

namespace {
// bw=, iops= and their bursts (parse_rate_count).
uint64_t parse_rate(std::string_view text, std::string_view key, std::string_view value,
                    bool bytes) {
    if (const auto n = parse_rate_count(value, bytes)) return *n;
    throw DiskSpecError(fmt::format("disk '{}': {} '{}' is not {}", text, key, value,
                                    rate_count_expected(bytes, "requests")));
}
} // namespace

DiskSpec parse_disk_spec(std::string_view text) {
    DiskSpec spec;
    size_t pos = text.find(',');
    spec.path = std::string(text.substr(0, pos));
    if (spec.path.empty())
        throw DiskSpecError(fmt::format("disk '{}': the path is missing (PATH[,readonly][,id=NAME]"
                                        "[,cache=writeback|none][,engine=uring|sync][,poll=US]"
                                        "[,iothread-cpu=N][,bw=BYTES][,bw-burst=BYTES][,iops=N]"
                                        "[,iops-burst=N])",
                                        text));
    bool seen_id = false, seen_cache = false, seen_engine = false, seen_ro = false,
         seen_poll = false, seen_cpu = false;
    // Per second on the command line; the burst needs its rate.
    std::optional<uint64_t> bw, bw_burst, iops, iops_burst;
    while (pos != std::string_view::npos) {
        const size_t start = pos + 1;
        pos = text.find(',', start);
        const auto part = text.substr(start, pos == std::string_view::npos ? pos : pos - start);
        const size_t eq = part.find('=');
        const auto key = part.substr(0, eq);
        const auto value = eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
        auto once = [&](bool& seen) {
            if (seen)
                throw DiskSpecError(fmt::format("disk '{}': option '{}' given twice", text, key));
            seen = true;
        };
        if (part == "readonly") {
            once(seen_ro);
            spec.readonly = true;
        } else if (key == "id" && eq != std::string_view::npos) {
            once(seen_id);
            if (value.empty() || value.size() > kBlockIdMax)
                throw DiskSpecError(fmt::format("disk '{}': id '{}' must be 1 to {} bytes", text,
                                                value, kBlockIdMax));
            spec.id = std::string(value);
        } else if (key == "cache" && eq != std::string_view::npos) {
            once(seen_cache);
            if (value == "writeback")
                spec.cache = DiskSpec::Cache::writeback;
            else if (value == "none")
                spec.cache = DiskSpec::Cache::none;
            else
                throw DiskSpecError(fmt::format(
                    "disk '{}': cache '{}' is not one of writeback, none", text, value));
        } else if (key == "engine" && eq != std::string_view::npos) {
            once(seen_engine);
            if (value == "uring")
                spec.engine = DiskSpec::Engine::uring;
            else if (value == "sync")
                spec.engine = DiskSpec::Engine::sync;
            else
                throw DiskSpecError(
                    fmt::format("disk '{}': engine '{}' is not one of uring, sync", text, value));
        } else if (key == "poll" && eq != std::string_view::npos) {
            once(seen_poll);
            uint32_t us = 0;
            const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), us);
            if (value.empty() || ec != std::errc{} || end != value.data() + value.size() ||
                us > kMaxPollUs)
                throw DiskSpecError(
                    fmt::format("disk '{}': poll '{}' is not a number of microseconds from 0 to {}",
                                text, value, kMaxPollUs));
            spec.poll_us = us;
        } else if (key == "iothread-cpu" && eq != std::string_view::npos) {
            once(seen_cpu);
            uint32_t cpu = 0;
            const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), cpu);
            if (value.empty() || ec != std::errc{} || end != value.data() + value.size())
                throw DiskSpecError(
                    fmt::format("disk '{}': iothread-cpu '{}' is not a CPU number", text, value));
            spec.iothread_cpu = cpu;
        } else if ((key == "bw" || key == "bw-burst") && eq != std::string_view::npos) {
            auto& slot = key == "bw" ? bw : bw_burst;
            if (slot)
                throw DiskSpecError(fmt::format("disk '{}': option '{}' given twice", text, key));
            slot = parse_rate(text, key, value, true);
        } else if ((key == "iops" || key == "iops-burst") && eq != std::string_view::npos) {
            auto& slot = key == "iops" ? iops : iops_burst;
            if (slot)
                throw DiskSpecError(fmt::format("disk '{}': option '{}' given twice", text, key));
            slot = parse_rate(text, key, value, false);
        } else {
            throw DiskSpecError(fmt::format(
                "disk '{}': unknown option '{}' (known: readonly, id=NAME, cache=writeback|none, "
                "engine=uring|sync, poll=US, iothread-cpu=N, bw=BYTES, bw-burst=BYTES, iops=N, "
                "iops-burst=N)",
                text, part));
        }
    }
    auto bucket = [&](std::optional<uint64_t> rate, std::optional<uint64_t> burst,
                      std::string_view name) -> std::optional<TokenBucketSpec> {
        if (!rate) {
            if (burst)
                throw DiskSpecError(fmt::format("disk '{}': {}-burst= needs {}= (the rate it "
                                                "bursts above)",
                                                text, name, name));
            return std::nullopt;
        }
        return per_second_bucket(*rate, burst);
    };
    spec.rate_limit.bandwidth = bucket(bw, bw_burst, "bw");
    spec.rate_limit.ops = bucket(iops, iops_burst, "iops");
    check_disk_spec(spec);
    return spec;
}

namespace {
void check_iothread_cpu(const DiskSpec& spec) {
    if (!spec.iothread_cpu) return;
    // Here rather than when the thread starts: a guest must not boot with a
    // disk whose thread cannot be placed as asked.
    if (!ember_may_use_cpu(*spec.iothread_cpu))
        throw DiskSpecError(fmt::format("disk {}: iothread-cpu={} is not a CPU ember may run on "
                                        "(allowed: {})",
                                        spec.path, *spec.iothread_cpu, cpu_list(ember_cpus())));
}

void check_poll(const DiskSpec& spec) {
    if (spec.poll_us == 0) return;
    if (spec.poll_us > kMaxPollUs)
        throw DiskSpecError(fmt::format("disk {}: poll {} us is more than {} us", spec.path,
                                        spec.poll_us, kMaxPollUs));
    // Buffered writes run on io_uring's worker thread, which a spinning I/O
    // thread would starve of CPU (bench-blk: a third of the IOPS on 2 CPUs).
    if (spec.cache != DiskSpec::Cache::none)
        throw DiskSpecError(fmt::format("disk {}: poll= needs cache=none (O_DIRECT); with the page "
                                        "cache, io_uring's worker would compete with the spinning "
                                        "I/O thread",
                                        spec.path));
    // The synchronous engine has nothing in flight to poll for.
    if (spec.engine != DiskSpec::Engine::uring)
        throw DiskSpecError(fmt::format("disk {}: poll= needs engine=uring", spec.path));
}

void check_rate_limit(const DiskSpec& spec) {
    auto check = [&](const std::optional<TokenBucketSpec>& b, std::string_view what) {
        if (!b) return;
        if (auto problem = bucket_problem(*b))
            throw DiskSpecError(
                fmt::format("disk {}: the rate limit's {} bucket: {}", spec.path, what, *problem));
    };
    check(spec.rate_limit.bandwidth, "bandwidth");
    check(spec.rate_limit.ops, "ops");
}
} // namespace

void check_disk_spec(const DiskSpec& spec) {
    check_rate_limit(spec);
    check_poll(spec);
    check_iothread_cpu(spec);
}

} // namespace ember
