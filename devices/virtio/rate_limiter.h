// A rate limiter: two token buckets, one of bytes and one of requests (a
// disk's) or frames (a network device's), with the meaning of Firecracker's
// "rate_limiter" objects (`size` tokens when
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
#include <string_view>

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

// A command line's rate or burst (bw=, iops=, rx-bw=, ...): a whole number
// from 1 to kMaxBucketTokens; with `bytes`, it may end in K, M, G or T
// (powers of 1024). Empty when `value` is not one; the caller's message
// names the option.
std::optional<uint64_t> parse_rate_count(std::string_view value, bool bytes);
// What parse_rate_count takes, for its callers' refusals: "a number of bytes
// from 1 to N (K, M, ...)" or "a number of `ops_unit` from 1 to N".
std::string rate_count_expected(bool bytes, std::string_view ops_unit);
// A command line's rate (per second) and its one-time burst as a bucket.
TokenBucketSpec per_second_bucket(uint64_t rate, std::optional<uint64_t> burst);

// Empty when the bucket is usable; otherwise what is wrong with it, for a
// message that names where it came from.
std::optional<std::string> bucket_problem(const TokenBucketSpec& spec);

// What a bucket holds at an instant: what a checkpoint saves, so that a
// restored disk goes on where it was instead of with a full bucket (which
// would let a guest pass its limit by being checkpointed). Firecracker saves
// its buckets too.
struct TokenBucketFill {
    int64_t budget{0};    // tokens; negative: in debt after an oversize request
    uint64_t burst{0};    // one-time burst not yet spent
    uint64_t carry_ns{0}; // the part of the next token refilled, in token-nanoseconds
    bool operator==(const TokenBucketFill&) const = default;
};

struct RateLimitFill {
    std::optional<TokenBucketFill> bandwidth;
    std::optional<TokenBucketFill> ops;
    bool operator==(const RateLimitFill&) const = default;
};

// The deepest debt a bucket can be in (TokenBucket::take bounds it).
inline constexpr int64_t kMaxBucketDebt = int64_t{1} << 62;

// Empty when `fill` can be a fill of a bucket of `spec` (a usable one);
// otherwise what is wrong with it. A checkpoint's file is input like any
// other.
std::optional<std::string> fill_problem(const TokenBucketSpec& spec, const TokenBucketFill& fill);
// Both buckets: a fill for a bucket the limit does not have is a problem;
// a bucket without a fill starts full.
std::optional<std::string> fill_problem(const RateLimit& limit, const RateLimitFill& fill);

// "1048576 bytes per 1000 ms (one-time burst 4096)", for logs.
std::string describe(const TokenBucketSpec& spec, std::string_view unit);
// Both buckets, or "no limit". `ops_unit` names what the ops bucket counts
// (a network device's counts frames).
std::string describe(const RateLimit& limit, std::string_view ops_unit = "requests");
// "524288 of 1048576 bytes left, 3 of 100 requests left", for snapshot-info.
std::string describe(const RateLimit& limit, const RateLimitFill& fill,
                     std::string_view ops_unit = "requests");

class TokenBucket final {
  public:
    using Clock = std::chrono::steady_clock;
    // Full, with the whole one-time burst. `spec` must be usable
    // (bucket_problem() empty).
    TokenBucket(const TokenBucketSpec& spec, Clock::time_point now);
    // Holding `fill` at `now` (a restore). `fill` must pass fill_problem().
    TokenBucket(const TokenBucketSpec& spec, const TokenBucketFill& fill, Clock::time_point now);

    // What the bucket holds at `now` (no earlier than the last call),
    // refilled up to then and `owed` tokens taken (it may go into debt); the
    // bucket itself is not changed.
    TokenBucketFill fill(Clock::time_point now, uint64_t owed = 0) const;

    // Whether `n` tokens can be taken now (after refilling for the time
    // since the last call). A request larger than the bucket can never find
    // that many: it may go once the bucket is full, and leaves it in debt,
    // so the average rate still holds.
    bool can_take(uint64_t n, Clock::time_point now);
    // After can_take(n) said yes.
    void take(uint64_t n);
    // Takes `n` whether or not the bucket has them (it may go into debt):
    // for a request that went without asking.
    void charge(uint64_t n, Clock::time_point now);
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
    // Its buckets holding `fill` (a bucket without one starts full). `fill`
    // must pass fill_problem(limit, fill).
    RateLimiter(const RateLimit& limit, const RateLimitFill& fill, Clock::time_point now);

    // Takes a request that went without asking from both buckets (they may
    // go into debt).
    void charge(uint64_t ops, uint64_t bytes, Clock::time_point now);

    // What both buckets hold at `now`, for a checkpoint, with a request of
    // `ops` and `bytes` that was refused charged (a restore resubmits it
    // without asking).
    RateLimitFill fill(Clock::time_point now, uint64_t ops = 0, uint64_t bytes = 0) const;

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
