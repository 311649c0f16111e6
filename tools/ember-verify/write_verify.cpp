#include "tools/ember-verify/write_verify.h"

#include <algorithm>
#include <chrono>
#include <iterator>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "tools/ember-verify/block_format.h"
#include "tools/ember-verify/disk.h"
#include "tools/ember-verify/errors.h"
#include "tools/ember-verify/io_pool.h"
#include "tools/ember-verify/write_sequence.h"

namespace ember::verify {
namespace {

// Blocks per read request during read-back: large enough to be cheap, small
// enough that a failing read is re-read block by block quickly.
constexpr uint64_t kReadChunkBlocks = 32;

class WriteVerifier final {
public:
    WriteVerifier(const WriteVerifyOptions& o, Console& console)
        : options_{o}, console_{console},
          disk_{Disk::open(o.device, DiskOptions{.writable = true,
                                                 .direct = o.direct,
                                                 .create = o.create,
                                                 .size = o.size})},
          blocks_{disk_.region_bytes() / kBlockSize}, sequence_{o.seed, checked_blocks(blocks_)},
          pool_{o.queue_depth}, errors_{console, "VERIFY"}, last_write_(blocks_, WriteSequence::kNever) {
        for (unsigned w = 0; w < pool_.depth(); ++w) {
            write_buffers_.emplace_back(kBlockSize);
            read_buffers_.emplace_back(kReadChunkBlocks * kBlockSize);
        }
        if (o.continuous && o.duration_seconds > 0)
            deadline_ = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(o.duration_seconds));
    }

    int run() {
        console_.line(fmt::format(
            "VERIFY START device={} size={} blocks={} seed={} mode={} passes={} qd={} direct={} "
            "flush_every={}",
            disk_.path(), disk_.region_bytes(), blocks_, options_.seed,
            options_.continuous ? "continuous" : "passes",
            options_.continuous ? 0 : options_.passes, pool_.depth(), options_.direct ? 1 : 0,
            options_.flush_every));
        if (options_.continuous)
            run_continuous();
        else
            run_passes();
        return finish();
    }

private:
    static uint64_t checked_blocks(uint64_t blocks) {
        if (blocks > WriteSequence::kMaxBlocks)
            throw SetupError(fmt::format("region of {} blocks is too large (at most {})", blocks,
                                         WriteSequence::kMaxBlocks));
        return blocks;
    }

    void run_passes() {
        for (uint64_t pass = 0; pass < options_.passes; ++pass) {
            const bool complete = write_pass(pass);
            console_.line(fmt::format("VERIFY PROGRESS pass={}/{} gen={} writes={} flushes={} "
                                      "errors={}",
                                      pass + 1, options_.passes,
                                      WriteSequence::generation_of_pass(pass), writes_, flushes_,
                                      errors_.count()));
            if (!complete) break;
        }
        read_verify();
    }

    void run_continuous() {
        for (uint64_t cycle = 0;; ++cycle) {
            const bool complete = write_pass(cycle);
            read_verify();
            console_.line(fmt::format("VERIFY PROGRESS cycle={} gen={} writes={} reads={} "
                                      "flushes={} errors={}",
                                      cycle + 1, WriteSequence::generation_of_pass(cycle),
                                      writes_, reads_.load(), flushes_, errors_.count()));
            if (!complete || should_stop() ||
                (options_.cycles != 0 && cycle + 1 >= options_.cycles))
                return;
        }
    }

    bool should_stop() const {
        // Relaxed is enough: the flag carries no data, and the signal handler that
        // sets it runs on some thread of this process at an arbitrary point anyway.
        if (options_.stop != nullptr && options_.stop->load(std::memory_order_relaxed)) return true;
        return deadline_ && std::chrono::steady_clock::now() >= *deadline_;
    }

    // Writes pass `pass` in batches of flush_every, draining and flushing after
    // each batch. Returns false when a stop request (or the --duration deadline)
    // cut the pass short; the stop is only looked at between batches, so what was
    // written is always flushed and then verified.
    bool write_pass(uint64_t pass) {
        const std::vector<uint32_t> order = sequence_.pass_order(pass);
        const uint64_t start = sequence_.pass_start(pass);
        const uint64_t generation = WriteSequence::generation_of_pass(pass);
        std::vector<std::pair<uint64_t, std::string>> failures;
        std::mutex failures_mutex;
        for (uint64_t pos = 0; pos < order.size();) {
            if (should_stop()) return false;
            const uint64_t batch = std::min<uint64_t>(options_.flush_every, order.size() - pos);
            pool_.run(batch, [&](uint64_t i, unsigned worker) {
                const uint64_t block = order[pos + i];
                const BlockStamp stamp{.seed = options_.seed,
                                       .block = block,
                                       .generation = generation,
                                       .write_index = start + pos + i,
                                       .region_blocks = blocks_};
                auto buffer = write_buffers_[worker].span().first<kBlockSize>();
                encode_block(stamp, buffer);
                const uint64_t offset = block * kBlockSize;
                if (const int err = disk_.write_at(buffer, offset); err != 0) {
                    std::lock_guard lock{failures_mutex};
                    failures.emplace_back(block, fmt::format("block={} expected gen={} got write "
                                                             "error: {} [offset {}]",
                                                             block, generation, io_error_text(err),
                                                             offset));
                }
            });
            // Every write of the batch has returned (acknowledged or failed) before
            // the flush below, which is what makes "writes=W" in VERIFY FLUSHED a
            // prefix of the sequence. A failed write still counts: whether it
            // reached the disk is unknown, and the run fails anyway.
            for (uint64_t i = 0; i < batch; ++i) last_write_[order[pos + i]] = start + pos + i;
            pos += batch;
            writes_ = start + pos;
            report_sorted(failures);
            flush();
        }
        return true;
    }

    void flush() {
        if (const int err = disk_.datasync(); err != 0) {
            errors_.add(fmt::format("flush error: {} [after writes={}]", io_error_text(err), writes_));
            return;
        }
        ++flushes_;
        if (options_.log_flushes)
            console_.line(fmt::format("VERIFY FLUSHED seed={} size={} writes={}", options_.seed,
                                      disk_.region_bytes(), writes_));
    }

    // Reads the whole region back and checks every block that has been written.
    void read_verify() {
        // Without O_DIRECT the reads would be served from the page cache that the
        // writes just filled; evict it so they reach the device.
        if (!options_.direct) {
            if (const int err = disk_.drop_cache(); err != 0)
                console_.error(fmt::format("ember-verify: warning: cannot drop the page cache of {}: "
                                           "{}; reads may not reach the device",
                                           disk_.path(), io_error_text(err)));
        }
        const uint64_t chunks = (blocks_ + kReadChunkBlocks - 1) / kReadChunkBlocks;
        std::vector<std::pair<uint64_t, std::string>> failures;
        std::mutex failures_mutex;
        pool_.run(chunks, [&](uint64_t chunk, unsigned worker) {
            const uint64_t first = chunk * kReadChunkBlocks;
            const uint64_t count = std::min(kReadChunkBlocks, blocks_ - first);
            std::span<uint8_t> buffer = read_buffers_[worker].span().first(count * kBlockSize);
            std::vector<std::pair<uint64_t, std::string>> local;
            if (disk_.read_at(buffer, first * kBlockSize) == 0) {
                for (uint64_t i = 0; i < count; ++i)
                    check_block(first + i, buffer.subspan(i * kBlockSize).first<kBlockSize>(), local);
            } else {
                // Find out exactly which blocks fail.
                for (uint64_t i = 0; i < count; ++i) {
                    auto one = buffer.subspan(i * kBlockSize).first<kBlockSize>();
                    const uint64_t block = first + i;
                    if (const int err = disk_.read_at(one, block * kBlockSize); err != 0)
                        local.emplace_back(block, fmt::format("block={} expected gen={} got read "
                                                              "error: {} [offset {}]",
                                                              block, expected_generation(block),
                                                              io_error_text(err),
                                                              block * kBlockSize));
                    else
                        check_block(block, one, local);
                }
            }
            reads_.fetch_add(count, std::memory_order_relaxed);
            if (!local.empty()) {
                std::lock_guard lock{failures_mutex};
                std::move(local.begin(), local.end(), std::back_inserter(failures));
            }
        });
        report_sorted(failures);
    }

    uint64_t expected_generation(uint64_t block) const {
        const uint64_t last = last_write_[block];
        return last == WriteSequence::kNever ? 0 : sequence_.generation_of(last);
    }

    void check_block(uint64_t block, std::span<const uint8_t, kBlockSize> data,
                     std::vector<std::pair<uint64_t, std::string>>& failures) const {
        const uint64_t last = last_write_[block];
        if (last == WriteSequence::kNever) return; // a run stopped early never wrote it
        const Classified c =
            classify(data, Expectation{.seed = options_.seed, .block = block, .region_blocks = blocks_});
        const uint64_t generation = sequence_.generation_of(last);
        if (c.verdict == Verdict::ok && c.stamp.generation == generation && c.stamp.write_index == last)
            return;
        std::string got = describe(c);
        if (c.verdict == Verdict::ok && c.stamp.generation == generation)
            got += fmt::format(" from write {} instead of {}", c.stamp.write_index, last);
        failures.emplace_back(block, fmt::format("block={} expected gen={} got {} [offset {}]", block,
                                                 generation, got, block * kBlockSize));
    }

    // Reports in block order, so that "first" does not depend on thread timing.
    void report_sorted(std::vector<std::pair<uint64_t, std::string>>& failures) {
        std::stable_sort(failures.begin(), failures.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        for (const auto& f : failures) errors_.add(f.second);
        failures.clear();
    }

    int finish() {
        if (errors_.count() == 0) {
            console_.line(fmt::format("VERIFY PASS blocks={} writes={} reads={} flushes={}", blocks_,
                                      writes_, reads_.load(), flushes_));
            return 0;
        }
        console_.line(fmt::format("VERIFY FAIL {} errors; first: {}", errors_.count(), errors_.first()));
        return 1;
    }

    const WriteVerifyOptions& options_;
    Console& console_;
    Disk disk_;
    uint64_t blocks_;
    WriteSequence sequence_;
    IoPool pool_;
    ErrorLog errors_;
    std::vector<uint64_t> last_write_; // per block: index of its last issued write
    std::vector<AlignedBuffer> write_buffers_;
    std::vector<AlignedBuffer> read_buffers_;
    std::optional<std::chrono::steady_clock::time_point> deadline_;
    uint64_t writes_{0};
    std::atomic<uint64_t> reads_{0};
    uint64_t flushes_{0};
};

} // namespace

int run_write_verify(const WriteVerifyOptions& options, Console& console) {
    WriteVerifier verifier{options, console};
    return verifier.run();
}

} // namespace ember::verify
