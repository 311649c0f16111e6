// A disk's rate limiter: two token buckets, one of bytes and one of requests,
// with the meaning of Firecracker's drive "rate_limiter" (`size` tokens when
// full, refilled from empty to full in `refill_time` ms, and a
// `one_time_burst` of extra tokens at the start that is never refilled), so
// the same numbers limit a disk the same way in both.
//
// Only the disk's I/O thread uses a RateLimiter: it has no lock. Time comes
// in as an argument, so tests drive it with a clock of their own.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace ember {

struct TokenBucketSpec {
    uint64_t size{0};           // tokens in a full bucket (> 0)
    uint64_t one_time_burst{0}; // extra tokens at the start, spent first, never refilled
    uint64_t refill_time_ms{0}; // from empty to full (> 0)
    bool operator==(const TokenBucketSpec&) const = default;
};

// Bounds that keep the arithmetic exact (128-bit products, 64-bit budgets).
inline constexpr uint64_t kMaxBucketTokens = uint64_t{1} << 50;    // 1 PiB of bytes
inline constexpr uint64_t kMaxRefillTimeMs = uint64_t{1000} << 32; // about 136 years

struct RateLimit {
    std::optional<TokenBucketSpec> bandwidth; // bytes moved by reads and writes
    std::optional<TokenBucketSpec> ops;       // requests that reach the host
    bool enabled() const noexcept { return bandwidth || ops; }
    bool operator==(const RateLimit&) const = default;
};

// Empty when the bucket is usable; otherwise what is wrong with it, for a
// message that names where it came from.
std::optional<std::string> bucket_problem(const TokenBucketSpec& spec);

// "1048576 bytes per 1000 ms (one-time burst 4096)", for logs.
std::string describe(const TokenBucketSpec& spec, std::string_view unit);
// Both buckets, or "no limit".
std::string describe(const RateLimit& limit);

class TokenBucket final {
  public:
    using Clock = std::chrono::steady_clock;
    // Full, with the whole one-time burst. `spec` must be usable
    // (bucket_problem() empty).
    TokenBucket(const TokenBucketSpec& spec, Clock::time_point now);

    // Whether `n` tokens can be taken now (after refilling for the time
    // since the last call). A request larger than the bucket can never find
    // that many: it may go once the bucket is full, and leaves it in debt,
    // so the average rate still holds.
    bool can_take(uint64_t n, Clock::time_point now);
    // After can_take(n) said yes.
    void take(uint64_t n);
    // How long after `now` can_take(n) would say yes (0: it would now);
    // `now` no earlier than the last can_take().
    std::chrono::nanoseconds wait_for(uint64_t n, Clock::time_point now) const;

    int64_t budget() const noexcept { return budget_; }
    uint64_t burst() const noexcept { return burst_; }

  private:
    void refill(Clock::time_point now);
    // The budget can_take(n) needs: what the burst does not cover, at most
    // a full bucket.
    int64_t needed(uint64_t n) const;

    TokenBucketSpec spec_;
    uint64_t burst_;
    int64_t budget_; // negative: in debt after a request larger than the bucket
    Clock::time_point last_;
    // The part of the next token refilled by last_, in token-nanoseconds
    // (< refill time in ns).
    uint64_t carry_{0};
};

class RateLimiter final {
  public:
    using Clock = TokenBucket::Clock;
    RateLimiter(const RateLimit& limit, Clock::time_point now);

    // Takes one request of `bytes` from both buckets when both have it and
    // returns zero; otherwise takes nothing and returns how long to wait
    // before asking again. `ops` is 0 or 1: requests that reach no host
    // operation are free.
    std::chrono::nanoseconds take(uint64_t ops, uint64_t bytes, Clock::time_point now);

    const RateLimit& limit() const noexcept { return limit_; }

  private:
    RateLimit limit_;
    std::optional<TokenBucket> bandwidth_;
    std::optional<TokenBucket> ops_;
};

} // namespace ember
