#include "tools/ember-verify/write_sequence.h"

#include <numeric>
#include <stdexcept>
#include <string>

#include "tools/ember-verify/prng.h"

namespace ember::verify {

WriteSequence::WriteSequence(uint64_t seed, uint64_t region_blocks)
    : seed_{seed}, blocks_{region_blocks}, rewrite_len_{(region_blocks + 1) / 2} {
    if (region_blocks == 0 || region_blocks > kMaxBlocks)
        throw std::invalid_argument("region must hold between 1 and " + std::to_string(kMaxBlocks) +
                                    " blocks, not " + std::to_string(region_blocks));
}

uint64_t WriteSequence::pass_length(uint64_t pass) const noexcept {
    return pass == 0 ? blocks_ : rewrite_len_;
}

uint64_t WriteSequence::pass_start(uint64_t pass) const noexcept {
    return pass == 0 ? 0 : blocks_ + (pass - 1) * rewrite_len_;
}

uint64_t WriteSequence::pass_of(uint64_t index) const noexcept {
    return index < blocks_ ? 0 : 1 + (index - blocks_) / rewrite_len_;
}

std::vector<uint32_t> WriteSequence::pass_order(uint64_t pass) const {
    std::vector<uint32_t> order(blocks_);
    std::iota(order.begin(), order.end(), uint32_t{0});
    SplitMix64 rng{mix64(seed_ ^ mix64(pass ^ 0x5eed5eed5eed5eedull))};
    const uint64_t len = pass_length(pass);
    // Forward Fisher-Yates: after step i, order[0..i] is a uniform random prefix,
    // so a partial pass only pays for the entries it uses.
    for (uint64_t i = 0; i < len && i + 1 < blocks_; ++i) {
        const uint64_t j = i + rng.below(blocks_ - i);
        std::swap(order[i], order[j]);
    }
    order.resize(len);
    return order;
}

Write WriteSequence::at(uint64_t index) const {
    const uint64_t pass = pass_of(index);
    const std::vector<uint32_t> order = pass_order(pass);
    return Write{.index = index,
                 .block = order[index - pass_start(pass)],
                 .generation = generation_of_pass(pass)};
}

std::vector<uint64_t> WriteSequence::last_writes(uint64_t writes) const {
    std::vector<uint64_t> last(blocks_, kNever);
    if (writes == 0) return last;
    const uint64_t final_pass = pass_of(writes - 1);
    uint64_t unassigned = blocks_;
    for (uint64_t pass = final_pass + 1; pass-- > 0 && unassigned > 0;) {
        const std::vector<uint32_t> order = pass_order(pass);
        const uint64_t start = pass_start(pass);
        const uint64_t used = pass == final_pass ? writes - start : order.size();
        // A block occurs at most once per pass, so the first pass (from the end)
        // that contains it holds its last write.
        for (uint64_t i = 0; i < used; ++i) {
            uint64_t& slot = last[order[i]];
            if (slot == kNever) {
                slot = start + i;
                --unassigned;
            }
        }
    }
    return last;
}

} // namespace ember::verify
