// What a virtio device model provides to its transport, and what the
// transport gives the device when the driver sets DRIVER_OK.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "devices/virtio/inflight_region.h"
#include "devices/virtio/virtqueue.h"
#include "vmm/guest_memory.h"
#include "vmm/unique_fd.h"

namespace ember {

// What restart_io() found and did (logged; counted by the crash suite).
struct IoRecovery {
    uint32_t inflight{0};    // entries in flight once the old I/O thread was gone
    uint32_t completed{0};   // of those, published before the crash: cleared, not redone
    uint32_t resubmitted{0}; // handed to the fresh I/O thread, oldest first
};

// The device's way back to the driver, implemented by the transport. Safe to
// call from the device's I/O thread: atomics and an eventfd write only.
class DeviceSignals {
  public:
    // Sets InterruptStatus "used buffer" and signals the irqfd (§4.2.2).
    virtual void used_buffer_notification() noexcept = 0;
    // Sets DEVICE_NEEDS_RESET (§2.1.2) and raises a configuration change
    // interrupt when the driver is running. `why` is logged.
    virtual void needs_reset(std::string_view why) noexcept = 0;
    // The I/O thread stopped itself at a restart-io fault point (vmm/fault),
    // after waiting for its host I/O; its last act. Someone on another thread
    // must call restart_io() (it joins the old thread).
    virtual void io_thread_lost(std::string_view why) noexcept = 0;

  protected:
    ~DeviceSignals() = default;
};

struct ActivationContext {
    const GuestMemory& memory;
    uint64_t features;                  // negotiated: offered & accepted
    std::span<const QueueState> queues; // one per device queue; validated when ready
    std::span<const EventFd> notify;    // one per queue: the guest's kicks
    DeviceSignals& signals;
    // One per queue (null for a queue that is not ready), owned by the
    // transport. Fresh activation: already activated from the ring. With
    // `recover` (restore): loaded from a snapshot; the device must recover()
    // each one and resubmit what is in flight before new avail entries.
    std::span<InflightRegion* const> inflight{};
    bool recover{false};
};

class VirtioDevice {
  public:
    virtual ~VirtioDevice() = default;
    virtual std::string_view name() const = 0;
    virtual uint32_t device_id() const = 0;
    // Offered features, including VERSION_1 and the ring features.
    virtual uint64_t device_features() const = 0;
    // Device configuration space (§4.2.2 offset 0x100+). Bytes beyond the
    // structure read as 0; the device ignores writes it does not support.
    virtual void read_config(uint64_t offset, std::span<uint8_t> data) const = 0;
    virtual void write_config(uint64_t offset, std::span<const uint8_t> data) = 0;
    virtual uint16_t queue_count() const = 0;
    virtual uint16_t queue_max_size(uint16_t index) const = 0;
    // DRIVER_OK: start processing. Throws ember::Error when the device cannot
    // start; the transport then asks the driver for a reset.
    virtual void activate(const ActivationContext& ctx) = 0;
    // Status 0 or VMM shutdown: stop processing and forget the queues. Returns
    // only when the device no longer touches guest memory.
    virtual void reset() noexcept = 0;

    // A device whose work per request is short and needs no host I/O (the
    // entropy device) may take its kicks on the vcpu that wrote QueueNotify,
    // inside that MMIO exit: no ioeventfd, no thread of its own. The VMM then
    // registers no KVM_IOEVENTFD for it, and the transport calls kick() under
    // its register lock, only while the device is active. Such a device never
    // has a request in flight between two exits, so a checkpoint (taken with
    // the vcpus parked between exits) never finds one.
    virtual bool kicks_inline() const { return false; }
    virtual void kick(uint16_t /*queue*/) {}

    // --- Checkpoints (DESIGN.md "Checkpoint and restore") ---------------------------
    // The main thread calls these with the vcpus paused. A device without
    // I/O threads has nothing to park: the defaults do nothing.
    //
    // Parks every I/O thread at its next park point (quiesce.h); host I/O already
    // submitted is not drained. Throws ember::Error when a thread does not park.
    virtual void quiesce() {}
    virtual void unquiesce() noexcept {}
    // Throws away the I/O threads and all their in-memory state and starts
    // fresh ones that recover from guest memory and the in-flight regions.
    virtual IoRecovery restart_io() { return {}; }
    // Bytes of the device configuration space (compared on restore).
    virtual uint16_t config_size() const { return 0; }
    // The device's runtime state in one line, for `kill -USR2` dumps of a
    // stalled guest. The transport calls it under its register lock.
    virtual std::string describe() { return {}; }
};

} // namespace ember
