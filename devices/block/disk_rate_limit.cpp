#include "devices/block/disk_rate_limit.h"

namespace ember {

DiskRateLimit::DiskRateLimit(const RateLimit& limit) : limit_(limit) {
    if (limit.enabled()) limiter_.emplace(limit, Clock::now());
}

void DiskRateLimit::replace(const RateLimit& limit) {
    {
        std::lock_guard lock(mu_);
        limit_ = limit;
        // Release, under the lock: pairs with the acquire in limiter(), which
        // then reads limit_ under the same lock anyway.
        generation_.fetch_add(1, std::memory_order_release);
    }
    update_.signal();
}

RateLimit DiskRateLimit::current() const {
    std::lock_guard lock(mu_);
    return limit_;
}

RateLimiter* DiskRateLimit::limiter() {
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
