// The disk rate limiter's token buckets, on a clock the test moves: rates,
// the one-time burst, requests larger than the bucket, and both buckets
// together (a request one refuses takes nothing from the other).
#include <doctest/doctest.h>

#include "devices/block/rate_limiter.h"

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
