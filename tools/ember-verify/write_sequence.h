// The verifier's write sequence: which block the i-th write goes to and which
// generation it carries, as a pure function of (seed, region size, i). Because
// nothing else influences it (not timing, not the queue depth, not errors), a
// host tool that knows "seed S, region N blocks, the first W writes were
// acknowledged and flushed" can recompute what every block must hold.
//
// Pass 0 writes every block once, in a pseudo-random order, with generation 1.
// Pass p >= 1 rewrites ceil(N/2) pseudo-randomly chosen blocks, in a pseudo-random
// order, with generation p + 1. The order of pass p is the first pass_length(p)
// entries of a Fisher-Yates shuffle of [0, N) driven by SplitMix64(mix(seed, p)).
// Within one pass a block is written at most once, so writes of one pass can be
// in flight together; the writer drains at pass boundaries.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

namespace ember::verify {

struct Write {
    uint64_t index{0};
    uint64_t block{0};
    uint64_t generation{0};
    friend bool operator==(const Write&, const Write&) = default;
};

class WriteSequence final {
public:
    static constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();
    // Blocks are indexed by 32 bits in pass orders: 16 TiB regions are plenty.
    static constexpr uint64_t kMaxBlocks = std::numeric_limits<uint32_t>::max();

    // Throws std::invalid_argument unless 1 <= region_blocks <= kMaxBlocks.
    WriteSequence(uint64_t seed, uint64_t region_blocks);

    uint64_t seed() const noexcept { return seed_; }
    uint64_t region_blocks() const noexcept { return blocks_; }

    static constexpr uint64_t generation_of_pass(uint64_t pass) noexcept { return pass + 1; }
    uint64_t pass_length(uint64_t pass) const noexcept;
    uint64_t pass_start(uint64_t pass) const noexcept; // index of the pass's first write
    uint64_t pass_of(uint64_t index) const noexcept;

    // The blocks of pass `pass` in write order (pass_length(pass) entries). O(N).
    std::vector<uint32_t> pass_order(uint64_t pass) const;

    // The index-th write. O(N) (it shuffles the pass): for tests and diagnostics.
    Write at(uint64_t index) const;

    // For every block, the index of the last of the first `writes` writes that hit
    // it, or kNever. Walks passes backwards until every block is accounted for, so
    // it costs O(N log N) whatever `writes` is.
    std::vector<uint64_t> last_writes(uint64_t writes) const;

    // The generation a write index carries.
    uint64_t generation_of(uint64_t index) const noexcept {
        return generation_of_pass(pass_of(index));
    }

private:
    uint64_t seed_;
    uint64_t blocks_;
    uint64_t rewrite_len_; // ceil(N/2): the length of every pass after the first
};

} // namespace ember::verify
