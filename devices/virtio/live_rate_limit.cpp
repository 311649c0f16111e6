#include "devices/virtio/live_rate_limit.h"

#include <fmt/format.h>

#include "vmm/errors.h"

namespace ember {

LiveRateLimit::LiveRateLimit(const RateLimit& limit) : limit_(limit) {
    if (limit.enabled()) limiter_.emplace(limit, Clock::now());
}

void LiveRateLimit::replace(const RateLimit& limit) {
    {
        std::lock_guard lock(mu_);
        limit_ = limit;
        // Release, under the lock: pairs with the acquire in limiter(), which
        // then reads limit_ under the same lock anyway.
        generation_.fetch_add(1, std::memory_order_release);
    }
    update_.signal();
}

RateLimit LiveRateLimit::current() const {
    std::lock_guard lock(mu_);
    return limit_;
}

std::optional<RateLimitFill> LiveRateLimit::fill(Clock::time_point now, uint64_t ops,
                                                 uint64_t bytes) const {
    // Acquire: pairs with the release in replace(). The I/O thread's side
    // (applied_, limiter_) is stable: it is parked or gone.
    if (generation_.load(std::memory_order_acquire) != applied_ || !limiter_) return std::nullopt;
    return limiter_->fill(now, ops, bytes);
}

void LiveRateLimit::restore_fill(const RateLimitFill& fill) {
    std::lock_guard lock(mu_);
    if (auto problem = fill_problem(limit_, fill))
        throw Error(fmt::format("rate limit ({}): {}", describe(limit_), *problem));
    applied_ = generation_.load(std::memory_order_relaxed);
    if (limit_.enabled())
        limiter_.emplace(limit_, fill, Clock::now());
    else
        limiter_.reset();
}

void LiveRateLimit::charge(uint64_t ops, uint64_t bytes) {
    if (RateLimiter* l = limiter()) l->charge(ops, bytes, Clock::now());
}

RateLimiter* LiveRateLimit::limiter() {
    // Acquire: pairs with the release in replace().
    if (generation_.load(std::memory_order_acquire) != applied_) [[unlikely]] {
        std::lock_guard lock(mu_);
        applied_ = generation_.load(std::memory_order_relaxed);
        if (limit_.enabled())
            limiter_.emplace(limit_, Clock::now());
        else
            limiter_.reset();
    }
    return limiter_ ? &*limiter_ : nullptr;
}

} // namespace ember
