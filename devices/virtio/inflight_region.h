// The in-flight region of one split virtqueue (DESIGN.md "The two seeds, made
// exact"): a memfd, mapped shared, laid out like vhost-user's inflight region
// for split rings (QEMU docs/interop/vhost-user.rst, "Inflight I/O tracking"):
//
//   header  {u64 features; u16 version; u16 desc_num; u16 last_batch_head; u16 used_idx}
//   entries {u8 inflight; u8 padding[5]; u16 next; u64 counter}   one per head
//   the whole queue area rounded up to 64 bytes.
//
// Writers: the queue's I/O thread only, always inside its signal-masked
// sections (so a quiesced thread never leaves the region half-updated).
// Readers: the checkpoint (main thread, while the I/O thread is parked) and
// recovery (before an I/O thread starts). Every access goes through a checked
// accessor: a head is compared with the size this object was created with,
// never with a value read from the region.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "devices/virtio/virtio_spec.h"
#include "vmm/errors.h"
#include "vmm/guest_memory.h"
#include "vmm/unique_fd.h"

namespace ember {

struct QueueState;
class Virtqueue;

// A region whose contents cannot be trusted or used: corrupt, wrong size,
// inconsistent with the rings in guest memory.
class InflightError : public Error {
  public:
    using Error::Error;
};

struct InflightHeader {
    uint64_t features;
    uint16_t version;
    uint16_t desc_num;
    uint16_t last_batch_head;
    uint16_t used_idx;
};
static_assert(sizeof(InflightHeader) == 16);

struct InflightEntry {
    uint8_t inflight;
    uint8_t padding[5];
    uint16_t next;
    uint64_t counter;
};
static_assert(sizeof(InflightEntry) == 16);

// vhost-user: "version: the version of this region, 1 for now".
inline constexpr uint16_t kInflightVersion = 1;
// last_batch_head when no batch was ever published: never a valid head
// (queues have at most 32768 entries, virtio 1.2 §2.7).
inline constexpr uint16_t kNoBatch = 0xffff;

// Bytes of the queue area for `queue_size` heads: header + entries, rounded
// up to 64 (vhost-user "queue_region_size").
constexpr uint64_t inflight_region_bytes(uint16_t queue_size) {
    return (sizeof(InflightHeader) + sizeof(InflightEntry) * uint64_t{queue_size} + 63) & ~63ull;
}

// What recovery decided for one queue.
struct InflightRecovery {
    uint16_t used_idx{0};    // used.idx in guest memory (the header now agrees)
    uint16_t next_avail{0};  // used_idx + resubmit.size(): the next avail slot to read
    uint64_t next_counter{0};
    uint16_t repaired{0};        // entries of a published-but-not-cleared batch cleared
    std::vector<uint16_t> resubmit; // heads still in flight, oldest counter first
};

class InflightRegion final {
  public:
    // A zeroed region for a queue of `queue_size` heads (1..32768). Throws
    // SystemError when the memfd cannot be created or mapped.
    explicit InflightRegion(uint16_t queue_size);
    ~InflightRegion();
    InflightRegion(const InflightRegion&) = delete;
    InflightRegion& operator=(const InflightRegion&) = delete;

    uint16_t queue_size() const noexcept { return size_; }
    int memfd() const noexcept { return fd_.get(); }
    // The raw region (for a snapshot section); stable while the I/O thread is parked.
    std::span<const uint8_t> bytes() const noexcept { return {base_, bytes_}; }
    // Replaces the whole region with a saved copy (restore). Throws
    // InflightError when the length does not match this queue size. The
    // contents are checked later, by recover().
    void load(std::span<const uint8_t> saved);

    // --- Device activation --------------------------------------------------------
    // DESIGN.md pitfall (SPDK issue 3766): a stale used_idx of 0 would make
    // recovery clear a live entry. At activation the header takes the ring's
    // used.idx, last_batch_head the sentinel, and every entry is cleared.
    void activate(uint16_t ring_used_idx);

    // --- The I/O thread, with the quiesce signal blocked ------------------------------
    // Pop: counter first, then the flag. Returns false when the head is
    // already in flight (the driver offered it twice: a broken ring).
    [[nodiscard]] bool mark_popped(uint16_t head);
    // The same for a head just popped from `queue`: a head already in flight
    // breaks the queue (Virtqueue::mark_broken throws VirtqueueError).
    void mark_popped(Virtqueue& queue, uint16_t head);
    // Before used.idx is published: link the batch through `next` and point
    // last_batch_head at its first element.
    void link_batch(std::span<const virtio::VirtqUsedElem> batch);
    // After used.idx was release-stored: clear each entry of the batch, then
    // store the header's used_idx.
    void clear_batch(std::span<const virtio::VirtqUsedElem> batch, uint16_t used_idx);
    // The whole completion of `queue`'s pending used elements, in the order
    // of DESIGN.md "The two seeds": used elements, link_batch, used.idx,
    // clear_batch. Returns whether the driver wants an interrupt for it
    // (§2.7.10), which the caller then raises, last; false when nothing was
    // pending. (The disk's I/O thread spells the steps out: it has fault
    // points between them.)
    bool publish_batch(Virtqueue& queue);

    // --- Readers (quiesced) ----------------------------------------------------------
    InflightHeader header() const noexcept;
    // The raw inflight byte of `head` (0 or 1 unless corrupt). Throws
    // InflightError for head >= queue_size().
    uint8_t inflight(uint16_t head) const;
    InflightEntry entry(uint16_t head) const;
    // Number of entries with inflight != 0.
    uint32_t count_inflight() const noexcept;
    // The avail index the device will read next, as this region's writer saw
    // it after its last pop: diagnostics and the invariant test (a snapshot
    // never needs it: recovery recomputes it as used_idx + count_inflight()).
    uint16_t consumed_avail_idx() const noexcept { return consumed_; }

    // --- Recovery -----------------------------------------------------------------
    // From the region and used.idx/used ring/avail.idx in guest memory alone
    // (DESIGN.md "Recover"). Validates every field first and throws
    // InflightError naming the problem; then repairs the region (clears a
    // published-but-not-cleared batch, header used_idx = used.idx,
    // last_batch_head = sentinel) and returns the heads to resubmit, oldest
    // counter first. Idempotent. `queue` must have passed QueueState::validate.
    InflightRecovery recover(const GuestMemory& mem, const QueueState& queue);
    // Where a device's queue starts when it is activated, set in `queue`
    // (next_used, next_avail): fresh, at the header's used_idx and the avail
    // index this region consumed (the transport initialised it from the ring);
    // with `recover`, where recover() says, and its plan (empty when fresh)
    // names the heads to resubmit before any new avail entry.
    InflightRecovery start_queue(const GuestMemory& mem, QueueState& queue, bool recover);

  private:
    InflightEntry& at(uint16_t head) const;
    InflightHeader& head_ref() const noexcept;

    uint16_t size_;
    uint64_t bytes_;
    UniqueFd fd_;
    uint8_t* base_{nullptr};
    uint64_t next_counter_{0};
    uint16_t consumed_{0};
};

} // namespace ember
