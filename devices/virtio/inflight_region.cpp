#include "devices/virtio/inflight_region.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include <fmt/format.h>

#include "devices/virtio/virtqueue.h"

namespace ember {

using virtio::VirtqUsedElem;

InflightRegion::InflightRegion(uint16_t queue_size)
    : size_(queue_size), bytes_(inflight_region_bytes(queue_size)) {
    if (queue_size == 0 || queue_size > 32768)
        throw InflightError(fmt::format("in-flight region for {} heads: the queue size must be "
                                        "in [1, 32768] (virtio 1.2 §2.7)",
                                        queue_size));
    fd_ = UniqueFd(::memfd_create("ember-inflight", MFD_CLOEXEC));
    if (!fd_) throw_errno("memfd_create(in-flight region)");
    if (::ftruncate(fd_.get(), static_cast<off_t>(bytes_)) != 0)
        throw_errno("ftruncate(in-flight region)");
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (p == MAP_FAILED) throw_errno("mmap(in-flight region)");
    base_ = static_cast<uint8_t*>(p);
}

InflightRegion::~InflightRegion() {
    if (base_ != nullptr) ::munmap(base_, bytes_);
}

InflightHeader& InflightRegion::head_ref() const noexcept {
    return *reinterpret_cast<InflightHeader*>(base_);
}

// The one door to an entry: `head` is checked against the size this object
// was built with, never against desc_num read from the (untrusted) region.
InflightEntry& InflightRegion::at(uint16_t head) const {
    if (head >= size_)
        throw InflightError(
            fmt::format("in-flight region: head {} is outside a queue of {}", head, size_));
    return reinterpret_cast<InflightEntry*>(base_ + sizeof(InflightHeader))[head];
}

void InflightRegion::load(std::span<const uint8_t> saved) {
    if (saved.size() != bytes_)
        throw InflightError(fmt::format("saved in-flight region has {} bytes; a queue of {} "
                                        "needs {}",
                                        saved.size(), size_, bytes_));
    std::memcpy(base_, saved.data(), bytes_);
    next_counter_ = 0;
    consumed_ = 0;
}

void InflightRegion::activate(uint16_t ring_used_idx) {
    std::memset(base_, 0, bytes_);
    auto& h = head_ref();
    h.features = 0;
    h.version = kInflightVersion;
    h.desc_num = size_;
    h.last_batch_head = kNoBatch;
    h.used_idx = ring_used_idx;
    next_counter_ = 0;
    consumed_ = ring_used_idx;
}

bool InflightRegion::mark_popped(uint16_t head) {
    auto& e = at(head);
    if (e.inflight != 0) return false;
    e.counter = next_counter_++;
    // Release: the counter is in place before the flag says "in flight"; pairs
    // with the acquire loads in recover() and in a reader of the shared memfd.
    std::atomic_ref<uint8_t>(e.inflight).store(1, std::memory_order_release);
    ++consumed_;
    return true;
}

void InflightRegion::link_batch(std::span<const VirtqUsedElem> batch) {
    if (batch.empty()) return;
    // Ids were heads popped from this queue, so < size; at() checks anyway.
    for (size_t i = 0; i + 1 < batch.size(); ++i)
        at(static_cast<uint16_t>(batch[i].id)).next = static_cast<uint16_t>(batch[i + 1].id);
    at(static_cast<uint16_t>(batch.back().id)).next = kNoBatch;
    head_ref().last_batch_head = static_cast<uint16_t>(batch.front().id);
    // Release: the links and last_batch_head are stored before used.idx
    // moves (the caller's release store of used.idx orders them for others).
    std::atomic_thread_fence(std::memory_order_release);
}

void InflightRegion::clear_batch(std::span<const VirtqUsedElem> batch, uint16_t used_idx) {
    for (const auto& e : batch)
        std::atomic_ref<uint8_t>(at(static_cast<uint16_t>(e.id)).inflight)
            .store(0, std::memory_order_release);
    // Release: every flag of the batch is clear before the header says the
    // batch is done; pairs with the acquire load of used_idx in recover().
    std::atomic_ref<uint16_t>(head_ref().used_idx).store(used_idx, std::memory_order_release);
}

InflightHeader InflightRegion::header() const noexcept {
    InflightHeader h;
    std::memcpy(&h, base_, sizeof h);
    return h;
}

uint8_t InflightRegion::inflight(uint16_t head) const {
    return std::atomic_ref<uint8_t>(at(head).inflight).load(std::memory_order_acquire);
}

InflightEntry InflightRegion::entry(uint16_t head) const {
    InflightEntry e;
    std::memcpy(&e, &at(head), sizeof e);
    return e;
}

uint32_t InflightRegion::count_inflight() const noexcept {
    uint32_t n = 0;
    // Atomic loads: --checkpoint-drain counts while the I/O thread still
    // completes requests (an exact count needs the thread quiesced).
    for (uint16_t h = 0; h < size_; ++h)
        n += inflight(h) != 0 ? 1 : 0;
    return n;
}

void InflightRegion::mark_popped(Virtqueue& queue, uint16_t head) {
    if (!mark_popped(head))
        queue.mark_broken(
            fmt::format("the driver offered head {} again while it is in flight", head));
}

InflightRecovery InflightRegion::start_queue(const GuestMemory& mem, QueueState& queue,
                                             bool recover) {
    if (!recover) {
        queue.next_used = header().used_idx;
        queue.next_avail = consumed_avail_idx();
        return {};
    }
    InflightRecovery plan = this->recover(mem, queue);
    queue.next_used = plan.used_idx;
    queue.next_avail = plan.next_avail;
    return plan;
}

InflightRecovery InflightRegion::recover(const GuestMemory& mem, const QueueState& queue) {
    if (queue.size != size_)
        throw InflightError(fmt::format("in-flight region was made for a queue of {}, the queue "
                                        "has {}",
                                        size_, queue.size));
    // Acquire: pairs with the release stores in clear_batch().
    const uint16_t header_used =
        std::atomic_ref<uint16_t>(head_ref().used_idx).load(std::memory_order_acquire);
    const InflightHeader h = header();
    if (h.version != kInflightVersion)
        throw InflightError(
            fmt::format("in-flight region version {} (expected {})", h.version, kInflightVersion));
    if (h.desc_num != size_)
        throw InflightError(fmt::format("in-flight region says {} heads, the queue has {}",
                                        h.desc_num, size_));
    if (h.features != 0)
        throw InflightError(fmt::format("in-flight region has unknown features {:#x}", h.features));
    // Everything below is untrusted: check before use.
    for (uint16_t i = 0; i < size_; ++i)
        if (const uint8_t v = inflight(i); v > 1)
            throw InflightError(fmt::format(
                "in-flight region entry {} has inflight value {} (only 0 or 1 are valid)", i, v));

    // The rings themselves: checked at QueueReady / restore, so inside RAM.
    const GuestAddress used_idx_addr{queue.used_ring.value + 2};
    const GuestAddress avail_idx_addr{queue.avail_ring.value + 2};
    const uint16_t used = mem.load_acquire<uint16_t>(used_idx_addr);
    const uint16_t avail = mem.load_acquire<uint16_t>(avail_idx_addr);

    // Published but not cleared (DESIGN.md "Recover"): the batch of
    // used - header_used elements starts at last_batch_head and follows `next`.
    std::vector<uint16_t> batch;
    const uint16_t behind = static_cast<uint16_t>(used - header_used);
    if (behind != 0) {
        if (behind > size_)
            throw InflightError(fmt::format("in-flight region used_idx {} is {} behind used.idx "
                                            "{}, more than a queue of {}",
                                            header_used, behind, used, size_));
        if (h.last_batch_head >= size_)
            throw InflightError(fmt::format("in-flight region: a batch of {} was published but "
                                            "last_batch_head {} is not a head",
                                            behind, h.last_batch_head));
        std::vector<uint8_t> seen(size_, 0);
        uint16_t cur = h.last_batch_head;
        for (uint16_t i = 0; i < behind; ++i) {
            if (cur >= size_)
                throw InflightError(fmt::format("in-flight batch chain leaves the queue at "
                                                "element {} (next = {})",
                                                i, cur));
            if (seen[cur] != 0)
                throw InflightError(
                    fmt::format("in-flight batch chain loops back to head {} after {} of {} "
                                "elements",
                                cur, i, behind));
            seen[cur] = 1;
            // The used ring must name the same head at that position: a
            // bogus last_batch_head or a stale header (SPDK issue 3766)
            // would otherwise clear a live entry.
            const uint16_t slot = static_cast<uint16_t>(header_used + i) & (size_ - 1);
            const auto elem =
                mem.read<VirtqUsedElem>(GuestAddress{queue.used_ring.value + 4 + 8ull * slot});
            if (elem.id != cur)
                throw InflightError(fmt::format("in-flight batch chain names head {} at used "
                                                "position {}, the used ring has {}",
                                                cur, static_cast<uint16_t>(header_used + i),
                                                elem.id));
            batch.push_back(cur);
            cur = at(cur).next;
        }
    }

    // Count what stays in flight once the batch is cleared.
    uint32_t count = count_inflight();
    for (uint16_t b : batch)
        count -= inflight(b);
    const uint16_t beyond = static_cast<uint16_t>(avail - used);
    if (beyond <= size_ && count > beyond)
        throw InflightError(fmt::format("in-flight region holds {} requests, but the driver "
                                        "made only {} available beyond used.idx {}",
                                        count, beyond, used));

    // Repair.
    InflightRecovery r;
    for (uint16_t b : batch) {
        if (inflight(b) != 0) ++r.repaired;
        std::atomic_ref<uint8_t>(at(b).inflight).store(0, std::memory_order_release);
    }
    head_ref().last_batch_head = kNoBatch;
    std::atomic_ref<uint16_t>(head_ref().used_idx).store(used, std::memory_order_release);

    uint64_t max_counter = 0;
    bool any = false;
    for (uint16_t i = 0; i < size_; ++i) {
        const auto& e = at(i);
        if (e.inflight != 0) r.resubmit.push_back(i);
        if (e.inflight != 0 || e.counter != 0) {
            max_counter = std::max(max_counter, e.counter);
            any = true;
        }
    }
    // Oldest first; equal counters (only in a damaged region) by head.
    std::sort(r.resubmit.begin(), r.resubmit.end(), [this](uint16_t a, uint16_t b) {
        const auto ca = at(a).counter, cb = at(b).counter;
        return ca != cb ? ca < cb : a < b;
    });
    r.used_idx = used;
    r.next_avail = static_cast<uint16_t>(used + r.resubmit.size());
    r.next_counter = any && max_counter != UINT64_MAX ? max_counter + 1 : (any ? max_counter : 0);
    next_counter_ = r.next_counter;
    consumed_ = r.next_avail;
    return r;
}

bool InflightRegion::publish_batch(Virtqueue& queue) {
    if (queue.pending_used() == 0) return false;
    const auto batch = queue.write_used_elements();
    link_batch(batch);
    queue.publish_used_idx();
    clear_batch(batch, queue.state().next_used);
    return queue.needs_interrupt();
}

} // namespace ember
