#include "tests/support/guest_driver.h"

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

namespace ember::testing {

using namespace virtio;

namespace {
uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) & ~(a - 1);
}
} // namespace

// --- ChainBuilder ----------------------------------------------------------------

ChainBuilder& ChainBuilder::readable(std::span<const uint8_t> bytes) {
    const auto addr = driver_.alloc(bytes.size());
    driver_.memory().write_bytes(addr, bytes);
    return readable(addr, static_cast<uint32_t>(bytes.size()));
}

ChainBuilder& ChainBuilder::readable(GuestAddress addr, uint32_t len) {
    chain_.buffers.push_back(DriverBuffer{addr, len, false});
    return *this;
}

ChainBuilder& ChainBuilder::writable(uint32_t len) {
    const auto addr = driver_.alloc(len);
    auto s = driver_.memory().span(addr, len);
    std::memset(s.data(), 0xa5, s.size());
    return writable(addr, len);
}

ChainBuilder& ChainBuilder::writable(GuestAddress addr, uint32_t len) {
    chain_.buffers.push_back(DriverBuffer{addr, len, true});
    return *this;
}

ChainBuilder& ChainBuilder::indirect(bool on) {
    chain_.indirect = on;
    return *this;
}

// --- GuestDriver -----------------------------------------------------------------

GuestDriver::GuestDriver(const GuestMemory& mem, VirtioMmioTransport& transport,
                         DriverOptions options)
    : mem_(mem), transport_(&transport), options_(options), heap_next_(options.heap_base.value),
      heap_floor_(options.heap_base.value) {}

uint32_t GuestDriver::read32(uint64_t offset) {
    uint32_t v = 0;
    transport_->read(offset, {reinterpret_cast<uint8_t*>(&v), 4});
    return v;
}

void GuestDriver::write32(uint64_t offset, uint32_t value) {
    transport_->write(offset, {reinterpret_cast<const uint8_t*>(&value), 4});
}

uint64_t GuestDriver::device_features() {
    write32(mmio::kDeviceFeaturesSel, 0);
    uint64_t f = read32(mmio::kDeviceFeatures);
    write32(mmio::kDeviceFeaturesSel, 1);
    f |= uint64_t{read32(mmio::kDeviceFeatures)} << 32;
    return f;
}

bool GuestDriver::negotiate(uint64_t features) {
    reset();
    write32(mmio::kStatus, kStatusAcknowledge);
    write32(mmio::kStatus, kStatusAcknowledge | kStatusDriver);
    write32(mmio::kDriverFeaturesSel, 0);
    write32(mmio::kDriverFeatures, static_cast<uint32_t>(features));
    write32(mmio::kDriverFeaturesSel, 1);
    write32(mmio::kDriverFeatures, static_cast<uint32_t>(features >> 32));
    write32(mmio::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    features_ = features;
    return (read32(mmio::kStatus) & kStatusFeaturesOk) != 0;
}

void GuestDriver::setup_queue(uint16_t index) {
    const uint16_t size = options_.queue_size;
    write32(mmio::kQueueSel, index);
    if (read32(mmio::kQueueReady) != 0) throw DriverError("queue already ready");
    const uint32_t max = read32(mmio::kQueueNumMax);
    if (max < size) throw DriverError(fmt::format("device queue max {} < {}", max, size));
    // Legacy-like layout: desc, avail, then used on the next 4 KiB page.
    const uint64_t base = options_.ring_base.value + index * 0x2'0000ull;
    queue_index_ = index;
    queue_ = QueueState{};
    queue_.size = size;
    queue_.desc_table = GuestAddress{base};
    queue_.avail_ring = GuestAddress{base + desc_table_bytes(size)};
    queue_.used_ring =
        GuestAddress{align_up(queue_.avail_ring.value + avail_ring_bytes(size), 4096)};
    queue_.event_idx = (features_ & kFeatureRingEventIdx) != 0;
    queue_.indirect = (features_ & kFeatureRingIndirectDesc) != 0;
    for (uint64_t a = base; a < queue_.used_ring.value + used_ring_bytes(size); ++a)
        mem_.write<uint8_t>(GuestAddress{a}, 0);
    write32(mmio::kQueueNum, size);
    write32(mmio::kQueueDescLow, static_cast<uint32_t>(queue_.desc_table.value));
    write32(mmio::kQueueDescHigh, static_cast<uint32_t>(queue_.desc_table.value >> 32));
    write32(mmio::kQueueDriverLow, static_cast<uint32_t>(queue_.avail_ring.value));
    write32(mmio::kQueueDriverHigh, static_cast<uint32_t>(queue_.avail_ring.value >> 32));
    write32(mmio::kQueueDeviceLow, static_cast<uint32_t>(queue_.used_ring.value));
    write32(mmio::kQueueDeviceHigh, static_cast<uint32_t>(queue_.used_ring.value >> 32));
    write32(mmio::kQueueReady, 1);

    free_.clear();
    for (int i = size - 1; i >= 0; --i)
        free_.push_back(static_cast<uint16_t>(i));
    chain_descs_.assign(size, {});
    in_flight_.assign(size, 0);
    outstanding_count_ = 0;
    avail_idx_ = kicked_idx_ = last_used_ = 0;
    // One indirect table slot per head, each able to hold `size` descriptors.
    indirect_area_ = alloc(uint64_t{size} * size * sizeof(VirtqDesc), 16);
    heap_floor_ = heap_next_;
}

void GuestDriver::driver_ok() {
    write32(mmio::kStatus, read32(mmio::kStatus) | kStatusDriverOk);
}

void GuestDriver::init(uint64_t features) {
    const uint64_t offered = device_features();
    if (!negotiate(features & offered)) throw DriverError("device refused FEATURES_OK");
    setup_queue(0);
    driver_ok();
    if ((read32(mmio::kStatus) & kStatusDriverOk) == 0) throw DriverError("DRIVER_OK not kept");
}

GuestAddress GuestDriver::alloc(uint64_t len, uint64_t align) {
    const uint64_t at = align_up(heap_next_, align);
    if (!mem_.contains(GuestAddress{at}, len)) throw DriverError("driver heap exhausted");
    heap_next_ = at + len;
    return GuestAddress{at};
}

void GuestDriver::write_descriptor(uint16_t index, const VirtqDesc& desc) {
    mem_.write(GuestAddress{queue_.desc_table.value + 16ull * index}, desc);
}

uint16_t GuestDriver::submit(const Chain& chain) {
    if (chain.buffers.empty()) throw DriverError("empty chain");
    const size_t need = chain.indirect ? 1 : chain.buffers.size();
    if (free_.size() < need) throw DriverError("no free descriptors");
    std::vector<uint16_t> descs(need);
    for (auto& d : descs) {
        d = free_.back();
        free_.pop_back();
    }
    const uint16_t head = descs[0];
    auto flags_of = [](const DriverBuffer& b, bool last) {
        return static_cast<uint16_t>((b.writable ? kDescFlagWrite : 0) |
                                     (last ? 0 : kDescFlagNext));
    };
    if (chain.indirect) {
        const GuestAddress table{indirect_area_.value + uint64_t{head} * queue_.size * 16};
        const size_t n = chain.buffers.size();
        for (size_t i = 0; i < n; ++i) {
            const auto& b = chain.buffers[i];
            mem_.write(GuestAddress{table.value + 16 * i},
                       VirtqDesc{b.addr.value, b.len, flags_of(b, i + 1 == n),
                                 static_cast<uint16_t>(i + 1)});
        }
        write_descriptor(
            head, VirtqDesc{table.value, static_cast<uint32_t>(16 * n), kDescFlagIndirect, 0});
    } else {
        for (size_t i = 0; i < need; ++i) {
            const auto& b = chain.buffers[i];
            const bool last = i + 1 == need;
            write_descriptor(descs[i], VirtqDesc{b.addr.value, b.len, flags_of(b, last),
                                                 last ? uint16_t{0} : descs[i + 1]});
        }
    }
    chain_descs_[head] = std::move(descs);
    push_avail_raw(head);
    return head;
}

void GuestDriver::take_outstanding(uint16_t head) {
    if (head >= in_flight_.size()) throw DriverError("head beyond queue size");
    if (in_flight_[head] != 0)
        throw DriverError(fmt::format("head {} made available while still outstanding", head));
    in_flight_[head] = 1;
    ++outstanding_count_;
}

void GuestDriver::push_avail_raw(uint16_t head) {
    if (head < in_flight_.size()) take_outstanding(head);
    const uint16_t slot = avail_idx_ & static_cast<uint16_t>(queue_.size - 1);
    mem_.write<uint16_t>(GuestAddress{queue_.avail_ring.value + 4 + 2ull * slot}, head);
    ++avail_idx_;
    if (hold_avail_) return;
    // Release: the descriptors and the ring entry are visible before the new
    // index; pairs with the device's acquire load of avail.idx (Virtqueue::pop).
    mem_.store_release<uint16_t>(GuestAddress{queue_.avail_ring.value + 2}, avail_idx_);
}

void GuestDriver::hold_avail(bool hold) {
    hold_avail_ = hold;
    // Release: as in push_avail_raw, for every entry added while held.
    if (!hold) mem_.store_release<uint16_t>(GuestAddress{queue_.avail_ring.value + 2}, avail_idx_);
}

void GuestDriver::set_avail_idx_raw(uint16_t idx) {
    avail_idx_ = idx;
    mem_.store_release<uint16_t>(GuestAddress{queue_.avail_ring.value + 2}, idx);
}

void GuestDriver::set_avail_flags(uint16_t flags) {
    mem_.store_release<uint16_t>(queue_.avail_ring, flags);
}

void GuestDriver::set_used_event(uint16_t idx) {
    mem_.store_release<uint16_t>(GuestAddress{queue_.avail_ring.value + 4 + 2ull * queue_.size},
                                 idx);
}

uint16_t GuestDriver::avail_event() const {
    return mem_.load_acquire<uint16_t>(
        GuestAddress{queue_.used_ring.value + 4 + 8ull * queue_.size});
}

uint16_t GuestDriver::used_idx() const {
    return mem_.load_acquire<uint16_t>(GuestAddress{queue_.used_ring.value + 2});
}

bool GuestDriver::kick() {
    const uint16_t old = kicked_idx_;
    kicked_idx_ = avail_idx_;
    // Full fence: avail.idx is visible before we read the device's
    // suppression state; pairs with the fence in Virtqueue::enable_notifications.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    bool notify = true;
    if (queue_.event_idx) {
        const auto avail_event = mem_.load_relaxed<uint16_t>(
            GuestAddress{queue_.used_ring.value + 4 + 8ull * queue_.size});
        notify = need_event(avail_event, avail_idx_, old);
    } else {
        notify = (mem_.load_relaxed<uint16_t>(queue_.used_ring) & kUsedFlagNoNotify) == 0;
    }
    if (notify) {
        ++kicks_;
        write32(mmio::kQueueNotify, queue_index_);
    }
    return notify;
}

uint32_t GuestDriver::wait_interrupt(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        pollfd p{transport_->interrupt_event().fd(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0))) <= 0) return 0;
        transport_->interrupt_event().drain();
        const uint32_t status = read32(mmio::kInterruptStatus);
        write32(mmio::kInterruptAck, status);
        // Zero: an earlier wakeup already read and acked the bit this
        // eventfd signal was for (the device sets the status, then signals,
        // so a read can land between the two). Linux's vm_interrupt answers
        // IRQ_NONE and waits on; so do we.
        if (status != 0) return status;
    }
}

uint32_t GuestDriver::wait_interrupt(std::chrono::microseconds halt_poll,
                                     std::chrono::milliseconds timeout) {
    if (halt_poll.count() > 0) {
        const auto until = std::chrono::steady_clock::now() + halt_poll;
        for (unsigned spins = 1;; ++spins) {
            // Lock-free in the transport: no contention with the I/O thread.
            if (const uint32_t status = read32(mmio::kInterruptStatus); status != 0) {
                // The device sets the status before it signals the eventfd:
                // drain what is there so the next sleep does not wake for
                // this interrupt. A signal landing after the drain costs one
                // spurious wakeup, which the sleeping path ignores (status 0).
                transport_->interrupt_event().drain();
                write32(mmio::kInterruptAck, status);
                return status;
            }
            // Reading the clock costs more than a spin: every 64th only.
            if (spins % 64 == 0 && std::chrono::steady_clock::now() >= until) break;
            __builtin_ia32_pause();
        }
    }
    return wait_interrupt(timeout);
}

void GuestDriver::free_chain(uint16_t head) {
    for (auto d : chain_descs_[head])
        free_.push_back(d);
    chain_descs_[head].clear();
}

std::vector<VirtqUsedElem> GuestDriver::reap() {
    std::vector<VirtqUsedElem> out;
    // Acquire: pairs with the device's release store of used.idx
    // (Virtqueue::publish_used_idx), so the elements below are complete.
    const uint16_t used = used_idx();
    if (static_cast<uint16_t>(used - last_used_) > queue_.size)
        throw DriverError(fmt::format("used.idx jumped from {} to {}", last_used_, used));
    while (last_used_ != used) {
        const uint16_t slot = last_used_ & static_cast<uint16_t>(queue_.size - 1);
        const auto e =
            mem_.read<VirtqUsedElem>(GuestAddress{queue_.used_ring.value + 4 + 8ull * slot});
        if (e.id >= queue_.size || in_flight_[e.id] == 0)
            throw DriverError(fmt::format("device returned head {} that is not outstanding", e.id));
        in_flight_[e.id] = 0;
        --outstanding_count_;
        free_chain(static_cast<uint16_t>(e.id));
        out.push_back(e);
        ++last_used_;
    }
    if (queue_.event_idx) {
        // Ask for an interrupt at the next completion (Linux virtqueue_enable_cb).
        mem_.store_release<uint16_t>(GuestAddress{queue_.avail_ring.value + 4 + 2ull * queue_.size},
                                     last_used_);
    }
    return out;
}

uint32_t GuestDriver::run(const Chain& chain, std::chrono::milliseconds timeout) {
    const uint16_t head = submit(chain);
    kick();
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        for (const auto& e : reap())
            if (e.id == head) return e.len;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) throw DriverError(fmt::format("head {} never completed", head));
        wait_interrupt(std::min(left, std::chrono::milliseconds(50)));
    }
}

} // namespace ember::testing
