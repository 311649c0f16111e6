#include "devices/block/virtio_block.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "vmm/fault/fault_points.h"
#include "vmm/log.h"

namespace ember {

using namespace virtio;
using namespace virtio::blk;

VirtioBlock::VirtioBlock(BlockDisk disk, uint16_t queue_size)
    : disk_(std::move(disk)), queue_size_(queue_size), rate_limit_(disk_.spec().rate_limit) {
    if (queue_size_ < 4 || queue_size_ > kMaxQueueSize || (queue_size_ & (queue_size_ - 1)) != 0)
        throw Error(fmt::format("virtio-blk queue size {} is not a power of two in [4, {}]",
                                queue_size_, kMaxQueueSize));
    name_ = fmt::format("virtio-blk {}", disk_.path());
    features_ = kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc |
                kFeatureSizeMax | kFeatureSegMax | kFeatureBlkSize | kFeatureFlush;
    // A read-only disk offers RO and neither DISCARD nor WRITE_ZEROES.
    features_ |= disk_.readonly() ? kFeatureRo : (kFeatureDiscard | kFeatureWriteZeroes);

    config_.capacity = disk_.sectors();
    config_.size_max = 1u << 20;
    // Header and status take two descriptors of the longest chain (§5.2.4).
    config_.seg_max = queue_size_ - 2u;
    // The logical block size; O_DIRECT may need more than 512.
    config_.blk_size = disk_.direct() ? std::max<uint32_t>(disk_.offset_align(), 512) : 512;
    config_.num_queues = 1;
    config_.max_discard_sectors = limits_.max_discard_sectors;
    config_.max_discard_seg = limits_.max_discard_seg;
    config_.discard_sector_alignment = 4096 / 512; // file systems punch whole blocks
    config_.max_write_zeroes_sectors = limits_.max_write_zeroes_sectors;
    config_.max_write_zeroes_seg = limits_.max_write_zeroes_seg;
    config_.write_zeroes_may_unmap = 1;
}

VirtioBlock::~VirtioBlock() {
    reset();
}

void VirtioBlock::read_config(uint64_t offset, std::span<uint8_t> data) const {
    const auto* bytes = reinterpret_cast<const uint8_t*>(&config_);
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = offset + i < sizeof config_ ? bytes[offset + i] : 0;
}

void VirtioBlock::write_config(uint64_t offset, std::span<const uint8_t> data) {
    // Only `writeback` is writable, and only with CONFIG_WCE, not offered.
    log::debug("{}: ignored config write of {} bytes at {:#x}", name_, data.size(), offset);
}

void VirtioBlock::activate(const ActivationContext& ctx) {
    reset();
    if (ctx.queues.empty() || !ctx.queues[0].ready)
        throw Error(fmt::format("{}: DRIVER_OK without a ready request queue", name_));
    if (ctx.inflight.empty() || ctx.inflight[0] == nullptr)
        throw Error(fmt::format("{}: no in-flight region for the request queue", name_));
    running_ = Running{&ctx.memory,  ctx.queues[0], ctx.notify[0].fd(),
                       &ctx.signals, ctx.features,  ctx.inflight[0]};
    try {
        start_io(ctx.recover);
    } catch (...) {
        running_.reset();
        throw;
    }
    log::debug("{}: activated, queue size {}, engine {}", name_, ctx.queues[0].size,
               io_->engine_name());
}

// Fresh activation: the transport initialised the region from the ring, and
// the device starts at used.idx (0 for a new ring). Recovery: the region and
// guest memory alone say where to start and what to resubmit (DESIGN.md).
IoRecovery VirtioBlock::start_io(bool recover) {
    auto& r = *running_;
    QueueState q = r.queue;
    InflightRecovery plan = r.inflight->start_queue(*r.memory, q, recover);
    if (fault::negative(fault::NegativeControl::skip_resubmit) && !plan.resubmit.empty()) {
        // Negative control (tests/crash): forget the requests in flight,
        // as a recovery that never resubmits would. The avail slots stay
        // consumed; the guest never sees these heads again.
        std::vector<virtio::VirtqUsedElem> forget;
        for (uint16_t h : plan.resubmit)
            forget.push_back({h, 0});
        r.inflight->clear_batch(forget, plan.used_idx);
        log::warn("{}: negative control skip-resubmit: {} in-flight requests dropped", name_,
                  forget.size());
        plan.resubmit.clear();
    }
    const IoEngineFactory* factory = engine_factory_ ? &engine_factory_ : nullptr;
    io_ = std::make_unique<BlockIoThread>(BlockIoThread::Params{
        disk_, *r.memory, q, r.notify_fd, *r.signals, r.features, limits_, stats_, observer_,
        *r.inflight, plan.resubmit, masking_, factory, default_cpus_, rate_limit_});
    return IoRecovery{0, plan.repaired, static_cast<uint32_t>(plan.resubmit.size())};
}

void VirtioBlock::reset() noexcept {
    io_.reset();
    running_.reset();
}

void VirtioBlock::quiesce() {
    if (io_) io_->quiesce();
}

void VirtioBlock::unquiesce() noexcept {
    if (io_) io_->unquiesce();
}

IoRecovery VirtioBlock::restart_io() {
    if (!running_) return {};
    io_->stop(); // abandons: waits for its host I/O, drops the results
    // A request it held back is resubmitted below without asking the
    // buckets: charged here, so a crash lends the guest nothing.
    if (const auto held = io_->held_cost()) rate_limit_.charge(held->ops, held->bytes);
    io_.reset();
    const uint32_t inflight = running_->inflight->count_inflight();
    IoRecovery rec = start_io(true);
    rec.inflight = inflight;
    log::info("{}: I/O thread restarted from the in-flight region: {} requests in flight, {} "
              "completed before the crash, {} resubmitted",
              name_, rec.inflight, rec.completed, rec.resubmitted);
    // The old thread may have published a batch without its interrupt (a
    // crash between the two): one spurious interrupt is harmless, a lost
    // one hangs the guest (DESIGN.md).
    running_->signals->used_buffer_notification();
    return rec;
}

std::optional<RateLimitFill>
VirtioBlock::rate_limit_fill(LiveRateLimit::Clock::time_point now) const {
    // A request held back was not charged, and a restore resubmits it
    // without asking the buckets: its cost comes out of the saved fill, so
    // a checkpoint lends the guest nothing.
    const auto held = io_ ? io_->held_cost() : std::nullopt;
    return rate_limit_.fill(now, held ? held->ops : 0, held ? held->bytes : 0);
}

std::string VirtioBlock::describe() {
    const auto s = stats();
    // With poll=, how often spinning found work tells whether it pays.
    std::string polled =
        disk_.spec().poll_us > 0 ? fmt::format(", {} poll hits", s.poll_hits) : std::string();
    if (rate_limit_.current().enabled() || s.throttled > 0)
        polled += fmt::format(", {} throttled", s.throttled);
    return fmt::format("{} requests, {} interrupts, {} host errors{}; {}", s.requests, s.interrupts,
                       s.host_errors, polled, io_ ? io_->describe() : std::string("no I/O thread"));
}

BlockStatsSnapshot VirtioBlock::stats() const noexcept {
    auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    return {ld(stats_.requests),     ld(stats_.bad_requests),  ld(stats_.host_errors),
            ld(stats_.bytes_read),   ld(stats_.bytes_written), ld(stats_.interrupts),
            ld(stats_.park_points),  ld(stats_.poll_hits),     ld(stats_.reads),
            ld(stats_.writes),       ld(stats_.flushes),       ld(stats_.discards),
            ld(stats_.write_zeroes), ld(stats_.throttled)};
}

} // namespace ember
