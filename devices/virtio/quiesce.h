// Parking an I/O thread for a checkpoint without draining its host I/O
// (DESIGN.md "Signal-masked completion").
//
// The checkpointing thread sends the quiesce signal (SIGRTMIN+1; the vcpu
// kick is SIGRTMIN) to one I/O thread with pthread_sigqueue. The I/O thread
// keeps that signal blocked with pthread_sigmask for all of its work: every
// pop + mark and every completion batch (used ring, in-flight region,
// InterruptStatus, irqfd) lies inside the masked stretch, so a checkpoint
// sees none or all of each. It opens the mask only at park points, between
// event handlers, and only when a checkpoint is pending; the signal is
// delivered right there and its handler parks the thread (an acknowledgment
// and a futex: async-signal-safe calls only) until it is released.
//
// Why not the other way round (signal open, blocked only around each batch):
// the handler would then park the thread at any instant outside a batch,
// including inside malloc, Asio's scheduler or the log, holding their locks;
// the checkpointing thread, or a vcpu, needing the same lock would wait
// forever (most likely why unit-checkpoint hung once under ASan). A park point holds
// no lock. And the common case costs one atomic load per wakeup, no system
// call: the mask changes only when a checkpoint actually happens.
//
// An idle thread is blocked in epoll with the signal pending: park() also
// writes the wake eventfd, which the thread's event loop watches, so the
// thread reaches its next park point at once.
//
//   I/O thread                          checkpointing thread (vcpus paused)
//   ----------                          ----------------------------------
//   t = point.spawn(body)  (creator)
//   point.attach_current_thread()
//   loop: run one handler               point.park()    -> true once parked
//         point.park_point()            ... read guest memory, regions ...
//                                       point.unpark()
//   point.detach_current_thread()       (park() after this returns false)
#pragma once

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <utility>

#include "vmm/unique_fd.h"

namespace ember {

// SIGRTMIN+1. Process-wide handler, installed once by the first QuiescePoint.
int quiesce_signal() noexcept;

// How the I/O thread keeps the quiesce signal out of its work.
enum class MaskingMode : uint8_t {
    // Blocked with pthread_sigmask except at park points (above). What
    // ember uses.
    sigmask,
    // Never blocked: the handler parks the thread wherever the signal lands,
    // in the middle of a completion batch too. The invariant test's negative
    // control and bench-blk's "no masking" column only; never used by ember.
    off,
};

class QuiescePoint final {
  public:
    explicit QuiescePoint(MaskingMode mode = MaskingMode::sigmask); // throws SystemError
    QuiescePoint(const QuiescePoint&) = delete;
    QuiescePoint& operator=(const QuiescePoint&) = delete;

    MaskingMode masking() const noexcept { return mode_; }

    // --- The creator ---------------------------------------------------------------
    // Starts the I/O thread with the quiesce signal already blocked (a thread
    // inherits its creator's mask; until attach_current_thread() the signal
    // must not find it at an arbitrary instant) and registers it.
    template <class F>
    std::thread spawn(F&& body) {
        const sigset_t old = block_on_caller();
        std::thread t(std::forward<F>(body));
        ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
        set_thread(t.native_handle());
        return t;
    }

    // --- The I/O thread ---------------------------------------------------------------
    // First thing on the thread: every asynchronous signal blocked (the
    // quiesce signal too, unless masking is off); synchronous faults open.
    void attach_current_thread() noexcept;
    // Last thing on the thread: the signal blocked for good, park() returns false.
    void detach_current_thread() noexcept;
    // The eventfd the thread's event loop must watch (and drain): park()
    // signals it so that an idle thread wakes up and reaches a park point.
    int wake_fd() const noexcept { return wake_.fd(); }
    // Between handlers, holding no lock: parks here when a checkpoint is
    // pending. One acquire load otherwise.
    void park_point() noexcept;
    // Times the mask was opened (= checkpoints that parked this thread at a
    // park point). For tests and benchmarks.
    uint64_t mask_openings() const noexcept { return openings_.load(std::memory_order_relaxed); }

    // --- The checkpointing thread ------------------------------------------------------
    // Sends the signal, wakes the thread and waits until it has parked.
    // Returns false when the thread has already exited (nothing to park).
    // Throws ember::Error when it does not park within `timeout`.
    bool park(std::chrono::milliseconds timeout = std::chrono::seconds(5));
    // Releases a parked thread; it continues exactly where it parked.
    void unpark() noexcept;
    bool parked() const noexcept { return ack_.load(std::memory_order_acquire) == kParked; }

  private:
    static void handler(int, siginfo_t* info, void*);
    static sigset_t block_on_caller() noexcept;
    void set_thread(pthread_t t) noexcept;
    // Acknowledge, then wait for unpark(); in the handler, on the I/O
    // thread. Async-signal-safe.
    void park_here() noexcept;
    static constexpr uint32_t kRunning = 0, kParked = 1, kExited = 2;

    const MaskingMode mode_;
    EventFd wake_;
    pthread_t thread_{};
    std::atomic<bool> has_thread_{false};
    // A request is consumed by exactly one handler run; a stray signal
    // (another sender, a request withdrawn after a timeout) finds 0 and returns.
    std::atomic<uint32_t> request_{0};
    std::atomic<uint32_t> ack_{kRunning}; // futex word: kRunning, kParked, kExited
    std::atomic<uint32_t> resume_{0};     // futex word: bumped by unpark()
    std::atomic<uint64_t> openings_{0};
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);

} // namespace ember
