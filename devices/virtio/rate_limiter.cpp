#include "devices/virtio/rate_limiter.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

namespace ember {

std::optional<uint64_t> parse_rate_count(std::string_view value, bool bytes) {
    uint64_t n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    std::string_view rest(end, static_cast<size_t>(value.data() + value.size() - end));
    unsigned shift = 0;
    if (bytes && rest.size() == 1) {
        const auto unit = std::string_view("KMGT").find(rest[0]);
        if (unit != std::string_view::npos) {
            shift = 10 * static_cast<unsigned>(unit + 1);
            rest = {};
        }
    }
    const bool fits = ec == std::errc{} && n <= (kMaxBucketTokens >> shift);
    if (value.empty() || end == value.data() || !rest.empty() || !fits || n == 0)
        return std::nullopt;
    return n << shift;
}

std::string rate_count_expected(bool bytes, std::string_view ops_unit) {
    return bytes ? fmt::format("a number of bytes from 1 to {} (K, M, G and T multiply by powers "
                               "of 1024)",
                               kMaxBucketTokens)
                 : fmt::format("a number of {} from 1 to {}", ops_unit, kMaxBucketTokens);
}

TokenBucketSpec per_second_bucket(uint64_t rate, std::optional<uint64_t> burst) {
    return TokenBucketSpec{rate, burst.value_or(0), 1000};
}

namespace {
__extension__ using u128 = unsigned __int128; // -Wpedantic: a GCC and Clang extension

u128 refill_ns(const TokenBucketSpec& s) {
    return u128{s.refill_time_ms} * 1'000'000;
}

// ceil(a / b) for b > 0.
u128 div_up(u128 a, u128 b) {
    return (a + b - 1) / b;
}
} // namespace

std::optional<std::string> bucket_problem(const TokenBucketSpec& spec) {
    if (spec.size == 0) return "its size must be more than 0";
    if (spec.refill_time_ms == 0) return "its refill time must be more than 0 ms";
    if (spec.size > kMaxBucketTokens || spec.one_time_burst > kMaxBucketTokens)
        return fmt::format("its size and burst must be at most {}", kMaxBucketTokens);
    if (spec.refill_time_ms > kMaxRefillTimeMs)
        return fmt::format("its refill time must be at most {} ms", kMaxRefillTimeMs);
    return std::nullopt;
}

std::optional<std::string> fill_problem(const TokenBucketSpec& spec, const TokenBucketFill& fill) {
    if (auto problem = bucket_problem(spec)) return problem;
    if (fill.budget > static_cast<int64_t>(spec.size))
        return fmt::format("its budget {} is more than its size {}", fill.budget, spec.size);
    if (fill.budget < -kMaxBucketDebt)
        return fmt::format("its budget {} is deeper in debt than a bucket can be (-{})",
                           fill.budget, kMaxBucketDebt);
    if (fill.burst > spec.one_time_burst)
        return fmt::format("its burst left {} is more than its one-time burst {}", fill.burst,
                           spec.one_time_burst);
    if (fill.carry_ns >= refill_ns(spec))
        return fmt::format("its partial token ({} token-ns) is not less than one token ({})",
                           fill.carry_ns, static_cast<uint64_t>(refill_ns(spec)));
    return std::nullopt;
}

std::optional<std::string> fill_problem(const RateLimit& limit, const RateLimitFill& fill) {
    const auto one = [](const std::optional<TokenBucketSpec>& spec,
                        const std::optional<TokenBucketFill>& f,
                        const char* name) -> std::optional<std::string> {
        if (!f) return std::nullopt;
        if (!spec) return fmt::format("a fill for a {} bucket the limit does not have", name);
        if (auto problem = fill_problem(*spec, *f))
            return fmt::format("{} bucket: {}", name, *problem);
        return std::nullopt;
    };
    if (auto problem = one(limit.bandwidth, fill.bandwidth, "bandwidth")) return problem;
    return one(limit.ops, fill.ops, "ops");
}

std::string describe(const TokenBucketSpec& spec, std::string_view unit) {
    std::string s = fmt::format("{} {} per {} ms", spec.size, unit, spec.refill_time_ms);
    if (spec.one_time_burst > 0) s += fmt::format(" (one-time burst {})", spec.one_time_burst);
    return s;
}

std::string describe(const RateLimit& limit, std::string_view ops_unit) {
    if (!limit.enabled()) return "no limit";
    std::string s;
    if (limit.bandwidth) s = describe(*limit.bandwidth, "bytes");
    if (limit.ops) s += (s.empty() ? "" : ", ") + describe(*limit.ops, ops_unit);
    return s;
}

std::string describe(const RateLimit& limit, const RateLimitFill& fill, std::string_view ops_unit) {
    const auto one = [](const std::optional<TokenBucketSpec>& spec,
                        const std::optional<TokenBucketFill>& f, std::string_view unit) {
        if (!spec) return std::string{};
        // No fill: full, as a new bucket is.
        const auto at =
            f.value_or(TokenBucketFill{static_cast<int64_t>(spec->size), spec->one_time_burst, 0});
        std::string s = fmt::format("{} of {} {} left", at.budget, spec->size, unit);
        if (spec->one_time_burst > 0) s += fmt::format(" (burst {} left)", at.burst);
        return s;
    };
    const std::string bw = one(limit.bandwidth, fill.bandwidth, "bytes");
    const std::string ops = one(limit.ops, fill.ops, ops_unit);
    return bw.empty() || ops.empty() ? bw + ops : bw + ", " + ops;
}

TokenBucket::TokenBucket(const TokenBucketSpec& spec, Clock::time_point now)
    : spec_(spec), burst_(spec.one_time_burst), budget_(static_cast<int64_t>(spec.size)),
      last_(now) {}

TokenBucket::TokenBucket(const TokenBucketSpec& spec, const TokenBucketFill& fill,
                         Clock::time_point now)
    : spec_(spec), burst_(fill.burst), budget_(fill.budget), last_(now), carry_(fill.carry_ns) {}

void TokenBucket::charge(uint64_t n, Clock::time_point now) {
    refill(now);
    take(n);
    budget_ = std::max(budget_, -kMaxBucketDebt);
}

TokenBucketFill TokenBucket::fill(Clock::time_point now, uint64_t owed) const {
    TokenBucket at = *this;
    at.charge(owed, now);
    return {at.budget_, at.burst_, at.carry_};
}

void TokenBucket::refill(Clock::time_point now) {
    const auto size = static_cast<int64_t>(spec_.size);
    if (now <= last_) return;
    if (budget_ >= size) {
        last_ = now; // a full bucket does not save up time
        carry_ = 0;
        return;
    }
    // In units of token-nanoseconds, so that no fraction of a token is lost
    // between calls however often they come.
    const u128 credit = static_cast<u128>((now - last_).count()) * spec_.size + carry_;
    const u128 add = credit / refill_ns(spec_);
    last_ = now;
    if (add >= static_cast<u128>(size - budget_)) {
        budget_ = size;
        carry_ = 0;
        return;
    }
    budget_ += static_cast<int64_t>(add);
    carry_ = static_cast<uint64_t>(credit % refill_ns(spec_));
}

int64_t TokenBucket::needed(uint64_t n) const {
    const uint64_t after_burst = n > burst_ ? n - burst_ : 0;
    return static_cast<int64_t>(std::min(after_burst, spec_.size));
}

bool TokenBucket::can_take(uint64_t n, Clock::time_point now) {
    refill(now);
    return budget_ >= needed(n);
}

void TokenBucket::take(uint64_t n) {
    const uint64_t from_burst = std::min(n, burst_);
    burst_ -= from_burst;
    // A request larger than the bucket leaves it in debt (can_take let it
    // go with a full bucket); guest values bound n far below 2^63.
    budget_ -= static_cast<int64_t>(std::min<uint64_t>(n - from_burst, uint64_t{1} << 62));
}

std::chrono::nanoseconds TokenBucket::wait_for(uint64_t n, Clock::time_point now) const {
    const int64_t deficit = needed(n) - budget_;
    if (deficit <= 0) return std::chrono::nanoseconds{0};
    // From last_, with the part of a token carried since then.
    const u128 missing = static_cast<u128>(deficit) * refill_ns(spec_) - carry_;
    const u128 ns = std::min<u128>(div_up(missing, spec_.size), INT64_MAX / 2);
    const auto ready = last_ + std::chrono::nanoseconds(static_cast<int64_t>(ns));
    return std::max<std::chrono::nanoseconds>(ready - now, std::chrono::nanoseconds{0});
}

RateLimiter::RateLimiter(const RateLimit& limit, Clock::time_point now)
    : RateLimiter(limit, RateLimitFill{}, now) {}

RateLimiter::RateLimiter(const RateLimit& limit, const RateLimitFill& fill, Clock::time_point now)
    : limit_(limit) {
    const auto make = [&](std::optional<TokenBucket>& bucket,
                          const std::optional<TokenBucketSpec>& spec,
                          const std::optional<TokenBucketFill>& f) {
        if (!spec) return;
        if (f)
            bucket.emplace(*spec, *f, now);
        else
            bucket.emplace(*spec, now);
    };
    make(bandwidth_, limit.bandwidth, fill.bandwidth);
    make(ops_, limit.ops, fill.ops);
}

void RateLimiter::charge(uint64_t ops, uint64_t bytes, Clock::time_point now) {
    if (bandwidth_) bandwidth_->charge(bytes, now);
    if (ops_) ops_->charge(ops, now);
}

RateLimitFill RateLimiter::fill(Clock::time_point now, uint64_t ops, uint64_t bytes) const {
    RateLimitFill f;
    if (bandwidth_) f.bandwidth = bandwidth_->fill(now, bytes);
    if (ops_) f.ops = ops_->fill(now, ops);
    return f;
}

std::chrono::nanoseconds RateLimiter::take(uint64_t ops, uint64_t bytes, Clock::time_point now) {
    // Both asked (and refilled) before either is taken from: a request one
    // bucket refuses takes nothing from the other.
    const bool bw_ok = !bandwidth_ || bytes == 0 || bandwidth_->can_take(bytes, now);
    const bool ops_ok = !ops_ || ops == 0 || ops_->can_take(ops, now);
    if (bw_ok && ops_ok) {
        if (bandwidth_ && bytes > 0) bandwidth_->take(bytes);
        if (ops_ && ops > 0) ops_->take(ops);
        return std::chrono::nanoseconds{0};
    }
    std::chrono::nanoseconds wait{1};
    if (!bw_ok) wait = std::max(wait, bandwidth_->wait_for(bytes, now));
    if (!ops_ok) wait = std::max(wait, ops_->wait_for(ops, now));
    return wait;
}

} // namespace ember
