// ember-verify's deterministic write sequence: reproducible, well formed, and
// last_writes() agrees with replaying the sequence write by write.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <vector>

#include "tools/ember-verify/write_sequence.h"

using namespace ember::verify;

namespace {

// The obvious O(W) replay that last_writes() must agree with.
std::vector<uint64_t> replay(const WriteSequence& seq, uint64_t writes) {
    std::vector<uint64_t> last(seq.region_blocks(), WriteSequence::kNever);
    for (uint64_t pass = 0; seq.pass_start(pass) < writes; ++pass) {
        const auto order = seq.pass_order(pass);
        for (uint64_t i = 0; i < order.size() && seq.pass_start(pass) + i < writes; ++i)
            last[order[i]] = seq.pass_start(pass) + i;
    }
    return last;
}

} // namespace

TEST_CASE("write sequence: reproducible from seed and region size alone") {
    const WriteSequence a{7, 100};
    const WriteSequence b{7, 100};
    for (uint64_t w = 0; w < 400; ++w) {
        CHECK(a.at(w) == b.at(w));
        CHECK(a.at(w).index == w);
    }
    const WriteSequence other_seed{8, 100};
    CHECK(a.pass_order(0) != other_seed.pass_order(0));
    CHECK(a.pass_order(1) != a.pass_order(2)); // every pass is shuffled afresh
}

TEST_CASE("write sequence: pass 0 covers every block once, later passes half of them, distinct") {
    for (const uint64_t n : {1u, 2u, 3u, 7u, 64u, 1000u}) {
        const WriteSequence seq{42, n};
        auto first = seq.pass_order(0);
        REQUIRE(first.size() == n);
        std::sort(first.begin(), first.end());
        for (uint64_t i = 0; i < n; ++i) CHECK(first[i] == i);
        for (uint64_t pass = 1; pass < 5; ++pass) {
            const auto order = seq.pass_order(pass);
            CHECK(order.size() == (n + 1) / 2);
            CHECK(std::set<uint32_t>(order.begin(), order.end()).size() == order.size());
            CHECK(std::all_of(order.begin(), order.end(), [&](uint32_t b) { return b < n; }));
        }
    }
}

TEST_CASE("write sequence: index, pass and generation arithmetic agree") {
    const WriteSequence seq{3, 10}; // passes of 10, 5, 5, 5, ...
    CHECK(seq.pass_start(0) == 0);
    CHECK(seq.pass_start(1) == 10);
    CHECK(seq.pass_start(3) == 20);
    CHECK(seq.pass_of(9) == 0);
    CHECK(seq.pass_of(10) == 1);
    CHECK(seq.pass_of(14) == 1);
    CHECK(seq.pass_of(15) == 2);
    CHECK(seq.generation_of(0) == 1);
    CHECK(seq.generation_of(15) == 3);
    CHECK(seq.at(15).generation == 3);
    CHECK(seq.at(15).block == seq.pass_order(2)[0]);
}

TEST_CASE("write sequence: last_writes equals a write-by-write replay") {
    for (const uint64_t n : {1u, 2u, 5u, 33u, 256u}) {
        const WriteSequence seq{n * 1000 + 1, n};
        const uint64_t half = (n + 1) / 2;
        for (const uint64_t w : {uint64_t{0}, uint64_t{1}, n - 1, n, n + 1, n + half, n + 7 * half + 1,
                                 n + 40 * half + half / 2}) {
            INFO("n=" << n << " writes=" << w);
            CHECK(seq.last_writes(w) == replay(seq, w));
        }
    }
}

TEST_CASE("write sequence: every block written by a full first pass keeps a last write afterwards") {
    const WriteSequence seq{11, 500};
    const auto last = seq.last_writes(500 + 250 * 30);
    CHECK(std::none_of(last.begin(), last.end(), [](uint64_t w) { return w == WriteSequence::kNever; }));
    // Before pass 0 completes, exactly the written blocks have a last write.
    const auto partial = seq.last_writes(123);
    CHECK(std::count(partial.begin(), partial.end(), WriteSequence::kNever) == 500 - 123);
}

TEST_CASE("write sequence: empty and oversized regions are rejected") {
    CHECK_THROWS_AS(WriteSequence(1, 0), std::invalid_argument);
    CHECK_THROWS_AS(WriteSequence(1, WriteSequence::kMaxBlocks + 1), std::invalid_argument);
}
