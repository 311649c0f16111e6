#include "devices/virtio/mmio_transport.h"

#include <cstring>

#include <fmt/format.h>

#include "vmm/log.h"

namespace ember {

using namespace virtio;

namespace {
uint32_t low(uint64_t v) {
    return static_cast<uint32_t>(v);
}
uint32_t high(uint64_t v) {
    return static_cast<uint32_t>(v >> 32);
}
void set_low(GuestAddress& a, uint32_t v) {
    a.value = (a.value & ~0xffffffffull) | v;
}
void set_high(GuestAddress& a, uint32_t v) {
    a.value = (a.value & 0xffffffffull) | (static_cast<uint64_t>(v) << 32);
}
} // namespace

VirtioMmioTransport::VirtioMmioTransport(const GuestMemory& mem,
                                         std::unique_ptr<VirtioDevice> device, EventFd irq)
    : mem_(mem), device_(std::move(device)), irq_(std::move(irq)) {
    if (!device_) throw Error("virtio-mmio transport needs a device");
    name_ = fmt::format("virtio-mmio({})", device_->name());
    const uint16_t n = device_->queue_count();
    notify_.resize(n);
    queues_.resize(n);
}

VirtioMmioTransport::~VirtioMmioTransport() {
    shutdown();
}

void VirtioMmioTransport::shutdown() noexcept {
    std::lock_guard lock(regs_mutex_);
    if (active_) device_->reset();
    active_ = false;
    start_pending_ = false;
    quiesced_ = false;
    inflight_.clear();
}

std::string VirtioMmioTransport::describe() {
    // The lock keeps the device from being reset or restarted under us; the
    // I/O thread never takes it, so asking it (VirtioBlock) cannot deadlock.
    std::lock_guard lock(regs_mutex_);
    auto s = fmt::format("{}: status={:#x} interrupt_status={:#x}", name_, status(), interrupt_status());
    if (!active_) return s + " (not active)";
    if (quiesced_) s += " (quiesced)";
    return s + ": " + device_->describe();
}

void VirtioMmioTransport::refuse(std::string_view what, uint64_t offset, uint64_t value) noexcept {
    const uint64_t n = bad_accesses_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (log::worth_logging(n))
        log::warn("{}: ignored {} (offset {:#x}, value {:#x}; ignored accesses so far: {})", name_,
                  what, offset, value, n);
}

// --- Interrupts from the I/O thread ------------------------------------------------

void VirtioMmioTransport::used_buffer_notification() noexcept {
    // Release: pairs with the acquire load in the vcpu's InterruptStatus read;
    // the used ring itself is ordered by the release store of used.idx.
    interrupt_status_.fetch_or(kInterruptUsedBuffer, std::memory_order_release);
    irq_.signal();
}

void VirtioMmioTransport::needs_reset(std::string_view why) noexcept {
    // A guest can ask for this in a loop (reset, a bad ring, QueueReady).
    const uint64_t n = needs_reset_events_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (log::worth_logging(n)) log::warn("{}: device needs reset: {} (so far: {})", name_, why, n);
    // acq_rel: pairs with the vcpu's status loads and stores (write_status).
    const uint32_t old = status_.fetch_or(kStatusNeedsReset, std::memory_order_acq_rel);
    // §2.1.2: notify only once the driver is running (DRIVER_OK).
    if ((old & kStatusDriverOk) != 0 && (old & kStatusNeedsReset) == 0) {
        interrupt_status_.fetch_or(kInterruptConfigChange, std::memory_order_release);
        irq_.signal();
    }
}

void VirtioMmioTransport::io_thread_lost(std::string_view why) noexcept {
    if (io_lost_) {
        try {
            io_lost_(*this);
            return;
        } catch (const std::exception& e) {
            log::error("{}: cannot hand the lost I/O thread over: {}", name_, e.what());
        }
    }
    needs_reset(fmt::format("the I/O thread stopped ({}) and nothing restarts it", why));
}

// --- Register access -----------------------------------------------------------------

void VirtioMmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
    if (offset >= mmio::kConfig) {
        std::lock_guard lock(regs_mutex_);
        device_->read_config(offset - mmio::kConfig, data);
        return;
    }
    // §4.2.2.2: the driver uses 32-bit aligned accesses for registers.
    if (data.size() != 4 || offset % 4 != 0) {
        std::memset(data.data(), 0, data.size());
        refuse(fmt::format("{}-byte register read", data.size()), offset, 0);
        return;
    }
    const uint32_t v = read_register(offset);
    std::memcpy(data.data(), &v, 4);
}

uint32_t VirtioMmioTransport::read_register(uint64_t offset) {
    switch (offset) {
    case mmio::kMagicValue:
        return mmio::kMagic;
    case mmio::kVersion:
        return mmio::kVersion2;
    case mmio::kDeviceId:
        return device_->device_id();
    case mmio::kVendorId:
        return mmio::kVendor;
    // Lock-free: read by the guest's interrupt handler on any vcpu.
    case mmio::kInterruptStatus:
        return interrupt_status();
    case mmio::kStatus:
        return status();
    case mmio::kConfigGeneration:
        return 0; // the block config never changes
    // §4.2.2: no shared memory regions: the length of any region reads as -1.
    case mmio::kShmLenLow:
    case mmio::kShmLenHigh:
    case mmio::kShmBaseLow:
    case mmio::kShmBaseHigh:
        return 0xffffffff;
    default:
        break;
    }
    std::lock_guard lock(regs_mutex_);
    const bool queue_exists = queue_sel_ < queues_.size();
    switch (offset) {
    case mmio::kDeviceFeatures: {
        const uint64_t f = device_->device_features();
        return device_features_sel_ == 0 ? low(f) : device_features_sel_ == 1 ? high(f) : 0;
    }
    case mmio::kQueueNumMax:
        // §4.2.3.2: 0 means "this queue is not available".
        return queue_exists ? device_->queue_max_size(static_cast<uint16_t>(queue_sel_)) : 0;
    case mmio::kQueueReady:
        return queue_exists && queues_[queue_sel_].ready ? 1 : 0;
    case mmio::kQueueNum:
        return queue_exists ? queues_[queue_sel_].size : 0;
    default:
        break;
    }
    refuse("read of a write-only or unknown register", offset, 0);
    return 0;
}

void VirtioMmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
    if (offset >= mmio::kConfig) {
        std::lock_guard lock(regs_mutex_);
        device_->write_config(offset - mmio::kConfig, data);
        return;
    }
    uint32_t v = 0;
    if (data.size() != 4 || offset % 4 != 0) {
        std::memcpy(&v, data.data(), std::min<size_t>(data.size(), 4));
        refuse(fmt::format("{}-byte register write", data.size()), offset, v);
        return;
    }
    std::memcpy(&v, data.data(), 4);
    write_register(offset, v);
}

void VirtioMmioTransport::write_register(uint64_t offset, uint32_t value) {
    switch (offset) {
    case mmio::kQueueNotify:
        if (value >= notify_.size()) {
            refuse("notify of a queue that does not exist", offset, value);
        } else if (device_->kicks_inline()) {
            std::lock_guard lock(regs_mutex_);
            // A kick before DRIVER_OK or after a reset has no queue to act on.
            if (active_) device_->kick(static_cast<uint16_t>(value));
        } else {
            // Reaches us only without KVM_IOEVENTFD (tests): the same eventfd the
            // ioeventfd would signal, so the I/O thread sees one kind of kick.
            notify_[value].signal();
        }
        return;
    case mmio::kInterruptAck:
        // Release: pairs with the acquire in the I/O thread's next fetch_or; an
        // interrupt raised after this ack stays pending.
        interrupt_status_.fetch_and(~value, std::memory_order_release);
        return;
    default:
        break;
    }
    std::lock_guard lock(regs_mutex_);
    const uint32_t status = status_.load(std::memory_order_acquire);
    switch (offset) {
    case mmio::kDeviceFeaturesSel:
        device_features_sel_ = value;
        return;
    case mmio::kDriverFeaturesSel:
        driver_features_sel_ = value;
        return;
    case mmio::kDriverFeatures:
        // §3.1.1: features are fixed once FEATURES_OK is set.
        if ((status & kStatusFeaturesOk) != 0) {
            refuse("DriverFeatures write after FEATURES_OK", offset, value);
        } else if (driver_features_sel_ == 0) {
            driver_features_ = (driver_features_ & ~0xffffffffull) | value;
        } else if (driver_features_sel_ == 1) {
            driver_features_ = (driver_features_ & 0xffffffffull) | (uint64_t{value} << 32);
        } else if (value != 0) {
            driver_features_beyond_64_ = true; // never offered: FEATURES_OK will fail
        }
        return;
    case mmio::kQueueSel:
        queue_sel_ = value;
        return;
    case mmio::kStatus:
        write_status(value);
        return;
    case mmio::kQueueNum:
    case mmio::kQueueReady:
    case mmio::kQueueDescLow:
    case mmio::kQueueDescHigh:
    case mmio::kQueueDriverLow:
    case mmio::kQueueDriverHigh:
    case mmio::kQueueDeviceLow:
    case mmio::kQueueDeviceHigh:
        write_queue_register(offset, value);
        return;
    case mmio::kShmSel:
        return; // no shared memory regions; harmless
    default:
        break;
    }
    refuse("write to a read-only or unknown register", offset, value);
}

void VirtioMmioTransport::write_queue_register(uint64_t offset, uint32_t value) {
    if (queue_sel_ >= queues_.size()) {
        refuse(fmt::format("queue setup of missing queue {}", queue_sel_), offset, value);
        return;
    }
    auto& q = queues_[queue_sel_];
    const uint32_t status = status_.load(std::memory_order_acquire);
    if ((status & kStatusDriverOk) != 0) {
        refuse("queue setup after DRIVER_OK", offset, value);
        return;
    }
    if (offset == mmio::kQueueReady) {
        if (value == 0) {
            q.ready = false;
            return;
        }
        if (value != 1) {
            refuse("QueueReady value other than 0 or 1", offset, value);
            return;
        }
        // Validated once here (DESIGN.md); per access only the index is checked.
        if (auto why = q.validate(mem_)) {
            refuse(fmt::format("QueueReady for queue {}: {}", queue_sel_, *why), offset, value);
            needs_reset(*why);
            return;
        }
        q.ready = true;
        return;
    }
    if (q.ready) {
        refuse("queue setup while the queue is ready", offset, value);
        return;
    }
    switch (offset) {
    case mmio::kQueueNum: {
        const uint32_t max = device_->queue_max_size(static_cast<uint16_t>(queue_sel_));
        if (value == 0 || value > max || (value & (value - 1)) != 0) {
            refuse(fmt::format("QueueNum not a power of two in [1, {}]", max), offset, value);
            return;
        }
        q.size = static_cast<uint16_t>(value);
        return;
    }
    case mmio::kQueueDescLow:
        set_low(q.desc_table, value);
        return;
    case mmio::kQueueDescHigh:
        set_high(q.desc_table, value);
        return;
    case mmio::kQueueDriverLow:
        set_low(q.avail_ring, value);
        return;
    case mmio::kQueueDriverHigh:
        set_high(q.avail_ring, value);
        return;
    case mmio::kQueueDeviceLow:
        set_low(q.used_ring, value);
        return;
    case mmio::kQueueDeviceHigh:
        set_high(q.used_ring, value);
        return;
    default:
        break;
    }
}

// Device status state machine (virtio 1.2 §2.1, §3.1.1).
void VirtioMmioTransport::write_status(uint32_t value) {
    if (value == 0) {
        reset_locked();
        return;
    }
    const uint32_t old = status_.load(std::memory_order_acquire);
    // NEEDS_RESET belongs to the device: keep ours, ignore the driver's copy.
    uint32_t next = (value & ~kStatusNeedsReset) | (old & kStatusNeedsReset);
    const uint32_t driver_bits = old & ~kStatusNeedsReset;
    if ((next & driver_bits) != driver_bits) {
        refuse("Status write clearing bits other than by reset", mmio::kStatus, value);
        return;
    }
    const uint32_t added = next & ~old;
    if ((added & kStatusFeaturesOk) != 0) {
        const uint64_t offered = device_->device_features();
        const bool handshake =
            (next & (kStatusAcknowledge | kStatusDriver)) == (kStatusAcknowledge | kStatusDriver);
        const uint64_t unoffered = driver_features_ & ~offered;
        if (!handshake || unoffered != 0 || driver_features_beyond_64_ ||
            (driver_features_ & kFeatureVersion1) == 0) {
            // §2.2.2: the device leaves FEATURES_OK clear; the driver reads it back.
            refuse(fmt::format("FEATURES_OK for features {:#x} (unoffered {:#x}, VERSION_1 {})",
                               driver_features_, unoffered,
                               (driver_features_ & kFeatureVersion1) != 0 ? "accepted" : "missing"),
                   mmio::kStatus, value);
            next &= ~kStatusFeaturesOk;
        }
    }
    if ((added & kStatusDriverOk) != 0 && (next & kStatusFeaturesOk) == 0) {
        refuse("DRIVER_OK without FEATURES_OK", mmio::kStatus, value);
        next &= ~kStatusDriverOk;
    }
    // acq_rel: pairs with the I/O thread's fetch_or in needs_reset(); a
    // NEEDS_RESET set meanwhile is kept.
    uint32_t expected = old;
    while (!status_.compare_exchange_weak(expected, next | (expected & kStatusNeedsReset),
                                          std::memory_order_acq_rel)) {
    }
    if ((next & ~old & kStatusDriverOk) != 0) activate_locked();
}

void VirtioMmioTransport::activate_locked(bool recover) {
    std::vector<InflightRegion*> regions(queues_.size(), nullptr);
    try {
        if (!recover) inflight_.clear();
        inflight_.resize(queues_.size());
        for (uint16_t i = 0; i < queues_.size(); ++i) {
            auto& q = queues_[i];
            q.event_idx = (driver_features_ & kFeatureRingEventIdx) != 0;
            q.indirect = (driver_features_ & kFeatureRingIndirectDesc) != 0;
            if (!q.ready) continue;
            if (!recover) {
                // DESIGN.md pitfall: the header starts from the ring's used.idx
                // and a sentinel last_batch_head, never from stale zeroes.
                inflight_[i] = std::make_unique<InflightRegion>(q.size);
                inflight_[i]->activate(
                    mem_.load_acquire<uint16_t>(GuestAddress{q.used_ring.value + 2}));
            }
            regions[i] = inflight_[i].get();
        }
        device_->activate(
            ActivationContext{mem_, driver_features_, queues_, notify_, *this, regions, recover});
        active_ = true;
    } catch (const std::exception& e) {
        if (recover) throw;
        inflight_.clear();
        needs_reset(fmt::format("activation failed: {}", e.what()));
    }
}

void VirtioMmioTransport::quiesce() {
    std::lock_guard lock(regs_mutex_);
    if (active_) device_->quiesce();
    quiesced_ = true;
}

void VirtioMmioTransport::unquiesce() noexcept {
    std::lock_guard lock(regs_mutex_);
    if (active_) device_->unquiesce();
    quiesced_ = false;
}

uint32_t VirtioMmioTransport::inflight_requests() const {
    uint32_t n = 0;
    for (const auto& r : inflight_)
        if (r) n += r->count_inflight();
    return n;
}

const InflightRegion* VirtioMmioTransport::inflight_region(uint16_t index) const {
    return index < inflight_.size() ? inflight_[index].get() : nullptr;
}

IoRecovery VirtioMmioTransport::restart_io() {
    std::lock_guard lock(regs_mutex_);
    if (!active_) return {};
    try {
        return device_->restart_io();
    } catch (const std::exception& e) {
        needs_reset(fmt::format("restarting the I/O thread failed: {}", e.what()));
        throw;
    }
}

void VirtioMmioTransport::reset_locked() noexcept {
    // The I/O thread is gone before the state it could still signal is cleared.
    if (active_) device_->reset();
    active_ = false;
    start_pending_ = false;
    quiesced_ = false;
    inflight_.clear();
    device_features_sel_ = 0;
    driver_features_sel_ = 0;
    driver_features_ = 0;
    driver_features_beyond_64_ = false;
    queue_sel_ = 0;
    for (auto& q : queues_)
        q = QueueState{};
    for (auto& n : notify_)
        n.drain();
    interrupt_status_.store(0, std::memory_order_release);
    status_.store(0, std::memory_order_release);
}

} // namespace ember
