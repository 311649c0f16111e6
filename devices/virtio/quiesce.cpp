#include "devices/virtio/quiesce.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <mutex>

#include <fmt/format.h>

#include "vmm/errors.h"
#include "vmm/synchronous_signals.h"

namespace ember {

namespace {

uint32_t* word(std::atomic<uint32_t>& a) noexcept {
    return reinterpret_cast<uint32_t*>(&a);
}

// Raw futex calls: async-signal-safe (a plain system call), unlike
// std::atomic::wait, which may take a lock in libstdc++.
void futex_wait(std::atomic<uint32_t>& a, uint32_t expected, const timespec* timeout) noexcept {
    ::syscall(SYS_futex, word(a), FUTEX_WAIT_PRIVATE, expected, timeout, nullptr, 0);
}
void futex_wake(std::atomic<uint32_t>& a) noexcept {
    ::syscall(SYS_futex, word(a), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

sigset_t quiesce_set() noexcept {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, quiesce_signal());
    return s;
}

std::once_flag handler_once;

} // namespace

int quiesce_signal() noexcept {
    return SIGRTMIN + 1;
}

QuiescePoint::QuiescePoint(MaskingMode mode) : mode_(mode) {
    std::call_once(handler_once, [] {
        struct sigaction sa{};
        sa.sa_sigaction = &QuiescePoint::handler;
        sigfillset(&sa.sa_mask); // nothing else interrupts a parked thread
        // SA_RESTART: with masking off the signal can land in any system
        // call; a read/write resumes by itself, epoll_wait and
        // io_uring_enter return EINTR, which Asio and the engines retry.
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        if (::sigaction(quiesce_signal(), &sa, nullptr) != 0)
            throw_errno("sigaction(quiesce signal)");
    });
}

// Only async-signal-safe operations: lock-free atomics, futex, errno kept.
// Runs only at a park point (sigmask) or anywhere (off: negative control).
void QuiescePoint::handler(int, siginfo_t* info, void*) {
    const int saved_errno = errno;
    auto* self = info != nullptr && info->si_code == SI_QUEUE
                     ? static_cast<QuiescePoint*>(info->si_value.sival_ptr)
                     : nullptr;
    // acq_rel: pairs with the release store of request_ in park().
    if (self != nullptr && self->request_.exchange(0, std::memory_order_acq_rel) == 1)
        self->park_here();
    errno = saved_errno;
}

void QuiescePoint::park_here() noexcept {
    const uint32_t generation = resume_.load(std::memory_order_acquire);
    // Release: everything this thread wrote before it parked (guest memory,
    // the in-flight region) is visible to the parker, whose acquire load of
    // ack_ pairs with this store.
    ack_.store(kParked, std::memory_order_release);
    futex_wake(ack_);
    // Acquire: pairs with the release increment in unpark(); what the
    // checkpoint wrote (nothing, normally) is visible when we continue.
    while (resume_.load(std::memory_order_acquire) == generation)
        futex_wait(resume_, generation, nullptr);
}

sigset_t QuiescePoint::block_on_caller() noexcept {
    const sigset_t s = quiesce_set();
    sigset_t old;
    ::pthread_sigmask(SIG_BLOCK, &s, &old);
    return old;
}

void QuiescePoint::attach_current_thread() noexcept {
    sigset_t set;
    sigfillset(&set);
    if (mode_ == MaskingMode::off) sigdelset(&set, quiesce_signal());
    remove_synchronous_signals(set);
    ::pthread_sigmask(SIG_SETMASK, &set, nullptr);
}

void QuiescePoint::detach_current_thread() noexcept {
    const sigset_t s = quiesce_set();
    ::pthread_sigmask(SIG_BLOCK, &s, nullptr);
    // A signal still pending dies with the thread; the parker sees kExited.
    ack_.store(kExited, std::memory_order_release);
    futex_wake(ack_);
}

void QuiescePoint::park_point() noexcept {
    // Acquire: pairs with the release store in park(). Seeing the request
    // before its signal is queued only opens the mask early, for nothing;
    // park() signals wake_ after queueing, so the thread comes back here.
    if (mode_ != MaskingMode::sigmask || request_.load(std::memory_order_acquire) == 0) return;
    openings_.fetch_add(1, std::memory_order_relaxed);
    static const sigset_t set = quiesce_set();
    // A pending quiesce signal is delivered before SIG_UNBLOCK returns
    // (POSIX sigprocmask): the handler parks the thread inside this call.
    ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void QuiescePoint::set_thread(pthread_t t) noexcept {
    thread_ = t;
    has_thread_.store(true, std::memory_order_release);
}

bool QuiescePoint::park(std::chrono::milliseconds timeout) {
    if (!has_thread_.load(std::memory_order_acquire)) return false;
    uint32_t state = ack_.load(std::memory_order_acquire);
    if (state == kExited) return false;
    if (state == kParked) return true;
    // Release: pairs with the handler's exchange.
    request_.store(1, std::memory_order_release);
    sigval value{};
    value.sival_ptr = this;
    if (const int err = ::pthread_sigqueue(thread_, quiesce_signal(), value); err != 0) {
        request_.store(0, std::memory_order_release);
        if (ack_.load(std::memory_order_acquire) == kExited) return false;
        throw SystemError("pthread_sigqueue(quiesce signal)", err);
    }
    // After the signal is queued: the thread wakes, reaches a park point and
    // finds the signal pending there.
    wake_.signal();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        // Acquire: pairs with the handler's (or detach's) release store.
        state = ack_.load(std::memory_order_acquire);
        if (state == kParked) return true;
        if (state == kExited) {
            request_.store(0, std::memory_order_release);
            return false;
        }
        const auto left = deadline - std::chrono::steady_clock::now();
        if (left <= std::chrono::nanoseconds::zero()) {
            // Withdraw the request; if the handler took it meanwhile, it is
            // about to acknowledge: wait for that instead of failing.
            if (request_.exchange(0, std::memory_order_acq_rel) == 0) continue;
            throw Error(fmt::format("the I/O thread did not park within {} ms after the quiesce "
                                    "signal",
                                    timeout.count()));
        }
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
        const timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
        futex_wait(ack_, kRunning, &ts);
    }
}

void QuiescePoint::unpark() noexcept {
    uint32_t expected = kParked;
    // Reset the acknowledgment before releasing, so a park() right after this
    // cannot mistake the old acknowledgment for a new one (the handler does
    // not touch ack_ after it parked).
    if (!ack_.compare_exchange_strong(expected, kRunning, std::memory_order_acq_rel)) return;
    // Release: pairs with the handler's acquire load of resume_.
    resume_.fetch_add(1, std::memory_order_release);
    futex_wake(resume_);
}

} // namespace ember
