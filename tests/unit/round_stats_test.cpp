// bench-blk's rounds: the median and its distribution-free interval
// (tools/round_stats.h).
#include <doctest/doctest.h>

#include "tools/round_stats.h"

#include <numeric>
#include <stdexcept>

using namespace ember::bench;

TEST_CASE("the median of an odd count is the middle value, of an even count the mean of two") {
    CHECK_FALSE(median_of({}));
    CHECK(*median_of({3}) == 3);
    CHECK(*median_of({5, 1, 3}) == 3);
    CHECK(*median_of({4, 1, 3, 2}) == doctest::Approx(2.5));
}

TEST_CASE("the 95% interval of a median is the sign test's order statistics") {
    // Fewer than 6 rounds cannot give 95%: [min, max] of 5 covers 1 - 2/32.
    std::vector<double> five{1, 2, 3, 4, 5};
    CHECK_FALSE(median_interval(five, 0.95));
    REQUIRE(median_interval(five, 0.90));
    CHECK(median_interval(five, 0.90)->coverage == doctest::Approx(1 - 2.0 / 32));

    // 6 rounds: [min, max], coverage 1 - 2/64.
    const auto six = median_interval({6, 1, 5, 2, 4, 3}, 0.95);
    REQUIRE(six);
    CHECK(six->lo == 1);
    CHECK(six->hi == 6);
    CHECK(six->coverage == doctest::Approx(1 - 2.0 / 64));

    // 21 rounds (bench-blk --repeat 21): P(B <= 5) = 0.0133, P(B <= 6) =
    // 0.0392 for B ~ Bin(21, 1/2), so [x(6), x(16)] at 97.3%; [x(7), x(15)]
    // would cover only 92.2%.
    std::vector<double> rounds(21);
    std::iota(rounds.begin(), rounds.end(), 1.0); // 1..21: x(k) = k
    std::swap(rounds[0], rounds[20]);             // order does not matter
    const auto r = median_interval(rounds, 0.95);
    REQUIRE(r);
    CHECK(r->lo == 6);
    CHECK(r->hi == 16);
    CHECK(r->coverage == doctest::Approx(1 - 2 * 0.013302).epsilon(1e-4));
    // Asking for less narrows it.
    const auto r90 = median_interval(rounds, 0.90);
    REQUIRE(r90);
    CHECK(r90->lo == 7);
    CHECK(r90->hi == 15);
}

TEST_CASE("a confidence outside (0, 1) is a caller's bug") {
    CHECK_THROWS_AS(median_interval({1, 2, 3}, 1.0), std::invalid_argument);
    CHECK_THROWS_AS(median_interval({1, 2, 3}, 0.0), std::invalid_argument);
}
