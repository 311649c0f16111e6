// The split virtqueue (virtio 1.2 §2.7) as the device sees it.
//
// QueueState is the plain, copyable state a snapshot saves and restores. A
// Virtqueue works on one validated QueueState: it pops whole, validated
// descriptor chains and publishes used elements in batches. It is used by one
// thread only (the device's I/O thread); the driver on the other side is a
// guest vcpu, and every ordering between the two is a named barrier pair.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "devices/virtio/virtio_spec.h"
#include "vmm/errors.h"
#include "vmm/guest_memory.h"

namespace ember {

// Largest queue ember offers (DESIGN.md); the spec allows up to 32768.
inline constexpr uint16_t kMaxQueueSize = 256;

struct QueueState {
    uint16_t size{0}; // QueueNum: a power of two, <= the device's maximum
    bool ready{false};
    GuestAddress desc_table{};
    GuestAddress avail_ring{}; // "driver area"
    GuestAddress used_ring{};  // "device area"
    uint16_t next_avail{0};    // next avail ring slot the device will read
    uint16_t next_used{0};     // used.idx the device last published (+ pending)
    bool event_idx{false};     // VIRTIO_RING_F_EVENT_IDX negotiated
    bool indirect{false};      // VIRTIO_RING_F_INDIRECT_DESC negotiated

    // Checked once when the queue becomes ready: size, alignment of the three
    // parts (§2.7 table "Virtqueue Part Alignment"), all of them inside RAM.
    // Returns why the state is unusable, or nullopt when it is usable.
    std::optional<std::string> validate(const GuestMemory& mem) const;
};

// Why a chain was refused. The device completes such a chain with an error
// status; the queue keeps going.
enum class ChainError : uint8_t {
    none,
    next_out_of_range, // a `next` index outside the table
    too_long,          // more descriptors than the queue size (also: loops)
    zero_length,       // a descriptor of length 0
    out_of_bounds,     // a buffer not inside guest RAM
    readable_after_writable,
    total_too_large, // sum of lengths does not fit in u32
    indirect_not_negotiated,
    nested_indirect,    // §2.7.5.3.1: no INDIRECT inside an indirect table
    indirect_with_next, // §2.7.5.3.1: INDIRECT and NEXT together
    bad_indirect_table, // length 0, not a multiple of 16, or outside RAM
};
std::string_view to_string(ChainError e) noexcept;

// One guest buffer of a chain, already checked to lie inside guest RAM.
struct ChainSegment {
    GuestAddress addr;
    uint32_t len;
    bool writable;
};

// A popped chain. Move-only: exactly one owner hands it back with
// Virtqueue::add_used(), which empties it.
class DescriptorChain final {
  public:
    DescriptorChain() = default;
    DescriptorChain(DescriptorChain&& o) noexcept;
    DescriptorChain& operator=(DescriptorChain&& o) noexcept;
    DescriptorChain(const DescriptorChain&) = delete;
    DescriptorChain& operator=(const DescriptorChain&) = delete;
    ~DescriptorChain() = default;

    // True while this object owns a head that still has to be completed.
    bool owns_head() const noexcept { return owned_; }
    uint16_t head() const noexcept { return head_; }
    bool valid() const noexcept { return error_ == ChainError::none; }
    ChainError error() const noexcept { return error_; }
    // On a refused chain: the segments validated before the error.
    std::span<const ChainSegment> segments() const noexcept { return segments_; }
    uint32_t readable_bytes() const noexcept { return readable_; }
    uint32_t writable_bytes() const noexcept { return writable_; }
    // Back to the empty state, keeping the segments' storage: the I/O thread
    // reuses chains, so a request costs no allocation.
    void clear() noexcept;

  private:
    friend class Virtqueue;
    uint16_t head_{0};
    bool owned_{false};
    ChainError error_{ChainError::none};
    uint32_t readable_{0};
    uint32_t writable_{0};
    std::vector<ChainSegment> segments_;
};

// The ring itself is broken (avail.idx ran ahead by more than the queue size,
// or an avail entry names a head >= size): the device must stop using the
// queue and ask for a reset (virtio 1.2 §2.1.2 DEVICE_NEEDS_RESET).
class VirtqueueError : public Error {
  public:
    using Error::Error;
};

// Hooks for state that must follow each head exactly (the in-flight region of
// DESIGN.md "The two seeds"): called on the I/O thread, in ring order.
class QueueObserver {
  public:
    // After a head was taken from the avail ring (valid chain or not).
    virtual void on_pop(uint16_t head) = 0;
    // After used.idx was release-stored for `batch`, before any interrupt.
    virtual void on_batch_published(std::span<const virtio::VirtqUsedElem> batch,
                                    uint16_t used_idx) = 0;

  protected:
    ~QueueObserver() = default;
};

class Virtqueue final {
  public:
    // `state` must have passed validate(); the queue copies it.
    Virtqueue(const GuestMemory& mem, const QueueState& state);

    // The next chain, or nullopt when the driver has made nothing new
    // available. A malformed chain is returned too (valid() false) so the
    // device can complete it with an error. Throws VirtqueueError when the
    // ring is broken; the queue then stays broken.
    std::optional<DescriptorChain> pop();
    // The same into `into` (whose storage it reuses; it must not own a head):
    // false when the driver has made nothing new available.
    bool pop(DescriptorChain& into);

    // The chain of a head the in-flight region says is still in flight
    // (recovery): walked and validated like a popped one, without touching
    // the avail ring. Throws VirtqueueError for head >= size.
    DescriptorChain resubmit(uint16_t head);
    // The device found the ring unusable (e.g. a head offered twice while in
    // flight): the queue stays broken. Always throws VirtqueueError.
    [[noreturn]] void mark_broken(std::string why) { fail(std::move(why)); }

    // Queues a completion: `written` bytes were written into the chain's
    // writable buffers. Nothing is visible to the driver until publish_used().
    void add_used(DescriptorChain&& chain, uint32_t written);
    size_t pending_used() const noexcept { return pending_.size(); }

    // The completion path, one step each (DESIGN.md "The two seeds"):
    //   1. write_used_elements(): the pending elements into used.ring
    //   2. publish_used_idx():    release-store used.idx (observer called)
    //   3. needs_interrupt():     §2.7.10 decision, once per batch
    // The transport then sets InterruptStatus and signals the irqfd.
    // Returns the batch (valid until the next add_used) so later code can
    // record it; the three steps must run in this order.
    std::span<const virtio::VirtqUsedElem> write_used_elements();
    void publish_used_idx();
    bool needs_interrupt();
    // All three steps; returns needs_interrupt() (false when nothing pending).
    bool publish_used();

    // After the device drained the avail ring: with EVENT_IDX, asks the driver
    // to kick for anything past next_avail (§2.7.10). Returns true when more
    // buffers arrived meanwhile, so the caller must pop again.
    bool enable_notifications();
    // True when the driver made buffers available past next_avail. Reads
    // avail.idx only, for a polling device.
    bool has_avail() const noexcept;

    const QueueState& state() const noexcept { return state_; }
    bool broken() const noexcept { return broken_; }
    // Both sides of the ring in one line (the device's indices and what the
    // guest last wrote), for `kill -USR2` state dumps. From the I/O thread.
    std::string describe() const;
    void set_observer(QueueObserver* observer) noexcept { observer_ = observer; }

  private:
    [[noreturn]] void fail(std::string why);
    void walk(uint16_t head, DescriptorChain& c) const;
    GuestAddress avail_idx_addr() const noexcept;
    GuestAddress avail_entry_addr(uint16_t slot) const noexcept;
    GuestAddress used_event_addr() const noexcept;
    GuestAddress used_idx_addr() const noexcept;
    GuestAddress used_elem_addr(uint16_t slot) const noexcept;
    GuestAddress avail_event_addr() const noexcept;

    const GuestMemory& mem_;
    QueueState state_;
    uint16_t avail_idx_{0};   // last avail.idx read from the ring
    uint16_t batch_start_{0}; // used.idx before the batch being published
    bool broken_{false};
    QueueObserver* observer_{nullptr};
    std::vector<virtio::VirtqUsedElem> pending_;
    std::vector<virtio::VirtqUsedElem> batch_;
};

} // namespace ember
