// Saving and restoring a virtio-mmio device for a snapshot (DESIGN.md
// "Checkpoint and restore"): VirtioMmioTransport::save_state/restore_state.
//
// Blob format, version 1, little-endian, no padding:
//   magic "EVMS" (4 bytes), u8 version = 1
//   u32 device_id, u64 device_features (offered), u16 queue_count
//   u32 status, u32 device_features_sel, u32 driver_features_sel,
//   u64 driver_features, u8 driver_features_beyond_64, u32 queue_sel,
//   u32 interrupt_status, u32 config_generation, u8 active
//   u16 config_len, config bytes (the device configuration space)
//   per queue: u16 size, u8 ready, u64 desc, u64 driver area, u64 device area,
//              u8 event_idx, u8 indirect, u16 used_idx (guest memory at save),
//              u16 inflight count (informative), u32 region_len, region bytes
//              (inflight_region_bytes(size) when active and ready, else 0)
// Nothing may follow. The snapshot writer adds a CRC per section.
#include <cstring>

#include <fmt/format.h>

#include "devices/virtio/mmio_transport.h"
#include "vmm/log.h"

namespace ember {

using namespace virtio;

namespace {

constexpr char kMagic[4] = {'E', 'V', 'M', 'S'};
constexpr uint8_t kStateVersion = 1;
constexpr uint32_t kKnownStatus = kStatusAcknowledge | kStatusDriver | kStatusDriverOk |
                                  kStatusFeaturesOk | kStatusNeedsReset | kStatusFailed;

class Writer final {
  public:
    template <typename T>
    void put(T v) {
        static_assert(std::is_trivially_copyable_v<T>);
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        out_.insert(out_.end(), p, p + sizeof v);
    }
    void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
    std::vector<uint8_t> take() { return std::move(out_); }

  private:
    std::vector<uint8_t> out_;
};

class Reader final {
  public:
    explicit Reader(std::span<const uint8_t> in) : in_(in) {}
    template <typename T>
    T get(const char* what) {
        T v;
        std::memcpy(&v, need(sizeof v, what).data(), sizeof v);
        return v;
    }
    std::span<const uint8_t> bytes(size_t n, const char* what) { return need(n, what); }
    size_t left() const noexcept { return in_.size() - at_; }

  private:
    std::span<const uint8_t> need(size_t n, const char* what) {
        if (n > left())
            throw DeviceStateError(fmt::format("device state is truncated: {} needs {} bytes, "
                                               "{} left",
                                               what, n, left()));
        auto s = in_.subspan(at_, n);
        at_ += n;
        return s;
    }
    std::span<const uint8_t> in_;
    size_t at_{0};
};

struct SavedQueue {
    QueueState q;
    uint16_t used_idx;
    std::span<const uint8_t> region;
};

} // namespace

std::vector<uint8_t> VirtioMmioTransport::save_state() const {
    std::lock_guard lock(regs_mutex_);
    if (active_ && !quiesced_)
        throw Error(fmt::format("{}: save_state needs the device quiesced first", name_));
    Writer w;
    w.bytes({reinterpret_cast<const uint8_t*>(kMagic), sizeof kMagic});
    w.put<uint8_t>(kStateVersion);
    w.put<uint32_t>(device_->device_id());
    w.put<uint64_t>(device_->device_features());
    w.put<uint16_t>(static_cast<uint16_t>(queues_.size()));
    w.put<uint32_t>(status());
    w.put<uint32_t>(device_features_sel_);
    w.put<uint32_t>(driver_features_sel_);
    w.put<uint64_t>(driver_features_);
    w.put<uint8_t>(driver_features_beyond_64_ ? 1 : 0);
    w.put<uint32_t>(queue_sel_);
    w.put<uint32_t>(interrupt_status());
    w.put<uint32_t>(0); // config generation: no device config ever changes
    w.put<uint8_t>(active_ || start_pending_ ? 1 : 0);
    std::vector<uint8_t> config(device_->config_size());
    device_->read_config(0, config);
    w.put<uint16_t>(static_cast<uint16_t>(config.size()));
    w.bytes(config);
    for (size_t i = 0; i < queues_.size(); ++i) {
        const auto& q = queues_[i];
        w.put<uint16_t>(q.size);
        w.put<uint8_t>(q.ready ? 1 : 0);
        w.put<uint64_t>(q.desc_table.value);
        w.put<uint64_t>(q.avail_ring.value);
        w.put<uint64_t>(q.used_ring.value);
        w.put<uint8_t>(q.event_idx ? 1 : 0);
        w.put<uint8_t>(q.indirect ? 1 : 0);
        const InflightRegion* r = i < inflight_.size() ? inflight_[i].get() : nullptr;
        // Ready queues were validated at QueueReady, so used.idx is in RAM.
        const uint16_t used =
            q.ready ? mem_.load_acquire<uint16_t>(GuestAddress{q.used_ring.value + 2}) : 0;
        w.put<uint16_t>(used);
        w.put<uint16_t>(r != nullptr ? static_cast<uint16_t>(r->count_inflight()) : 0);
        w.put<uint32_t>(r != nullptr ? static_cast<uint32_t>(r->bytes().size()) : 0);
        if (r != nullptr) w.bytes(r->bytes());
    }
    return w.take();
}

void VirtioMmioTransport::restore_state(std::span<const uint8_t> blob, RestoreStart start) {
    std::lock_guard lock(regs_mutex_);
    if (active_ || status() != 0)
        throw DeviceStateError(fmt::format("{}: restore_state needs a freshly created device",
                                           name_));
    // --- Parse and validate everything before changing anything. -----------------
    Reader r(blob);
    const auto magic = r.bytes(4, "magic");
    if (std::memcmp(magic.data(), kMagic, 4) != 0)
        throw DeviceStateError(fmt::format("{}: not a virtio-mmio device state", name_));
    if (const auto v = r.get<uint8_t>("version"); v != kStateVersion)
        throw DeviceStateError(fmt::format("{}: device state version {}, this ember reads "
                                           "version {}",
                                           name_, v, kStateVersion));
    if (const auto id = r.get<uint32_t>("device id"); id != device_->device_id())
        throw DeviceStateError(fmt::format("{}: the snapshot holds virtio device type {}, this "
                                           "is type {}",
                                           name_, id, device_->device_id()));
    const auto offered = r.get<uint64_t>("device features");
    if (offered != device_->device_features())
        throw DeviceStateError(fmt::format("{}: the device offered features {:#x} when saved "
                                           "and offers {:#x} now (were the disk options, e.g. "
                                           "read-only, changed?)",
                                           name_, offered, device_->device_features()));
    if (const auto n = r.get<uint16_t>("queue count"); n != queues_.size())
        throw DeviceStateError(fmt::format("{}: {} queues saved, the device has {}", name_, n,
                                           queues_.size()));
    const auto status = r.get<uint32_t>("status");
    const auto dev_sel = r.get<uint32_t>("device features select");
    const auto drv_sel = r.get<uint32_t>("driver features select");
    const auto driver_features = r.get<uint64_t>("driver features");
    const auto beyond = r.get<uint8_t>("driver features beyond 64");
    const auto queue_sel = r.get<uint32_t>("queue select");
    const auto irq_status = r.get<uint32_t>("interrupt status");
    const auto generation = r.get<uint32_t>("config generation");
    const auto active = r.get<uint8_t>("active");
    if ((status & ~kKnownStatus) != 0 || beyond > 1 || active > 1 ||
        (irq_status & ~(kInterruptUsedBuffer | kInterruptConfigChange)) != 0 || generation != 0)
        throw DeviceStateError(fmt::format("{}: device state has impossible register values "
                                           "(status {:#x}, interrupt status {:#x})",
                                           name_, status, irq_status));
    if ((driver_features & ~offered) != 0)
        throw DeviceStateError(fmt::format("{}: driver features {:#x} were never offered", name_,
                                           driver_features));
    if (active == 1 && ((status & kStatusDriverOk) == 0 || (status & kStatusFeaturesOk) == 0 ||
                        (driver_features & kFeatureVersion1) == 0))
        throw DeviceStateError(
            fmt::format("{}: device state says active with status {:#x}", name_, status));
    const auto config_len = r.get<uint16_t>("config length");
    const auto saved_config = r.bytes(config_len, "config space");
    std::vector<uint8_t> config(device_->config_size());
    device_->read_config(0, config);
    // (An empty config space has no data pointer to give memcmp.)
    if (config_len != config.size() ||
        (!config.empty() && std::memcmp(config.data(), saved_config.data(), config.size()) != 0))
        throw DeviceStateError(fmt::format("{}: the device configuration differs from the "
                                           "snapshot (was the disk resized or replaced?)",
                                           name_));
    std::vector<SavedQueue> saved(queues_.size());
    for (uint16_t i = 0; i < queues_.size(); ++i) {
        auto& s = saved[i];
        s.q.size = r.get<uint16_t>("queue size");
        const auto ready = r.get<uint8_t>("queue ready");
        s.q.desc_table = GuestAddress{r.get<uint64_t>("descriptor table")};
        s.q.avail_ring = GuestAddress{r.get<uint64_t>("driver area")};
        s.q.used_ring = GuestAddress{r.get<uint64_t>("device area")};
        const auto event_idx = r.get<uint8_t>("event idx");
        const auto indirect = r.get<uint8_t>("indirect");
        s.used_idx = r.get<uint16_t>("used idx");
        (void)r.get<uint16_t>("in-flight count");
        const auto region_len = r.get<uint32_t>("region length");
        s.region = r.bytes(region_len, "in-flight region");
        if (ready > 1 || event_idx > 1 || indirect > 1)
            throw DeviceStateError(fmt::format("{}: queue {} has impossible flags", name_, i));
        s.q.ready = ready == 1;
        s.q.event_idx = event_idx == 1;
        s.q.indirect = indirect == 1;
        const uint16_t max = device_->queue_max_size(i);
        if (s.q.size > max)
            throw DeviceStateError(fmt::format("{}: queue {} has size {}, the device allows at "
                                               "most {}",
                                               name_, i, s.q.size, max));
        if (!s.q.ready) {
            if (region_len != 0)
                throw DeviceStateError(
                    fmt::format("{}: queue {} is not ready but has a region", name_, i));
            continue;
        }
        if (auto why = s.q.validate(mem_))
            throw DeviceStateError(fmt::format("{}: queue {}: {}", name_, i, *why));
        if (active == 1) {
            if (s.q.event_idx != ((driver_features & kFeatureRingEventIdx) != 0) ||
                s.q.indirect != ((driver_features & kFeatureRingIndirectDesc) != 0))
                throw DeviceStateError(fmt::format("{}: queue {} ring features disagree with "
                                                   "the negotiated features",
                                                   name_, i));
            if (region_len != inflight_region_bytes(s.q.size))
                throw DeviceStateError(fmt::format("{}: queue {} region has {} bytes, a queue "
                                                   "of {} needs {}",
                                                   name_, i, region_len, s.q.size,
                                                   inflight_region_bytes(s.q.size)));
            const auto used = mem_.load_acquire<uint16_t>(GuestAddress{s.q.used_ring.value + 2});
            if (used != s.used_idx)
                throw DeviceStateError(fmt::format("{}: guest memory does not match the device "
                                                   "state: queue {} used.idx is {}, the "
                                                   "snapshot says {}",
                                                   name_, i, used, s.used_idx));
        } else if (region_len != 0) {
            throw DeviceStateError(
                fmt::format("{}: queue {} has a region but the device is inactive", name_, i));
        }
    }
    if (r.left() != 0)
        throw DeviceStateError(
            fmt::format("{}: {} unexpected bytes after the device state", name_, r.left()));

    // --- Apply. ---------------------------------------------------------------------
    device_features_sel_ = dev_sel;
    driver_features_sel_ = drv_sel;
    driver_features_ = driver_features;
    driver_features_beyond_64_ = beyond == 1;
    queue_sel_ = queue_sel;
    for (uint16_t i = 0; i < queues_.size(); ++i)
        queues_[i] = saved[i].q;
    status_.store(status, std::memory_order_release);
    interrupt_status_.store(irq_status, std::memory_order_release);
    if (active == 0) return;
    try {
        inflight_.clear();
        inflight_.resize(queues_.size());
        for (uint16_t i = 0; i < queues_.size(); ++i) {
            if (!queues_[i].ready) continue;
            inflight_[i] = std::make_unique<InflightRegion>(queues_[i].size);
            inflight_[i]->load(saved[i].region);
            // Validates the untrusted region on a scratch copy: recovery
            // repairs it (e.g. resets last_batch_head), and the device
            // recovers for real when its I/O thread starts; until then the
            // region stays byte for byte as saved (restore --paused, then
            // checkpoint, gives the same state).
            InflightRegion scratch(queues_[i].size);
            scratch.load(saved[i].region);
            const auto plan = scratch.recover(mem_, queues_[i]);
            log::debug("{}: queue {}: {} requests to resubmit, {} repaired", name_, i,
                       plan.resubmit.size(), plan.repaired);
        }
    } catch (const std::exception& e) {
        reset_locked();
        throw DeviceStateError(fmt::format("{}: cannot restore: {}", name_, e.what()));
    }
    start_pending_ = true;
    if (start == RestoreStart::now) start_restored_locked();
}

void VirtioMmioTransport::start_restored() {
    std::lock_guard lock(regs_mutex_);
    start_restored_locked();
}

void VirtioMmioTransport::start_restored_locked() {
    if (!start_pending_) return;
    start_pending_ = false;
    try {
        activate_locked(true);
    } catch (const std::exception& e) {
        reset_locked();
        throw DeviceStateError(fmt::format("{}: cannot restore: {}", name_, e.what()));
    }
    // One interrupt per queue (DESIGN.md): a spurious one is harmless, a lost
    // one hangs the guest. The irqfd keeps the count until KVM_IRQFD is set up.
    for (const auto& q : queues_)
        if (q.ready) used_buffer_notification();
}

} // namespace ember
