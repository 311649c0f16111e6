#include "devices/net/virtio_net.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "vmm/log.h"

namespace ember {

using namespace virtio;

VirtioNet::VirtioNet(NetSpec spec, UniqueFd backend, uint16_t queue_size)
    : spec_(std::move(spec)), name_(fmt::format("virtio-net {}", spec_.id)),
      backend_(std::move(backend)), queue_size_(queue_size), rx_limit_(spec_.rx_limit),
      tx_limit_(spec_.tx_limit) {
    if (queue_size_ < 2 || queue_size_ > kMaxQueueSize || (queue_size_ & (queue_size_ - 1)) != 0)
        throw Error(fmt::format("{}: queue size {} is not a power of two in [2, {}]", name_,
                                queue_size_, kMaxQueueSize));
    if (!backend_) throw Error(fmt::format("{}: no backend (tap) descriptor", name_));
}

VirtioNet::~VirtioNet() {
    reset();
}

uint64_t VirtioNet::device_features() const {
    // No checksum or segmentation offloads, no mergeable buffers, no control
    // queue: a frame is a plain Ethernet frame in one buffer chain.
    uint64_t f =
        kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc | net::kFeatureStatus;
    if (spec_.mac) f |= net::kFeatureMac;
    return f;
}

void VirtioNet::read_config(uint64_t offset, std::span<uint8_t> data) const {
    std::array<uint8_t, net::kConfigSize> cfg{};
    // §5.1.4: mac is read-only for the driver; without VIRTIO_NET_F_MAC the
    // driver ignores it (and makes one up).
    if (spec_.mac) std::copy(spec_.mac->begin(), spec_.mac->end(), cfg.begin());
    cfg[6] = net::kStatusLinkUp; // le16 status: the link is always up
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = offset + i < cfg.size() ? cfg[offset + i] : 0;
}

void VirtioNet::write_config(uint64_t offset, std::span<const uint8_t> data) {
    // §5.1.4.2: the mac may be written only with VIRTIO_NET_F_CTRL_MAC_ADDR,
    // which is not offered (legacy drivers wrote it; a modern one does not).
    log::debug("{}: ignored config write of {} bytes at {:#x}", name_, data.size(), offset);
}

void VirtioNet::activate(const ActivationContext& ctx) {
    reset();
    if (ctx.queues.size() < 2 || !ctx.queues[0].ready || !ctx.queues[1].ready)
        throw Error(fmt::format("{}: DRIVER_OK without both receiveq and transmitq ready", name_));
    if (ctx.inflight.size() < 2 || ctx.inflight[0] == nullptr || ctx.inflight[1] == nullptr)
        throw Error(fmt::format("{}: no in-flight region for a queue", name_));
    QueueState rx = ctx.queues[0], tx = ctx.queues[1];
    const InflightRecovery rx_plan = ctx.inflight[0]->start_queue(ctx.memory, rx, ctx.recover);
    const InflightRecovery tx_plan = ctx.inflight[1]->start_queue(ctx.memory, tx, ctx.recover);
    io_ = std::make_unique<NetIoThread>(NetIoThread::Params{
        ctx.memory, name_, backend_.get(), rx, tx, ctx.notify[0].fd(), ctx.notify[1].fd(),
        ctx.signals, stats_, *ctx.inflight[0], *ctx.inflight[1], rx_plan.resubmit, tx_plan.resubmit,
        rx_limit_, tx_limit_});
    log::debug("{}: activated on tap {}, queue sizes {} and {}", name_, spec_.tap, rx.size,
               tx.size);
}

void VirtioNet::reset() noexcept {
    io_.reset();
}

void VirtioNet::quiesce() {
    if (io_) io_->quiesce();
}

void VirtioNet::unquiesce() noexcept {
    if (io_) io_->unquiesce();
}

NetRateLimitFills VirtioNet::rate_limit_fills(LiveRateLimit::Clock::time_point now) const {
    const auto held = io_ ? io_->held_tx_bytes() : std::nullopt;
    return {rx_limit_.fill(now), tx_limit_.fill(now, held ? 1 : 0, held.value_or(0))};
}

void VirtioNet::restore_rate_limit_fills(const NetRateLimitFills& fills) {
    try {
        if (fills.rx) rx_limit_.restore_fill(*fills.rx);
        if (fills.tx) tx_limit_.restore_fill(*fills.tx);
    } catch (const Error& e) {
        throw Error(fmt::format("{}: {}", name_, e.what()));
    }
}

std::string VirtioNet::describe() {
    const auto s = stats();
    std::string throttled;
    if (rx_limit_.current().enabled() || tx_limit_.current().enabled() || s.rx_throttled > 0 ||
        s.tx_throttled > 0)
        throttled =
            fmt::format(", throttled {} received and {} sent", s.rx_throttled, s.tx_throttled);
    return fmt::format("tap {}: {} frames received ({} bytes, {} dropped), {} sent ({} bytes, {} "
                       "failed), {} bad requests, {} interrupts{}; {}",
                       spec_.tap, s.rx_frames, s.rx_bytes, s.rx_dropped, s.tx_frames, s.tx_bytes,
                       s.tx_errors, s.bad_requests, s.interrupts, throttled,
                       io_ ? io_->describe() : std::string("not active"));
}

NetStatsSnapshot VirtioNet::stats() const noexcept {
    auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    return {ld(stats_.rx_frames),    ld(stats_.rx_bytes),   ld(stats_.tx_frames),
            ld(stats_.tx_bytes),     ld(stats_.rx_dropped), ld(stats_.tx_errors),
            ld(stats_.bad_requests), ld(stats_.interrupts), ld(stats_.rx_throttled),
            ld(stats_.tx_throttled)};
}

} // namespace ember
