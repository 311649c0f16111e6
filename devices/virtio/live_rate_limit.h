// A rate limit as its device keeps it (a disk's, or one direction of a
// network device's): the buckets, used by the device's I/O thread (one at a
// time: a successor starts after the join), and a new limit that another
// thread may hand in while the VM runs (PATCH /drives, PATCH
// /network-interfaces, libember). The I/O thread takes a new limit before
// its next request, or at once through update_fd() when it holds a request
// back under the old one.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>

#include "devices/virtio/rate_limiter.h"
#include "vmm/unique_fd.h"

namespace ember {

class LiveRateLimit final {
  public:
    using Clock = RateLimiter::Clock;
    explicit LiveRateLimit(const RateLimit& limit);

    // Any thread. The new limit's buckets start full (as a new disk's do).
    void replace(const RateLimit& limit);
    RateLimit current() const;
    // Readable after replace(); the I/O thread drains it.
    int update_fd() const noexcept { return update_.fd(); }

    // What the buckets hold at `now`, for a checkpoint, with a request the
    // I/O thread holds back (`ops`, `bytes`) charged: only while that thread
    // is parked (quiesce.h) or not running. Empty when they are full as a
    // new limit's are (no limit, or one the I/O thread has not taken yet).
    std::optional<RateLimitFill> fill(Clock::time_point now, uint64_t ops = 0,
                                      uint64_t bytes = 0) const;
    // A restore, before the I/O thread first runs: the buckets hold `fill`
    // (a bucket without one starts full). Throws Error when `fill` does not
    // fit the limit.
    void restore_fill(const RateLimitFill& fill);

    // The I/O thread, or with it stopped: takes a request that will go
    // without asking (one held back when its thread was abandoned).
    void charge(uint64_t ops, uint64_t bytes);

    // The I/O thread: the buckets to ask, after taking a replacement if one
    // came; null when the disk has no limit. One atomic load when nothing
    // changed (no clock read: it is asked for every request).
    RateLimiter* limiter();

  private:
    mutable std::mutex mu_;
    RateLimit limit_;                     // guarded by mu_
    std::atomic<uint64_t> generation_{0}; // bumped by replace(), after limit_
    // The I/O thread's side.
    uint64_t applied_{0};
    std::optional<RateLimiter> limiter_;
    EventFd update_;
};

} // namespace ember
