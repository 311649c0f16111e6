// The disk rate limiter's token buckets, on a clock the test moves: rates,
// the one-time burst, requests larger than the bucket, and both buckets
// together (a request one refuses takes nothing from the other).
#include <doctest/doctest.h>

#include "devices/virtio/live_rate_limit.h"
#include "devices/virtio/rate_limiter.h"

using namespace ember;
using namespace std::chrono_literals;
using Clock = TokenBucket::Clock;

namespace {
const Clock::time_point t0 = Clock::time_point{} + 1000s;

// How many of `n` requests of `bytes` go through at each of `steps` instants
// `step` apart, starting at t0, retrying the refused ones in order.
uint64_t admitted_over(RateLimiter& l, uint64_t bytes, Clock::duration step, int steps) {
    uint64_t n = 0;
    for (int i = 0; i < steps; ++i)
        while (l.take(1, bytes, t0 + i * step).count() == 0)
            ++n;
    return n;
}
} // namespace

TEST_CASE("token bucket: full at the start, refilled at size per refill time") {
    TokenBucket b({10, 0, 1000}, t0);
    CHECK(b.can_take(10, t0));
    b.take(10);
    CHECK_FALSE(b.can_take(1, t0));
    // One token every 100 ms, no sooner.
    CHECK(b.wait_for(1, t0) == 100ms);
    CHECK_FALSE(b.can_take(1, t0 + 99ms));
    CHECK(b.wait_for(1, t0 + 99ms) == 1ms);
    CHECK(b.can_take(1, t0 + 100ms));
    b.take(1);
    // The 50 ms past the last whole token count towards the next one.
    CHECK_FALSE(b.can_take(1, t0 + 150ms));
    CHECK(b.can_take(1, t0 + 200ms));
    // Never more than full, however long it rests.
    CHECK(b.can_take(10, t0 + 1000s));
    CHECK(b.budget() == 10);
}

TEST_CASE("token bucket: the one-time burst is spent first and never comes back") {
    TokenBucket b({10, 25, 1000}, t0);
    CHECK(b.can_take(35, t0));
    b.take(30); // 25 from the burst, 5 from the bucket
    CHECK(b.burst() == 0);
    CHECK(b.budget() == 5);
    b.take(5);
    CHECK_FALSE(b.can_take(1, t0));
    CHECK(b.can_take(10, t0 + 10s));
    CHECK(b.budget() == 10);
    CHECK(b.burst() == 0); // the burst is not refilled
}

TEST_CASE("token bucket: a request larger than the bucket waits for a full one and leaves debt") {
    TokenBucket b({4096, 0, 1000}, t0);
    // 16 KiB through a 4 KiB bucket: allowed when full, so it cannot starve.
    CHECK(b.can_take(16384, t0));
    b.take(16384);
    CHECK(b.budget() == 4096 - 16384);
    // The debt is paid at the bucket's rate before anything else goes:
    // 12 KiB of debt plus a full bucket for the next large one = 4 s.
    CHECK_FALSE(b.can_take(16384, t0 + 3s));
    CHECK(b.wait_for(16384, t0 + 3s) == 1s);
    CHECK_FALSE(b.can_take(16384, t0 + 3999ms));
    CHECK(b.can_take(16384, t0 + 4s));
    // A small request needs only its own size back.
    TokenBucket c({4096, 0, 1000}, t0);
    c.take(16384);
    CHECK_FALSE(c.can_take(512, t0 + 3s));
    CHECK(c.can_take(512, t0 + 3125ms));
}

TEST_CASE("rate limiter: the average rate holds over time, for ops and for bytes") {
    // 100 requests per second, after the first full bucket of 100.
    RateLimiter ops({std::nullopt, TokenBucketSpec{100, 0, 1000}}, t0);
    CHECK(admitted_over(ops, 4096, 1ms, 5000) == 100 + 499);
    // 1 MiB per second in 4 KiB requests: 256 at once, then 256 per second.
    RateLimiter bw({TokenBucketSpec{1 << 20, 0, 1000}, std::nullopt}, t0);
    // By the last step, 2.99 s: 2.99 MiB refilled, 765 more requests.
    CHECK(admitted_over(bw, 4096, 10ms, 300) == 256 + 765);
}

TEST_CASE("rate limiter: a request one bucket refuses takes nothing from the other") {
    RateLimiter l({TokenBucketSpec{8192, 0, 1000}, TokenBucketSpec{3, 0, 1000}}, t0);
    CHECK(l.take(1, 4096, t0).count() == 0);
    CHECK(l.take(1, 4096, t0).count() == 0);
    // Bytes are gone, one op is left: refused, and the op is not taken.
    const auto wait = l.take(1, 4096, t0);
    CHECK(wait == 500ms); // 4096 bytes at 8192 per second
    // Requests that reach no host operation (GET_ID, malformed) are free.
    CHECK(l.take(0, 0, t0).count() == 0);
    // Flushes cost an op and no bytes: the op refused above is still there.
    CHECK(l.take(1, 0, t0).count() == 0);
    CHECK(l.take(1, 0, t0).count() > 0);
    // The longer wait of the two is the one to sleep.
    CHECK(l.take(1, 4096, t0) == std::max<std::chrono::nanoseconds>(500ms, 333333334ns));
}

TEST_CASE("rate limiter: buckets that cannot work are named") {
    CHECK(bucket_problem({0, 0, 1000}) == "its size must be more than 0");
    CHECK(bucket_problem({10, 0, 0}) == "its refill time must be more than 0 ms");
    CHECK(bucket_problem({kMaxBucketTokens + 1, 0, 1000}).has_value());
    CHECK(bucket_problem({10, kMaxBucketTokens + 1, 1000}).has_value());
    CHECK(bucket_problem({10, 0, kMaxRefillTimeMs + 1}).has_value());
    CHECK_FALSE(bucket_problem({kMaxBucketTokens, kMaxBucketTokens, kMaxRefillTimeMs}).has_value());
    // The largest bucket and refill time do not overflow the arithmetic.
    TokenBucket big({kMaxBucketTokens, 0, kMaxRefillTimeMs}, t0);
    big.take(kMaxBucketTokens);
    CHECK_FALSE(big.can_take(kMaxBucketTokens, t0 + 1000s));
    CHECK(big.wait_for(kMaxBucketTokens, t0 + 1000s).count() > 0);
    CHECK(describe(TokenBucketSpec{1048576, 4096, 1000}, "bytes") ==
          "1048576 bytes per 1000 ms (one-time burst 4096)");
}

TEST_CASE("token bucket: a saved fill goes on, at another instant, as the bucket would have") {
    TokenBucket b({10, 0, 1000}, t0);
    b.take(10);
    // 150 ms later: one token back and half of the next one.
    const TokenBucketFill f = b.fill(t0 + 150ms);
    CHECK(f == TokenBucketFill{1, 0, 500'000'000});
    CHECK(b.budget() == 0); // fill() leaves the bucket as it was
    // Restored much later on another clock: the time between is not
    // refilled, the half token is kept.
    const auto t1 = t0 + 10000s;
    TokenBucket r({10, 0, 1000}, f, t1);
    CHECK(b.can_take(2, t0 + 200ms));
    CHECK_FALSE(r.can_take(2, t1 + 49ms));
    CHECK(r.wait_for(2, t1 + 49ms) == 1ms);
    CHECK(r.can_take(2, t1 + 50ms));
    // Debt and the burst left survive too.
    TokenBucket d({4096, 1000, 1000}, t0);
    d.take(1000 + 16384);
    const TokenBucketFill debt = d.fill(t0);
    CHECK(debt == TokenBucketFill{4096 - 16384, 0, 0});
    TokenBucket rd({4096, 1000, 1000}, debt, t1);
    CHECK(rd.wait_for(16384, t1) == 4s);
    TokenBucket burst({4096, 1000, 1000}, t0);
    burst.take(600);
    CHECK(burst.fill(t0) == TokenBucketFill{4096, 400, 0});
    // What is owed comes out of the fill: the burst first, then the budget.
    CHECK(burst.fill(t0, 512) == TokenBucketFill{4096 - 112, 0, 0});
}

TEST_CASE("rate limiter: a fill restored holds back what the saved limiter would have") {
    const RateLimit limit{TokenBucketSpec{8192, 0, 1000}, TokenBucketSpec{100, 0, 1000}};
    RateLimiter l(limit, t0);
    CHECK(l.take(1, 8192, t0).count() == 0);
    // A held 4 KiB request charged into the fill: the bucket owes it.
    const RateLimitFill f = l.fill(t0, 1, 4096);
    CHECK(f.bandwidth == TokenBucketFill{-4096, 0, 0});
    CHECK(f.ops == TokenBucketFill{98, 0, 0});
    const auto t1 = t0 + 500s;
    RateLimiter r(limit, f, t1);
    CHECK(r.fill(t1) == f);
    // 4 KiB of debt and 4 KiB for the next request: 1 s at 8 KiB/s.
    CHECK(r.take(1, 4096, t1) == 1s);
    CHECK(r.take(1, 4096, t1 + 1s).count() == 0);
    // A bucket without a fill starts full.
    RateLimiter half(limit, RateLimitFill{std::nullopt, TokenBucketFill{0, 0, 0}}, t1);
    CHECK(half.fill(t1) == RateLimitFill{TokenBucketFill{8192, 0, 0}, TokenBucketFill{0, 0, 0}});
    CHECK(describe(limit, half.fill(t1)) == "8192 of 8192 bytes left, 0 of 100 requests left");
    CHECK(describe(RateLimit{TokenBucketSpec{10, 5, 1000}, std::nullopt},
                   RateLimitFill{TokenBucketFill{-3, 2, 0}, std::nullopt}) ==
          "-3 of 10 bytes left (burst 2 left)");
}

TEST_CASE("rate limiter: fills that no bucket of the limit can hold are named") {
    const TokenBucketSpec spec{10, 5, 1000};
    CHECK_FALSE(fill_problem(spec, {10, 5, 999'999'999}).has_value());
    CHECK_FALSE(fill_problem(spec, {-kMaxBucketDebt, 0, 0}).has_value());
    CHECK(fill_problem(spec, {11, 0, 0}) == "its budget 11 is more than its size 10");
    CHECK(fill_problem(spec, {-kMaxBucketDebt - 1, 0, 0}).has_value());
    CHECK(fill_problem(spec, {0, 6, 0}) == "its burst left 6 is more than its one-time burst 5");
    CHECK(fill_problem(spec, {0, 0, 1'000'000'000}) ==
          "its partial token (1000000000 token-ns) is not less than one token (1000000000)");
    CHECK(fill_problem({0, 0, 1000}, {0, 0, 0}) == "its size must be more than 0");
    const RateLimit ops_only{std::nullopt, spec};
    CHECK(fill_problem(ops_only, {TokenBucketFill{}, std::nullopt}) ==
          "a fill for a bandwidth bucket the limit does not have");
    CHECK(fill_problem(ops_only, {std::nullopt, TokenBucketFill{11, 0, 0}}) ==
          "ops bucket: its budget 11 is more than its size 10");
    CHECK_FALSE(fill_problem(ops_only, {}).has_value());
}

TEST_CASE("disk rate limit: the fill a checkpoint reads, and a restore puts back") {
    LiveRateLimit none(RateLimit{});
    CHECK_FALSE(none.fill(Clock::now()).has_value()); // no buckets: nothing to save
    const RateLimit limit{std::nullopt, TokenBucketSpec{3, 0, 3'600'000}};
    LiveRateLimit d(limit);
    REQUIRE(d.limiter() != nullptr);
    CHECK(d.limiter()->take(1, 0, Clock::now()).count() == 0);
    const auto saved = d.fill(Clock::now());
    REQUIRE(saved.has_value());
    CHECK(saved->ops->budget == 2);
    // A limit handed in but not taken yet by the I/O thread: its buckets
    // will start full, so there is no fill to save.
    d.replace(limit);
    CHECK_FALSE(d.fill(Clock::now()).has_value());

    // A restored disk's buckets hold the fill: two requests, not three.
    LiveRateLimit r(limit);
    r.restore_fill(*saved);
    RateLimiter* l = r.limiter();
    REQUIRE(l != nullptr);
    CHECK(l->take(1, 0, Clock::now()).count() == 0);
    CHECK(l->take(1, 0, Clock::now()).count() == 0);
    CHECK(l->take(1, 0, Clock::now()).count() > 0);
    // A fill that does not fit the limit is refused, naming the limit.
    LiveRateLimit bad(limit);
    CHECK_THROWS_WITH(bad.restore_fill({std::nullopt, TokenBucketFill{4, 0, 0}}),
                      "rate limit (3 requests per 3600000 ms): ops bucket: its budget 4 is "
                      "more than its size 3");
}
