// A software guest driver for the native tests and the benchmark: it plays the
// Linux virtio-mmio driver against a VirtioMmioTransport over a GuestMemory,
// calling the transport's register read/write exactly as a vcpu exit would.
//
// It lays out one split ring per queue, negotiates features, builds chains
// with a fluent builder (direct or indirect), follows EVENT_IDX for kicks and
// interrupts, and checks that every head it made available comes back
// exactly once (a duplicate or unknown head throws DriverError).
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/virtio_spec.h"
#include "vmm/guest_memory.h"

namespace ember::testing {

// The device misbehaved as seen from the driver (a head returned twice, an
// unknown head, a used.idx jump). Tests let it propagate as a failure.
class DriverError : public std::logic_error {
  public:
    using std::logic_error::logic_error;
};

struct DriverBuffer {
    GuestAddress addr;
    uint32_t len;
    bool writable;
};

struct Chain {
    std::vector<DriverBuffer> buffers;
    bool indirect{false};
};

class GuestDriver;

class ChainBuilder final {
  public:
    explicit ChainBuilder(GuestDriver& driver) : driver_(driver) {}
    // Copies `bytes` into a fresh guest buffer, device-readable.
    ChainBuilder& readable(std::span<const uint8_t> bytes);
    ChainBuilder& readable(GuestAddress addr, uint32_t len);
    // A fresh guest buffer of `len` bytes filled with 0xa5, device-writable.
    ChainBuilder& writable(uint32_t len);
    ChainBuilder& writable(GuestAddress addr, uint32_t len);
    // Put the whole chain in one indirect table (§2.7.5.3).
    ChainBuilder& indirect(bool on = true);
    Chain build() { return std::move(chain_); }

  private:
    GuestDriver& driver_;
    Chain chain_;
};

struct DriverOptions {
    uint16_t queue_size{256};
    // Rings first, then a bump heap for buffers, indirect tables after it.
    GuestAddress ring_base{0x1'0000};
    GuestAddress heap_base{0x10'0000};
};

class GuestDriver final {
  public:
    GuestDriver(const GuestMemory& mem, VirtioMmioTransport& transport, DriverOptions options = {});

    // --- Registers, as a vcpu would access them ---------------------------------
    uint32_t read32(uint64_t offset);
    void write32(uint64_t offset, uint32_t value);
    uint64_t device_features();

    // --- Initialisation (virtio 1.2 §3.1.1) -------------------------------------
    // Reset, ACKNOWLEDGE, DRIVER, then write exactly `features`; returns
    // whether the device kept FEATURES_OK.
    bool negotiate(uint64_t features);
    // Lays out queue `index` (size from options) and sets it ready.
    void setup_queue(uint16_t index);
    void driver_ok();
    // All of the above for queue 0 with `features` (default: everything offered).
    void init(uint64_t features = ~0ull);
    void reset() { write32(virtio::mmio::kStatus, 0); }
    uint64_t features() const noexcept { return features_; }
    // A second driver object for another queue of the same device (one
    // object drives one queue): takes the features the first negotiated,
    // then setup_queue(its index) before the first one's driver_ok().
    void share_features(uint64_t features) noexcept { features_ = features; }
    // A restored VM: the same driver state (rings, outstanding heads) now
    // talks to a new device that took over from a snapshot.
    void rebind(VirtioMmioTransport& transport) noexcept { transport_ = &transport; }

    // --- Guest memory --------------------------------------------------------
    GuestAddress alloc(uint64_t len, uint64_t align = 16);
    // Forgets every buffer allocated since the queue was set up.
    void free_all() noexcept { heap_next_ = heap_floor_; }
    const GuestMemory& memory() const noexcept { return mem_; }

    // --- Requests ------------------------------------------------------------
    ChainBuilder chain() { return ChainBuilder(*this); }
    // Writes descriptors (or an indirect table) and the avail entry, and
    // publishes avail.idx. Returns the head. Throws DriverError when no
    // descriptors are free.
    uint16_t submit(const Chain& chain);
    // While held, submit() writes chains and ring entries but not avail.idx;
    // releasing publishes them all with one store, so a device that is awake
    // meanwhile cannot take some of them early.
    void hold_avail(bool hold);
    // Notifies the device unless EVENT_IDX says it does not want a kick.
    // Returns whether it wrote QueueNotify.
    bool kick();
    // Waits for the irq eventfd, then reads and acks InterruptStatus like
    // Linux's vm_interrupt. Returns the status bits, 0 on timeout; a wakeup
    // whose bits an earlier call already acked is spurious and ignored.
    uint32_t wait_interrupt(std::chrono::milliseconds timeout = std::chrono::seconds(5));
    // The same for a vcpu that halts under KVM's halt polling (halt_poll_ns):
    // first spin up to `halt_poll` on InterruptStatus, the analogue of KVM
    // polling the vcpu's pending interrupts, and sleep only after that.
    uint32_t wait_interrupt(std::chrono::microseconds halt_poll, std::chrono::milliseconds timeout);
    // Takes every new used element; each head must be outstanding. With
    // EVENT_IDX, re-arms used_event to interrupt on the next completion.
    std::vector<virtio::VirtqUsedElem> reap();
    // submit + kick + wait until that head comes back; returns its used len.
    uint32_t run(const Chain& chain, std::chrono::milliseconds timeout = std::chrono::seconds(5));
    size_t outstanding() const noexcept { return outstanding_count_; }
    size_t free_descriptors() const noexcept { return free_.size(); }

    // --- Raw ring access for malformed-ring tests --------------------------------
    void write_descriptor(uint16_t index, const virtio::VirtqDesc& desc);
    // Puts `head` in the next avail slot and publishes avail.idx; tracks the
    // head as outstanding (its descriptors are not taken from the free list).
    void push_avail_raw(uint16_t head);
    void set_avail_idx_raw(uint16_t idx);
    void set_avail_flags(uint16_t flags);
    // EVENT_IDX fields: used_event (driver's) and avail_event (device's).
    void set_used_event(uint16_t idx);
    uint16_t avail_event() const;
    uint16_t used_idx() const;
    const QueueState& queue() const noexcept { return queue_; }
    uint64_t kicks() const noexcept { return kicks_; }

  private:
    void take_outstanding(uint16_t head);
    void free_chain(uint16_t head);

    const GuestMemory& mem_;
    VirtioMmioTransport* transport_;
    DriverOptions options_;
    uint64_t features_{0};
    QueueState queue_{};
    uint64_t heap_next_{0};
    uint64_t heap_floor_{0};
    GuestAddress indirect_area_{};
    std::vector<uint16_t> free_;
    std::vector<std::vector<uint16_t>> chain_descs_; // per head: descriptors it uses
    std::vector<uint8_t> in_flight_;                 // per head: 1 while outstanding
    size_t outstanding_count_{0};
    uint16_t avail_idx_{0};
    bool hold_avail_{false};
    uint16_t kicked_idx_{0};
    uint16_t queue_index_{0}; // the queue setup_queue() laid out; kicks name it
    uint16_t last_used_{0};
    uint64_t kicks_{0};
};

} // namespace ember::testing
