#include "tools/disk_trace.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#include "tools/disk_load.h"

namespace ember::bench {

std::optional<TraceEvent> parse_trace_line(std::string_view line) {
    if (line.empty() || line.front() == '#') return std::nullopt;
    // "<task>-<pid> [001] ..... 64250.581755: block_rq_issue: 254,0 RS 4096 () 35017208 + 8 ..."
    TraceEvent e{TraceEvent::Kind::issue, 0, 0};
    size_t at = line.find(": block_rq_issue: ");
    if (at == std::string_view::npos) {
        at = line.find(": block_rq_complete: ");
        e.kind = TraceEvent::Kind::complete;
    }
    if (at == std::string_view::npos || at == 0) return std::nullopt;
    const size_t ts = line.rfind(' ', at - 1);
    if (ts == std::string_view::npos) return std::nullopt;
    const char* t0 = line.data() + ts + 1;
    const char* t1 = line.data() + at;
    if (auto [end, ec] = std::from_chars(t0, t1, e.seconds); ec != std::errc{} || end != t1)
        return std::nullopt;
    const size_t plus = line.find(" + ", at);
    if (plus == std::string_view::npos) return std::nullopt;
    const size_t s = line.rfind(' ', plus - 1);
    if (s == std::string_view::npos || s < at) return std::nullopt;
    const char* s0 = line.data() + s + 1;
    const char* s1 = line.data() + plus;
    if (auto [end, ec] = std::from_chars(s0, s1, e.sector); ec != std::errc{} || end != s1)
        return std::nullopt;
    return e;
}

DiskRhythm disk_rhythm(std::span<const TraceEvent> events, unsigned large) {
    DiskRhythm r;
    std::unordered_map<uint64_t, double> issued; // sector -> when
    double first = -1, last = 0, idle = 0, latency = 0, last_complete = 0;
    uint64_t timed = 0, bursts = 0, in_burst = 0;
    std::vector<double> turns;
    for (const auto& e : events) {
        if (first >= 0 && issued.empty()) idle += e.seconds - last;
        last = e.seconds;
        if (e.kind == TraceEvent::Kind::issue) {
            if (first < 0) first = e.seconds;
            if (large > 0 && in_burst >= large) turns.push_back((e.seconds - last_complete) * 1e6);
            in_burst = 0;
            issued[e.sector] = e.seconds;
            continue;
        }
        ++r.completions;
        if (in_burst++ == 0) ++bursts;
        last_complete = e.seconds;
        if (auto it = issued.find(e.sector); it != issued.end()) {
            latency += e.seconds - it->second;
            ++timed;
            issued.erase(it);
        }
    }
    if (bursts > 0) r.per_burst = static_cast<double>(r.completions) / static_cast<double>(bursts);
    if (first >= 0 && last > first) r.idle = idle / (last - first);
    if (!turns.empty()) {
        std::nth_element(turns.begin(), turns.begin() + static_cast<long>(turns.size() / 2),
                         turns.end());
        r.turnaround_us = turns[turns.size() / 2];
    }
    if (timed > 0) r.ms_per_request = latency / static_cast<double>(timed) * 1e3;
    return r;
}

namespace {
bool write_file(const std::filesystem::path& p, std::string_view text) {
    std::ofstream out(p);
    out << text;
    out.flush();
    return static_cast<bool>(out);
}

std::filesystem::path tracefs_root() {
    for (const char* p : {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"})
        if (std::filesystem::exists(std::filesystem::path(p) / "instances")) return p;
    return {};
}

constexpr const char* kEvents[] = {"block_rq_issue", "block_rq_complete"};
constexpr std::string_view kInstancePrefix = "ember-bench-";

// No such process, or one that ended and awaits its parent's wait (a zombie:
// kill() still finds it). EPERM means it lives, as another user's program.
bool process_gone(pid_t pid) {
    if (::kill(pid, 0) != 0) return errno == ESRCH;
    std::ifstream in(fmt::format("/proc/{}/stat", pid));
    std::string stat;
    std::getline(in, stat);
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
    const auto close = stat.rfind(") ");
    return close != std::string::npos && close + 2 < stat.size() &&
           (stat[close + 2] == 'Z' || stat[close + 2] == 'X');
}
} // namespace

std::vector<std::string> remove_stale_instances(const std::filesystem::path& instances) {
    std::vector<std::string> removed;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(instances, ec)) {
        const auto name = entry.path().filename().string();
        if (!name.starts_with(kInstancePrefix)) continue;
        const std::string_view digits = std::string_view(name).substr(kInstancePrefix.size());
        pid_t pid = 0;
        const auto [end, err] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
        if (err != std::errc() || end != digits.data() + digits.size() || pid <= 0) continue;
        if (!process_gone(pid)) continue;
        // tracefs removes an instance whole, events enabled or not; it says
        // EBUSY while somebody still has one of its files open.
        if (::rmdir(entry.path().c_str()) == 0) removed.push_back(name);
    }
    return removed;
}

std::optional<DiskTrace> DiskTrace::for_file(const std::filesystem::path& file, std::string& why,
                                             std::vector<std::string>& removed) {
    const auto root = tracefs_root();
    // First, so that a run that cannot trace still cleans up.
    if (!root.empty())
        for (auto& name : remove_stale_instances(root / "instances"))
            removed.push_back(std::move(name));
    auto sys = block_device_sysfs(file, why);
    if (!sys) return std::nullopt;
    // Requests are traced against the whole disk, with the sector remapped.
    if (std::filesystem::exists(*sys / "partition")) sys = sys->parent_path();
    unsigned maj = 0, min = 0;
    if (std::ifstream in(*sys / "dev"); !(in >> maj) || in.get() != ':' || !(in >> min)) {
        why = fmt::format("cannot read {}", (*sys / "dev").string());
        return std::nullopt;
    }
    if (root.empty()) {
        why = "no tracefs (mount -t tracefs nodev /sys/kernel/tracing)";
        return std::nullopt;
    }
    const auto instance = root / "instances" / fmt::format("{}{}", kInstancePrefix, ::getpid());
    if (::mkdir(instance.c_str(), 0700) != 0 && errno != EEXIST) {
        why = fmt::format("cannot make a tracefs instance {} ({}; it needs root)",
                          instance.string(), std::strerror(errno));
        return std::nullopt;
    }
    DiskTrace t(instance, sys->filename().string());
    // The kernel's dev_t in trace events: major << 20 | minor.
    const auto filter = fmt::format("dev == {}", (uint64_t{maj} << 20) | min);
    bool ok =
        write_file(instance / "tracing_on", "0") && write_file(instance / "buffer_size_kb", "8192");
    for (const char* e : kEvents) {
        const auto dir = instance / "events" / "block" / e;
        ok = ok && write_file(dir / "filter", filter) && write_file(dir / "enable", "1");
    }
    if (!ok) {
        why = fmt::format("cannot set up the block trace events in {}", instance.string());
        return std::nullopt; // t's destructor removes the instance
    }
    return t;
}

DiskTrace::DiskTrace(DiskTrace&& other) noexcept
    : instance_(std::exchange(other.instance_, {})), device_(std::move(other.device_)),
      window_(std::move(other.window_)) {}

DiskTrace::~DiskTrace() {
    if (window_.joinable()) window_.join();
    if (instance_.empty()) return;
    write_file(instance_ / "tracing_on", "0");
    for (const char* e : kEvents)
        write_file(instance_ / "events" / "block" / e / "enable", "0");
    ::rmdir(instance_.c_str());
}

void DiskTrace::start(std::chrono::milliseconds delay, std::chrono::milliseconds length) {
    if (window_.joinable()) window_.join();
    window_ = std::thread([this, delay, length] {
        std::this_thread::sleep_for(delay);
        write_file(instance_ / "trace", ""); // opening it for writing clears it
        write_file(instance_ / "tracing_on", "1");
        std::this_thread::sleep_for(length);
        write_file(instance_ / "tracing_on", "0");
    });
}

std::vector<TraceEvent> DiskTrace::collect() {
    if (window_.joinable()) window_.join();
    std::vector<TraceEvent> events;
    std::ifstream in(instance_ / "trace");
    for (std::string line; std::getline(in, line);)
        if (auto e = parse_trace_line(line)) events.push_back(*e);
    return events;
}

} // namespace ember::bench
