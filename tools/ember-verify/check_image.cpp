#include "tools/ember-verify/check_image.h"

#include <algorithm>
#include <map>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "tools/ember-verify/block_format.h"
#include "tools/ember-verify/disk.h"
#include "tools/ember-verify/errors.h"
#include "tools/ember-verify/write_sequence.h"

namespace ember::verify {
namespace {

constexpr uint64_t kChunkBlocks = 256;
// Blocks probed for a header of this run when the region size is not given.
constexpr uint64_t kProbeBlocks = 1024;

// The region size recorded by the first valid block of this run in the image.
std::optional<uint64_t> region_from_headers(const Disk& disk, uint64_t seed) {
    AlignedBuffer buffer{kBlockSize};
    auto one = buffer.span().first<kBlockSize>();
    const uint64_t blocks = std::min(disk.region_bytes() / kBlockSize, kProbeBlocks);
    for (uint64_t b = 0; b < blocks; ++b) {
        if (disk.read_at(one, b * kBlockSize) != 0) continue;
        const DecodedBlock d = decode_block(one);
        if (d.state == BlockState::valid && d.stamp.seed == seed && d.stamp.block == b &&
            d.stamp.region_blocks > 0)
            return d.stamp.region_blocks;
    }
    return std::nullopt;
}

class ImageChecker final {
public:
    ImageChecker(const CheckImageOptions& o, Console& console, Disk disk, uint64_t blocks)
        : options_{o}, console_{console}, disk_{std::move(disk)}, blocks_{blocks},
          sequence_{o.seed, blocks}, errors_{console, "CHECK"} {}

    int run() {
        console_.line(fmt::format("CHECK START image={} size={} blocks={} seed={} writes={}",
                                  disk_.path(), blocks_ * kBlockSize, blocks_, options_.seed,
                                  options_.writes));
        const std::vector<uint64_t> last = sequence_.last_writes(options_.writes);
        AlignedBuffer buffer{kChunkBlocks * kBlockSize};
        for (uint64_t first = 0; first < blocks_; first += kChunkBlocks) {
            const uint64_t count = std::min(kChunkBlocks, blocks_ - first);
            auto chunk = buffer.span().first(count * kBlockSize);
            const bool chunk_ok = disk_.read_at(chunk, first * kBlockSize) == 0;
            for (uint64_t i = 0; i < count; ++i) {
                const uint64_t block = first + i;
                auto one = chunk.subspan(i * kBlockSize).first<kBlockSize>();
                if (!chunk_ok) {
                    if (const int err = disk_.read_at(one, block * kBlockSize); err != 0) {
                        error(block, last[block], fmt::format("read error: {}", io_error_text(err)));
                        continue;
                    }
                }
                check_block(block, last[block], one);
            }
        }
        if (errors_.count() == 0) {
            console_.line(fmt::format("CHECK PASS blocks={} writes={} current={} newer={} "
                                      "unwritten={}",
                                      blocks_, options_.writes, current_, newer_, unwritten_));
            return 0;
        }
        console_.line(fmt::format("CHECK FAIL {} errors; first: {}", errors_.count(), errors_.first()));
        return 1;
    }

private:
    void error(uint64_t block, uint64_t last, const std::string& got) {
        const uint64_t min_gen = last == WriteSequence::kNever ? 0 : sequence_.generation_of(last);
        errors_.add(fmt::format("block={} expected gen>={} got {} [offset {}]", block, min_gen, got,
                                block * kBlockSize));
    }

    void check_block(uint64_t block, uint64_t last, std::span<const uint8_t, kBlockSize> data) {
        const Classified c = classify(
            data, Expectation{.seed = options_.seed, .block = block, .region_blocks = blocks_});
        if (last == WriteSequence::kNever) {
            // Nothing acknowledged-and-flushed was written here: old contents, a
            // fresh zero block, a later (unflushed) write or another run's data are
            // all legitimate; a block of this run meant for elsewhere is not.
            if (c.verdict == Verdict::wrong_block || c.verdict == Verdict::wrong_region ||
                (c.verdict == Verdict::ok && !written_by_sequence(block, c.stamp)))
                error(block, last, describe(c));
            else
                ++unwritten_;
            return;
        }
        if (c.verdict != Verdict::ok) {
            error(block, last, describe(c));
            return;
        }
        const uint64_t min_gen = sequence_.generation_of(last);
        const uint64_t gen = c.stamp.generation;
        if (gen < min_gen) {
            error(block, last, fmt::format("gen={} (write {} was flushed but is missing)", gen, last));
        } else if (gen == min_gen) {
            if (c.stamp.write_index != last)
                error(block, last, fmt::format("gen={} from write {} instead of {}", gen,
                                               c.stamp.write_index, last));
            else
                ++current_;
        } else if (!written_by_sequence(block, c.stamp)) {
            error(block, last, fmt::format("gen={} from write {}, which the sequence never wrote "
                                           "here",
                                           gen, c.stamp.write_index));
        } else {
            ++newer_;
        }
    }

    // Whether the sequence's write c.write_index goes to `block` with this generation.
    bool written_by_sequence(uint64_t block, const BlockStamp& s) {
        if (s.generation == 0) return false;
        const uint64_t pass = s.generation - 1;
        if (s.write_index < sequence_.pass_start(pass) || sequence_.pass_of(s.write_index) != pass)
            return false;
        const std::vector<uint32_t>& order = pass_order(pass);
        const uint64_t pos = s.write_index - sequence_.pass_start(pass);
        return pos < order.size() && order[pos] == block;
    }

    // Pass orders are O(N) to compute and a later generation usually belongs to
    // one or two passes past the flushed prefix, so keep a few.
    const std::vector<uint32_t>& pass_order(uint64_t pass) {
        if (auto it = orders_.find(pass); it != orders_.end()) return it->second;
        if (orders_.size() >= 8) orders_.erase(orders_.begin());
        return orders_.emplace(pass, sequence_.pass_order(pass)).first->second;
    }

    const CheckImageOptions& options_;
    Console& console_;
    Disk disk_;
    uint64_t blocks_;
    WriteSequence sequence_;
    ErrorLog errors_;
    std::map<uint64_t, std::vector<uint32_t>> orders_;
    uint64_t current_{0};   // blocks at exactly the flushed generation
    uint64_t newer_{0};     // blocks at a later generation (unflushed writes that landed)
    uint64_t unwritten_{0}; // blocks no flushed write touched
};

} // namespace

int run_check_image(const CheckImageOptions& o, Console& console) {
    Disk disk = Disk::open(o.image, DiskOptions{.writable = false, .direct = false, .create = false,
                                                .size = o.size});
    uint64_t blocks = disk.region_bytes() / kBlockSize;
    if (o.size == 0) {
        if (const auto recorded = region_from_headers(disk, o.seed)) {
            if (*recorded > blocks)
                throw SetupError(fmt::format("{}: the run recorded a region of {} blocks but the "
                                             "image holds only {}",
                                             o.image, *recorded, blocks));
            blocks = *recorded;
        }
    }
    if (blocks > WriteSequence::kMaxBlocks)
        throw SetupError(fmt::format("{}: region of {} blocks is too large (at most {})", o.image,
                                     blocks, WriteSequence::kMaxBlocks));
    ImageChecker checker{o, console, std::move(disk), blocks};
    return checker.run();
}

} // namespace ember::verify
