// Parking an I/O thread for a checkpoint without draining its host I/O
// (DESIGN.md "Signal-masked completion").
//
// The checkpointing thread sends the quiesce signal (SIGRTMIN+1; the vcpu
// kick is SIGRTMIN) to one I/O thread with pthread_sigqueue. The I/O thread
// keeps that signal blocked with pthread_sigmask around every section that
// must not be seen half done (pop + mark, and a completion batch: used ring,
// in-flight region, InterruptStatus, irqfd), so the handler only ever runs
// between such sections. The handler acknowledges (atomic + futex wake) and
// parks on a futex until released: async-signal-safe calls only.
//
//   I/O thread                       checkpointing thread (vcpus paused)
//   ----------                       ----------------------------------
//   point.attach_current_thread()
//   { MaskedSection m(point); ... }   point.park()    -> true once parked
//                                     ... read guest memory, regions ...
//                                     point.unpark()
//   point.detach_current_thread()    (park() after this returns false)
#pragma once

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace ember {

// SIGRTMIN+1. Process-wide handler, installed once by the first QuiescePoint.
int quiesce_signal() noexcept;

// How a MaskedSection keeps the quiesce signal out.
enum class MaskingMode : uint8_t {
    // pthread_sigmask(SIG_BLOCK) at entry, SIG_SETMASK at exit: two system
    // calls per section; the kernel delivers a pending signal at the exit.
    // The default for block devices, as the issue and DESIGN.md specify.
    sigmask,
    // The same semantics without system calls (~18 ns against ~560 ns per
    // section here; VirtioBlock::set_completion_masking): the section
    // bumps a per-thread counter; a handler that finds it non-zero only
    // records the request, and the section's exit parks the thread right
    // there, exactly where a blocked signal would have been delivered.
    deferred,
    // No protection: the invariant test's negative control and bench-blk's
    // "no masking" column. Never used by ember itself.
    off,
};

class QuiescePoint final {
  public:
    explicit QuiescePoint(MaskingMode mode = MaskingMode::deferred);
    QuiescePoint(const QuiescePoint&) = delete;
    QuiescePoint& operator=(const QuiescePoint&) = delete;

    MaskingMode masking() const noexcept { return mode_; }

    // --- The I/O thread ---------------------------------------------------------------
    // First thing on the thread: every signal blocked except the quiesce
    // signal and synchronous faults (a thread created by a vcpu would inherit
    // the vcpu's mask). The creator must call set_thread() before anyone parks.
    void attach_current_thread() noexcept;
    // Last thing on the thread: the signal blocked for good, park() returns false.
    void detach_current_thread() noexcept;

    // --- The creator ---------------------------------------------------------------
    void set_thread(pthread_t t) noexcept;

    // --- The checkpointing thread ------------------------------------------------------
    // Sends the signal and waits until the thread has parked. Returns false
    // when the thread has already exited (nothing to park). Throws
    // ember::Error when it does not park within `timeout`.
    bool park(std::chrono::milliseconds timeout = std::chrono::seconds(5));
    // Releases a parked thread; it continues exactly where it was interrupted.
    void unpark() noexcept;
    bool parked() const noexcept { return ack_.load(std::memory_order_acquire) == kParked; }

  private:
    friend class MaskedSection;
    static void handler(int, siginfo_t* info, void*);
    // Acknowledge, then wait for unpark(); on the I/O thread (in the handler
    // or at the end of a deferred section). Async-signal-safe.
    void park_here() noexcept;
    static constexpr uint32_t kRunning = 0, kParked = 1, kExited = 2;

    const MaskingMode mode_;
    // MaskingMode::deferred, touched only by the I/O thread and its handler.
    std::atomic<uint32_t> section_depth_{0};
    std::atomic<uint32_t> deferred_{0};
    pthread_t thread_{};
    std::atomic<bool> has_thread_{false};
    // A request is consumed by exactly one handler run; a stray signal
    // (another sender, a request withdrawn after a timeout) finds 0 and returns.
    std::atomic<uint32_t> request_{0};
    std::atomic<uint32_t> ack_{kRunning}; // futex word: kRunning, kParked, kExited
    std::atomic<uint32_t> resume_{0};     // futex word: bumped by unpark()
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// Keeps the quiesce signal out for its lifetime (see MaskingMode). On the
// point's I/O thread only.
class MaskedSection final {
  public:
    explicit MaskedSection(QuiescePoint& point) noexcept;
    ~MaskedSection();
    MaskedSection(const MaskedSection&) = delete;
    MaskedSection& operator=(const MaskedSection&) = delete;

  private:
    QuiescePoint& point_;
    sigset_t old_{};
};

} // namespace ember
