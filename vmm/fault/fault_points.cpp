#include "vmm/fault/fault_points.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "vmm/log.h"

namespace ember::fault {

namespace {

constexpr std::array<PointInfo, kPointCount> kPoints{{
    {Point::blk_popped, "blk.popped",
     "a request was taken from the avail ring and marked in flight in the in-flight region",
     PointThread::disk_io},
    {Point::blk_submitted, "blk.submitted", "host I/O for the popped requests was submitted",
     PointThread::disk_io},
    {Point::blk_host_done, "blk.host_done",
     "a host I/O completion arrived, before the device handles it", PointThread::disk_io},
    {Point::blk_used_written, "blk.used_written",
     "used ring elements written, used.idx not yet published", PointThread::disk_io},
    {Point::blk_used_idx_published, "blk.used_idx_published",
     "used.idx published, the batch's in-flight entries not yet cleared", PointThread::disk_io},
    {Point::blk_inflight_cleared, "blk.inflight_cleared",
     "the batch's in-flight entries cleared, the guest not yet notified", PointThread::disk_io},
    {Point::blk_notified, "blk.notified", "the guest was notified (InterruptStatus and irqfd)",
     PointThread::disk_io},
    {Point::checkpoint_memory, "checkpoint.memory",
     "checkpoint: guest memory written, device state not yet", PointThread::main},
    {Point::checkpoint_devices, "checkpoint.devices",
     "checkpoint: device state written, vcpu state and manifest not yet", PointThread::main},
    {Point::vcpu_mmio, "vcpu.mmio",
     "a vcpu took an MMIO exit (a device register access), before the device handles it",
     PointThread::vcpu},
}};

struct Armed {
    std::atomic<bool> armed{false};
    std::atomic<uint64_t> after{1};
    std::atomic<uint64_t> hits{0};
    std::atomic<Action> action{Action::restart_io};
    std::atomic<uint64_t> fired{0};
};
std::array<Armed, kPointCount> g_armed;
std::atomic<NegativeControl> g_negative{NegativeControl::none};

Armed& slot(Point p) noexcept {
    return g_armed[static_cast<size_t>(p)];
}

// Serialises recomputing g_active: without it, a disarm that read the flags
// before a concurrent arm() could store false after that arm() stored true.
std::mutex g_update_mu;

void update_active() noexcept {
    std::lock_guard lock(g_update_mu);
    bool any = g_negative.load(std::memory_order_acquire) != NegativeControl::none;
    for (const auto& a : g_armed)
        any = any || a.armed.load(std::memory_order_acquire);
    // Release: pairs with the acquire of `armed` in on_hit(); the flag only
    // lets hits reach the slow path, which checks the point itself.
    detail::g_active.store(any, std::memory_order_release);
}

std::optional<uint64_t> parse_number(std::string_view s) {
    uint64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> out;
    for (;;) {
        const size_t at = s.find(sep);
        out.push_back(s.substr(0, at));
        if (at == std::string_view::npos) return out;
        s.remove_prefix(at + 1);
    }
}

std::string point_names() {
    std::string names;
    for (const auto& p : kPoints)
        names += fmt::format("{}{}", names.empty() ? "" : ", ", p.name);
    return names;
}

// One line before the process dies, so a log shows which point ended it.
void say_dying(Point p, std::string_view how) noexcept {
    try {
        log::warn("fault {} fired: {}", info(p).name, how);
    } catch (...) {
    }
}

// Where `p` runs, for messages.
std::string_view runs_on(Point p) noexcept {
    switch (info(p).thread) {
    case PointThread::disk_io:
        return "a disk's I/O thread";
    case PointThread::main:
        return "the main thread";
    case PointThread::vcpu:
        return "a vcpu thread";
    }
    return "?";
}

// The escape action. Under ember's filters the first call it makes that they
// stop ends ember in the SIGSYS handler; what follows runs only without them.
void escape(Point p, uint64_t n) {
    log::warn("fault {} fired at hit {}: this thread tries to escape (opens {} and an IPv4 socket)",
              info(p).name, n, kEscapeFile);
    const int file = ::open(kEscapeFile, O_RDONLY | O_CLOEXEC);
    const int file_errno = errno;
    const int sock = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int sock_errno = errno;
    const auto outcome = [](int fd, int err) {
        return fd >= 0 ? std::string("went through")
                       : fmt::format("failed ({})", std::strerror(err));
    };
    log::warn("fault {}: nothing stopped the escape (no system-call filter): opening {} {}, the "
              "IPv4 socket {}",
              info(p).name, kEscapeFile, outcome(file, file_errno), outcome(sock, sock_errno));
    if (file >= 0) ::close(file);
    if (sock >= 0) ::close(sock);
}

} // namespace

namespace detail {
std::atomic<bool> g_active{false};

void on_hit(Point p) {
    Armed& a = slot(p);
    // Acquire: pairs with the release store in arm(); after, action and the
    // reset hit count are visible once we see the point armed.
    if (!a.armed.load(std::memory_order_acquire)) return;
    const uint64_t n = a.hits.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n != a.after.load(std::memory_order_relaxed)) return;
    // Exactly one hit wins: the one that disarms.
    bool expected = true;
    if (!a.armed.compare_exchange_strong(expected, false, std::memory_order_acq_rel)) return;
    update_active();
    a.fired.fetch_add(1, std::memory_order_relaxed);
    switch (a.action.load(std::memory_order_relaxed)) {
    case Action::kill:
        say_dying(p, fmt::format("SIGKILL at hit {}", n));
        ::kill(::getpid(), SIGKILL);
        ::pause(); // SIGKILL is not instantaneous for the sender; never return
        std::abort();
    case Action::abort:
        say_dying(p, fmt::format("abort at hit {}", n));
        std::abort();
    case Action::restart_io:
        log::info("fault {} fired at hit {}: the I/O thread abandons its state", info(p).name, n);
        throw IoRestart{p};
    case Action::escape:
        escape(p, n);
        return;
    }
}
} // namespace detail

std::span<const PointInfo> all_points() noexcept {
    return kPoints;
}

const PointInfo& info(Point p) noexcept {
    return kPoints[static_cast<size_t>(p)];
}

std::string_view to_string(Action a) noexcept {
    switch (a) {
    case Action::restart_io:
        return "restart-io";
    case Action::kill:
        return "kill";
    case Action::abort:
        return "abort";
    case Action::escape:
        return "escape";
    }
    return "?";
}

std::optional<Point> find_point(std::string_view name) noexcept {
    for (const auto& p : kPoints)
        if (p.name == name) return p.point;
    return std::nullopt;
}

FaultSpec parse_fault_spec(std::string_view text) {
    const auto parts = split(text, ':');
    FaultSpec s;
    bool action_given = false;
    if (parts[0] == "random") {
        s.random = true;
    } else if (auto p = find_point(parts[0])) {
        s.point = *p;
        s.action = info(*p).io_thread() ? Action::restart_io : Action::kill;
    } else {
        throw FaultSpecError(fmt::format("--fault {}: unknown fault point '{}' (known: random, {}; "
                                         "see ember --list-faults)",
                                         text, parts[0], point_names()));
    }
    for (size_t i = 1; i < parts.size(); ++i) {
        const auto kv = parts[i];
        const size_t eq = kv.find('=');
        const auto key = kv.substr(0, eq);
        const auto value = eq == std::string_view::npos ? std::string_view{} : kv.substr(eq + 1);
        if (eq == std::string_view::npos || value.empty())
            throw FaultSpecError(
                fmt::format("--fault {}: '{}' is not KEY=VALUE (after=N, action=..., period=MS)",
                            text, kv));
        if (key == "after" && !s.random) {
            const auto n = parse_number(value);
            if (!n || *n == 0)
                throw FaultSpecError(fmt::format(
                    "--fault {}: after={}: must be a whole number >= 1 (the hit that fires)", text,
                    value));
            s.after = *n;
        } else if (key == "period" && s.random) {
            const auto n = parse_number(value);
            if (!n || *n == 0 || *n > 3'600'000)
                throw FaultSpecError(fmt::format(
                    "--fault {}: period={}: must be milliseconds in [1, 3600000]", text, value));
            s.period_ms = static_cast<uint32_t>(*n);
        } else if (key == "action") {
            if (value == "restart-io") s.action = Action::restart_io;
            else if (value == "kill") s.action = Action::kill;
            else if (value == "abort") s.action = Action::abort;
            else if (value == "escape")
                s.action = Action::escape;
            else
                throw FaultSpecError(fmt::format(
                    "--fault {}: action={}: unknown action (use restart-io, kill, abort or escape)",
                    text, value));
            action_given = true;
        } else {
            throw FaultSpecError(fmt::format("--fault {}: unknown key '{}' ({})", text, key,
                                             s.random ? "random takes period=MS and action=restart-io"
                                                      : "a point takes after=N and action=..."));
        }
    }
    if (s.random) {
        if (s.period_ms == 0)
            throw FaultSpecError(fmt::format("--fault {}: random needs period=MS", text));
        if (action_given && s.action != Action::restart_io)
            throw FaultSpecError(fmt::format("--fault {}: action={}: random faults only restart "
                                             "the I/O threads (action=restart-io)",
                                             text, to_string(s.action)));
    } else if (s.action == Action::restart_io && !info(s.point).io_thread()) {
        throw FaultSpecError(fmt::format("--fault {}: action=restart-io: {} runs on {}, not an "
                                         "I/O thread (use kill, abort or escape)",
                                         text, info(s.point).name, runs_on(s.point)));
    }
    return s;
}

std::string to_string(const FaultSpec& s) {
    if (s.random) return fmt::format("random:period={}:action={}", s.period_ms, to_string(s.action));
    return fmt::format("{}:after={}:action={}", info(s.point).name, s.after, to_string(s.action));
}

void arm(const FaultSpec& spec) {
    if (spec.random) return;
    if (spec.action == Action::restart_io && !info(spec.point).io_thread())
        throw FaultSpecError(fmt::format("fault {}: restart-io needs a point on an I/O thread",
                                         info(spec.point).name));
    if (spec.after == 0) throw FaultSpecError(fmt::format("fault {}: after must be >= 1",
                                                          info(spec.point).name));
    Armed& a = slot(spec.point);
    a.armed.store(false, std::memory_order_release);
    a.after.store(spec.after, std::memory_order_relaxed);
    a.action.store(spec.action, std::memory_order_relaxed);
    a.hits.store(0, std::memory_order_relaxed);
    // Release: pairs with the acquire in on_hit(); the fields above first.
    a.armed.store(true, std::memory_order_release);
    update_active();
}

void disarm(Point p) noexcept {
    slot(p).armed.store(false, std::memory_order_release);
    update_active();
}

void disarm_all() noexcept {
    for (auto& a : g_armed)
        a.armed.store(false, std::memory_order_release);
    update_active();
}

uint64_t fired(Point p) noexcept {
    return slot(p).fired.load(std::memory_order_relaxed);
}

void set_negative_control(NegativeControl c) noexcept {
    g_negative.store(c, std::memory_order_release);
    update_active();
}

NegativeControl negative_control() noexcept {
    return g_negative.load(std::memory_order_relaxed);
}

} // namespace ember::fault
