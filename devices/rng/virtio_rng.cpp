#include "devices/rng/virtio_rng.h"

#include <errno.h>
#include <sys/random.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "vmm/log.h"

namespace ember {

using namespace virtio;

namespace {

// The whole of `out`, or -errno when nothing could be had. getrandom(2) returns
// fewer bytes than asked when a signal arrives during a read of more than 256
// (a vcpu's kick signal can), which is no reason to give the guest less.
long host_getrandom(std::span<uint8_t> out) {
    size_t done = 0;
    while (done < out.size()) {
        // Flags 0: the urandom pool, which blocks only before the host's pool
        // was first seeded (early boot), never afterwards.
        const ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
        if (n > 0) {
            done += static_cast<size_t>(n);
        } else if (n < 0 && errno != EINTR) {
            return done > 0 ? static_cast<long>(done) : -errno;
        }
    }
    return static_cast<long>(done);
}

} // namespace

VirtioRng::VirtioRng(uint16_t queue_size, RandomSource source)
    : queue_size_(queue_size), source_(source ? std::move(source) : RandomSource(host_getrandom)) {
    if (queue_size_ < 2 || queue_size_ > kMaxQueueSize || (queue_size_ & (queue_size_ - 1)) != 0)
        throw Error(fmt::format("virtio-rng queue size {} is not a power of two in [2, {}]",
                                queue_size_, kMaxQueueSize));
}

VirtioRng::~VirtioRng() {
    reset();
}

uint64_t VirtioRng::device_features() const {
    // §5.4.3: the device has no feature bits of its own.
    return kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc;
}

void VirtioRng::read_config(uint64_t /*offset*/, std::span<uint8_t> data) const {
    for (auto& b : data)
        b = 0;
}

void VirtioRng::write_config(uint64_t offset, std::span<const uint8_t> data) {
    log::debug("virtio-rng: ignored config write of {} bytes at {:#x}", data.size(), offset);
}

void VirtioRng::activate(const ActivationContext& ctx) {
    reset();
    if (ctx.queues.empty() || !ctx.queues[0].ready)
        throw Error("virtio-rng: DRIVER_OK without a ready request queue");
    if (ctx.inflight.empty() || ctx.inflight[0] == nullptr)
        throw Error("virtio-rng: no in-flight region for the request queue");
    InflightRegion& region = *ctx.inflight[0];
    QueueState q = ctx.queues[0];
    // Nothing is in flight at a checkpoint (see the header); a region that
    // says otherwise came from elsewhere, and its requests are served like
    // any other, oldest first.
    const InflightRecovery plan = region.start_queue(ctx.memory, q, ctx.recover);
    running_.emplace(Running{Virtqueue(ctx.memory, q), &region, &ctx.signals, &ctx.memory});
    try {
        for (uint16_t head : plan.resubmit)
            serve(running_->queue.resubmit(head));
        // After a restore the guest may have made buffers available and been
        // parked before its kick; serving them now costs nothing if not.
        if (ctx.recover) drain();
        publish();
    } catch (const VirtqueueError& e) {
        running_->signals->needs_reset(e.what());
    }
}

void VirtioRng::reset() noexcept {
    running_.reset();
}

void VirtioRng::kick(uint16_t queue) {
    if (!running_ || queue != 0 || running_->queue.broken()) return;
    try {
        drain();
    } catch (const VirtqueueError& e) {
        // A broken ring: publish what was served, then stop this device only.
        publish();
        running_->signals->needs_reset(e.what());
        return;
    }
    publish();
}

// Every chain the driver made available, then (EVENT_IDX) a request for the
// next kick; chains that arrived meanwhile are served too.
void VirtioRng::drain() {
    auto& r = *running_;
    for (;;) {
        DescriptorChain chain;
        while (r.queue.pop(chain)) {
            r.region->mark_popped(r.queue, chain.head());
            serve(std::move(chain)); // add_used empties it for the next pop
        }
        if (!r.queue.enable_notifications()) return;
    }
}

void VirtioRng::serve(DescriptorChain&& chain) {
    uint32_t written = 0;
    if (!chain.valid()) {
        count_bad(to_string(chain.error()), chain.head());
    } else if (chain.readable_bytes() != 0) {
        // §5.4.6.1: the driver places only device-writable buffers here.
        count_bad("a device-readable buffer in an entropy request", chain.head());
    } else {
        written = fill(chain);
    }
    requests_.fetch_add(1, std::memory_order_relaxed);
    running_->queue.add_used(std::move(chain), written);
}

uint32_t VirtioRng::fill(const DescriptorChain& chain) {
    uint32_t written = 0;
    for (const auto& seg : chain.segments()) {
        const uint32_t want = std::min(seg.len, kMaxBytesPerRequest - written);
        if (want == 0) break;
        // The chain was validated whole: every segment lies inside guest RAM.
        auto out = running_->memory->span(seg.addr, want);
        const long n = source_(out);
        if (n < 0) {
            const uint64_t errors = host_errors_.fetch_add(1, std::memory_order_relaxed) + 1;
            if (log::worth_logging(errors))
                log::warn("virtio-rng: getrandom failed: {} (host errors so far: {}); the "
                          "request completes with the {} bytes written before",
                          std::strerror(static_cast<int>(-n)), errors, written);
            break;
        }
        written += static_cast<uint32_t>(n);
        if (static_cast<uint32_t>(n) < want) break; // the source has no more: report what is there
    }
    bytes_.fetch_add(written, std::memory_order_relaxed);
    return written;
}

// The completion in the order of DESIGN.md "The two seeds": used elements,
// the region's batch link, used.idx, the region cleared, then the interrupt.
// It runs inside one MMIO exit, so a checkpoint sees all of it or none.
void VirtioRng::publish() {
    auto& r = *running_;
    if (r.region->publish_batch(r.queue)) { // §2.7.10: once per batch
        interrupts_.fetch_add(1, std::memory_order_relaxed);
        r.signals->used_buffer_notification();
    }
}

void VirtioRng::count_bad(std::string_view why, uint16_t head) {
    const uint64_t n = bad_requests_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (log::worth_logging(n))
        log::warn("virtio-rng: request {} refused: {}; completed with no bytes (bad requests so "
                  "far: {})",
                  head, why, n);
}

std::string VirtioRng::describe() {
    const auto s = stats();
    return fmt::format("{} requests, {} bytes, {} bad requests, {} host errors, {} interrupts; {}",
                       s.requests, s.bytes, s.bad_requests, s.host_errors, s.interrupts,
                       running_ ? running_->queue.describe() : std::string("not active"));
}

RngStatsSnapshot VirtioRng::stats() const noexcept {
    auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    return {ld(requests_), ld(bytes_), ld(bad_requests_), ld(host_errors_), ld(interrupts_)};
}

} // namespace ember
