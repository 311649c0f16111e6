// Named fault points for crash injection (DESIGN.md "Fault points and crash
// injection"): the block path, checkpoint writing and the vcpus' MMIO exits
// call fault::hit(Point)
// at fixed instants; a point armed from the command line (--fault) fires at
// its N-th hit with one action:
//
//   restart-io  the I/O thread throws IoRestart, which unwinds it; it then
//               reports itself lost (DeviceSignals::io_thread_lost) and a
//               supervisor thread (IoSupervisor) calls restart_io(): a fresh
//               I/O thread recovers from guest memory and the in-flight
//               region alone. Only at blk.* points (they run on I/O threads).
//   kill        SIGKILL to the whole process at that instant, no cleanup: a
//               crashed VMM.
//   abort       std::abort() (SIGABRT, core dump where enabled).
//   escape      the thread at the point tries what a guest that took it over
//               through a device bug would: it opens a host file (kEscapeFile)
//               and an IPv4 socket. ember's system-call filters stop it (exit
//               status 148, naming the call and the thread); without them
//               (--no-seccomp) both go through, ember says so and goes on.
//
// Disarmed, a point costs one relaxed load of a global flag and a branch
// predicted not taken (bench-blk --fault-cost measures it).
//
// The registry is process-wide on purpose: a fault point must be reachable
// from any thread without plumbing, like a tracepoint. Arming and disarming
// are thread-safe; a point fires at most once per arming.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "vmm/errors.h"

namespace ember::fault {

enum class Point : uint8_t {
    blk_popped,             // a chain was popped and marked in the in-flight region
    blk_submitted,          // host I/O for popped chains was submitted
    blk_host_done,          // one host I/O completion arrived, before it is handled
    blk_used_written,       // used elements written, used.idx not yet published
    blk_used_idx_published, // used.idx published, in-flight entries not yet cleared
    blk_inflight_cleared,   // in-flight entries cleared, guest not yet notified
    blk_notified,           // the guest was notified (InterruptStatus + irqfd)
    checkpoint_memory,      // checkpoint: guest memory written, devices not yet
    checkpoint_devices,     // checkpoint: device state written, vcpus and manifest not yet
    vcpu_mmio,              // a vcpu took an MMIO exit, before the device handles it
};
inline constexpr size_t kPointCount = 10;

enum class Action : uint8_t { restart_io, kill, abort, escape };

// The host file the escape action opens: on every Linux host, readable by
// anyone, and nothing a VMM has reason to open.
inline constexpr const char* kEscapeFile = "/etc/passwd";

// The thread a point runs on.
enum class PointThread : uint8_t { disk_io, main, vcpu };

struct PointInfo {
    Point point;
    std::string_view name;        // "blk.popped"
    std::string_view description; // one line, for --list-faults
    PointThread thread;
    // On a block I/O thread: restart-io allowed.
    constexpr bool io_thread() const noexcept { return thread == PointThread::disk_io; }
};
std::span<const PointInfo> all_points() noexcept;
const PointInfo& info(Point p) noexcept;
std::string_view to_string(Action a) noexcept;
std::optional<Point> find_point(std::string_view name) noexcept;

// One --fault value: either a named point or random restarts.
struct FaultSpec {
    bool random{false};
    Point point{Point::blk_popped};
    uint64_t after{1}; // which hit fires, >= 1
    Action action{Action::restart_io};
    uint32_t period_ms{0}; // random: mean interval between restarts

    bool operator==(const FaultSpec&) const = default;
};

// A --fault value that cannot be used; the message names the value.
class FaultSpecError : public Error {
  public:
    using Error::Error;
};

// NAME[:after=N][:action=restart-io|kill|abort|escape] or random:period=MS[:action=restart-io].
// The default action is restart-io at blk.* points, kill at the others
// (they run on the main thread or a vcpu: no I/O thread to restart). Throws
// FaultSpecError.
FaultSpec parse_fault_spec(std::string_view text);
std::string to_string(const FaultSpec& spec);

// Thrown at a fired restart-io point, on the I/O thread. Not derived from
// std::exception so that no generic handler on the way swallows it.
struct IoRestart {
    Point point;
};

// Arms a named point (spec.random is ignored here: IoSupervisor does random
// restarts). Replaces an earlier arming of the same point; the hit count
// starts from 0. Throws FaultSpecError for restart-io at a checkpoint point.
void arm(const FaultSpec& spec);
void disarm(Point p) noexcept;
void disarm_all() noexcept;
// How many times `p` has fired since the process started.
uint64_t fired(Point p) noexcept;

// Negative controls for the crash suite (tests/crash): recovery or
// completion broken on purpose, to prove the suite can fail. Never set by
// ember itself.
enum class NegativeControl : uint8_t {
    none,
    // Recovery forgets the requests it should resubmit (clears their entries).
    skip_resubmit,
    // A completion clears the in-flight entries before it publishes used.idx.
    clear_before_publish,
};
void set_negative_control(NegativeControl c) noexcept;
NegativeControl negative_control() noexcept;

namespace detail {
// True while any point is armed or a negative control is set. Relaxed: a hit
// that races with arm() may miss the new arming, which is harmless (arming is
// not synchronised with any particular hit); on_hit() re-checks with acquire.
extern std::atomic<bool> g_active;
void on_hit(Point p);
} // namespace detail

// The fault point itself.
inline void hit(Point p) {
    if (detail::g_active.load(std::memory_order_relaxed)) [[unlikely]]
        detail::on_hit(p);
}

// Whether a negative control is in effect (cheap on the hot path).
inline bool negative(NegativeControl c) noexcept {
    return detail::g_active.load(std::memory_order_relaxed) && negative_control() == c;
}

} // namespace ember::fault
