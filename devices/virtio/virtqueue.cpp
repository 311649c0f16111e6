#include "devices/virtio/virtqueue.h"

#include <atomic>
#include <utility>

#include <fmt/format.h>

namespace ember {

using virtio::VirtqDesc;
using virtio::VirtqUsedElem;

std::string_view to_string(ChainError e) noexcept {
    switch (e) {
    case ChainError::none:
        return "no error";
    case ChainError::next_out_of_range:
        return "a next index is outside the descriptor table";
    case ChainError::too_long:
        return "the chain is longer than the queue size (or loops)";
    case ChainError::zero_length:
        return "a descriptor has length 0";
    case ChainError::out_of_bounds:
        return "a buffer lies outside guest RAM";
    case ChainError::readable_after_writable:
        return "a readable descriptor follows a writable one";
    case ChainError::total_too_large:
        return "the total length does not fit in 32 bits";
    case ChainError::indirect_not_negotiated:
        return "an indirect descriptor without INDIRECT_DESC";
    case ChainError::nested_indirect:
        return "an indirect descriptor inside an indirect table";
    case ChainError::indirect_with_next:
        return "an indirect descriptor with the NEXT flag";
    case ChainError::bad_indirect_table:
        return "an indirect table with a bad length or address";
    }
    return "unknown chain error";
}

std::optional<std::string> QueueState::validate(const GuestMemory& mem) const {
    if (size == 0 || size > kMaxQueueSize || (size & (size - 1)) != 0)
        return fmt::format("queue size {} is not a power of two in [1, {}]", size, kMaxQueueSize);
    const struct {
        const char* what;
        GuestAddress addr;
        uint64_t align;
        uint64_t bytes;
    } parts[] = {
        {"descriptor table", desc_table, virtio::kDescAlign, virtio::desc_table_bytes(size)},
        {"driver area (avail ring)", avail_ring, virtio::kAvailAlign,
         virtio::avail_ring_bytes(size)},
        {"device area (used ring)", used_ring, virtio::kUsedAlign, virtio::used_ring_bytes(size)},
    };
    for (const auto& p : parts) {
        if (p.addr.value % p.align != 0)
            return fmt::format("{} at {:#x} is not {}-byte aligned", p.what, p.addr.value, p.align);
        if (!mem.contains(p.addr, p.bytes))
            return fmt::format("{} [{:#x}, +{:#x}) is not inside guest RAM", p.what, p.addr.value,
                               p.bytes);
    }
    return std::nullopt;
}

DescriptorChain::DescriptorChain(DescriptorChain&& o) noexcept
    : head_(o.head_), owned_(std::exchange(o.owned_, false)), error_(o.error_),
      readable_(o.readable_), writable_(o.writable_), segments_(std::move(o.segments_)) {}

DescriptorChain& DescriptorChain::operator=(DescriptorChain&& o) noexcept {
    if (this != &o) {
        head_ = o.head_;
        owned_ = std::exchange(o.owned_, false);
        error_ = o.error_;
        readable_ = o.readable_;
        writable_ = o.writable_;
        segments_ = std::move(o.segments_);
    }
    return *this;
}

void DescriptorChain::clear() noexcept {
    head_ = 0;
    owned_ = false;
    error_ = ChainError::none;
    readable_ = writable_ = 0;
    segments_.clear();
}

Virtqueue::Virtqueue(const GuestMemory& mem, const QueueState& state)
    : mem_(mem), state_(state), avail_idx_(state.next_avail) {
    pending_.reserve(state_.size);
    batch_.reserve(state_.size);
}

// Ring layout (§2.7.6, §2.7.8): avail = {flags, idx, ring[size], used_event},
// used = {flags, idx, ring[size] of {id, len}, avail_event}.
GuestAddress Virtqueue::avail_idx_addr() const noexcept {
    return GuestAddress{state_.avail_ring.value + 2};
}
GuestAddress Virtqueue::avail_entry_addr(uint16_t slot) const noexcept {
    return GuestAddress{state_.avail_ring.value + 4 + 2ull * slot};
}
GuestAddress Virtqueue::used_event_addr() const noexcept {
    return GuestAddress{state_.avail_ring.value + 4 + 2ull * state_.size};
}
GuestAddress Virtqueue::used_idx_addr() const noexcept {
    return GuestAddress{state_.used_ring.value + 2};
}
GuestAddress Virtqueue::used_elem_addr(uint16_t slot) const noexcept {
    return GuestAddress{state_.used_ring.value + 4 + 8ull * slot};
}
GuestAddress Virtqueue::avail_event_addr() const noexcept {
    return GuestAddress{state_.used_ring.value + 4 + 8ull * state_.size};
}

void Virtqueue::fail(std::string why) {
    broken_ = true;
    throw VirtqueueError(std::move(why));
}

std::optional<DescriptorChain> Virtqueue::pop() {
    DescriptorChain chain;
    if (!pop(chain)) return std::nullopt;
    return chain;
}

bool Virtqueue::pop(DescriptorChain& into) {
    if (broken_) throw VirtqueueError("the queue is broken and needs a device reset");
    if (state_.next_avail == avail_idx_) {
        // Acquire: the ring entries up to idx are visible once we see idx;
        // pairs with the driver's write barrier before it bumps avail.idx
        // (Linux virtio_wmb() in virtqueue_add_split).
        avail_idx_ = mem_.load_acquire<uint16_t>(avail_idx_addr());
        const uint16_t ahead = static_cast<uint16_t>(avail_idx_ - state_.next_avail);
        if (ahead > state_.size)
            fail(fmt::format("avail.idx {} is {} entries ahead of the device (queue size {})",
                             avail_idx_, ahead, state_.size));
        if (ahead == 0) return false;
    }
    const uint16_t slot = state_.next_avail & static_cast<uint16_t>(state_.size - 1);
    const uint16_t head = mem_.read<uint16_t>(avail_entry_addr(slot));
    if (head >= state_.size)
        fail(fmt::format("avail ring slot {} names head {} beyond queue size {}", slot, head,
                         state_.size));
    ++state_.next_avail;
    walk(head, into);
    if (observer_ != nullptr) observer_->on_pop(head);
    return true;
}

DescriptorChain Virtqueue::resubmit(uint16_t head) {
    if (head >= state_.size)
        fail(fmt::format("in-flight head {} is beyond queue size {}", head, state_.size));
    DescriptorChain chain;
    walk(head, chain);
    return chain;
}

// Validates the whole chain before the device acts on it (DESIGN.md "virtio-mmio
// block"). A refused chain keeps the segments checked so far, so the device
// can still find a writable status byte at the end.
void Virtqueue::walk(uint16_t head, DescriptorChain& c) const {
    c.clear();
    c.head_ = head;
    c.owned_ = true;
    auto refuse = [&c](ChainError e) { c.error_ = e; };
    GuestAddress table = state_.desc_table;
    uint32_t table_size = state_.size;
    uint32_t index = head;
    bool in_indirect = false;
    bool seen_writable = false;
    uint64_t total = 0;
    // §2.7.5.3.1: no chain is longer than the queue size, indirect or not.
    // The same bound ends loops after at most `size` steps.
    uint32_t budget = state_.size;
    for (;;) {
        if (index >= table_size) return refuse(ChainError::next_out_of_range);
        if (budget-- == 0) return refuse(ChainError::too_long);
        // Inside RAM: the table was checked at ready time (or just below for
        // an indirect table) and index < table_size.
        const auto d = mem_.read<VirtqDesc>(GuestAddress{table.value + 16ull * index});
        if ((d.flags & virtio::kDescFlagIndirect) != 0) {
            if (!state_.indirect) return refuse(ChainError::indirect_not_negotiated);
            if (in_indirect) return refuse(ChainError::nested_indirect);
            if ((d.flags & virtio::kDescFlagNext) != 0)
                return refuse(ChainError::indirect_with_next);
            if (d.len == 0 || d.len % sizeof(VirtqDesc) != 0 ||
                !mem_.contains(GuestAddress{d.addr}, d.len) || d.addr % 16 != 0)
                return refuse(ChainError::bad_indirect_table);
            // §2.7.5.3.2: the device ignores WRITE on the indirect descriptor
            // itself; the table's own descriptors say what is writable.
            table = GuestAddress{d.addr};
            table_size = d.len / sizeof(VirtqDesc);
            index = 0;
            in_indirect = true;
            continue;
        }
        if (d.len == 0) return refuse(ChainError::zero_length);
        if (!mem_.contains(GuestAddress{d.addr}, d.len)) return refuse(ChainError::out_of_bounds);
        const bool writable = (d.flags & virtio::kDescFlagWrite) != 0;
        if (!writable && seen_writable) return refuse(ChainError::readable_after_writable);
        total += d.len;
        if (total > UINT32_MAX) return refuse(ChainError::total_too_large);
        seen_writable = seen_writable || writable;
        c.segments_.push_back(ChainSegment{GuestAddress{d.addr}, d.len, writable});
        (writable ? c.writable_ : c.readable_) += d.len;
        if ((d.flags & virtio::kDescFlagNext) == 0) break;
        index = d.next;
    }
}

void Virtqueue::add_used(DescriptorChain&& chain, uint32_t written) {
    if (!chain.owned_) return; // already completed: a head is returned once only
    chain.owned_ = false;
    pending_.push_back(VirtqUsedElem{chain.head_, written});
}

std::span<const VirtqUsedElem> Virtqueue::write_used_elements() {
    batch_.swap(pending_);
    pending_.clear();
    batch_start_ = state_.next_used;
    uint16_t idx = batch_start_;
    for (const auto& e : batch_) {
        // Plain stores: nothing is visible to the driver before used.idx moves.
        mem_.write(used_elem_addr(idx & static_cast<uint16_t>(state_.size - 1)), e);
        ++idx;
    }
    return batch_;
}

void Virtqueue::publish_used_idx() {
    state_.next_used = static_cast<uint16_t>(batch_start_ + batch_.size());
    // Release: the used elements written above are visible before the new
    // index; pairs with the driver's virtio_rmb() after it reads used.idx
    // (Linux virtqueue_get_buf_ctx_split).
    mem_.store_release<uint16_t>(used_idx_addr(), state_.next_used);
    if (observer_ != nullptr) observer_->on_batch_published(batch_, state_.next_used);
}

bool Virtqueue::needs_interrupt() {
    // Full fence: our used.idx store must be globally visible before we read
    // the driver's suppression state, or both sides could miss each other.
    // Pairs with the driver's virtio_mb() between writing used_event (or
    // clearing NO_INTERRUPT) and re-reading used.idx
    // (Linux virtqueue_enable_cb_prepare_split / virtqueue_poll).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (state_.event_idx) {
        const auto used_event = mem_.load_relaxed<uint16_t>(used_event_addr());
        return virtio::need_event(used_event, state_.next_used, batch_start_);
    }
    const auto flags = mem_.load_relaxed<uint16_t>(state_.avail_ring);
    return (flags & virtio::kAvailFlagNoInterrupt) == 0;
}

bool Virtqueue::publish_used() {
    if (pending_.empty()) return false;
    write_used_elements();
    publish_used_idx();
    return needs_interrupt();
}

std::string Virtqueue::describe() const {
    if (!state_.ready) return "queue not ready";
    // Acquire loads, like every read of the driver's side; the values are
    // only printed, so a racing guest write just makes them a little old.
    const auto avail = mem_.load_acquire<uint16_t>(avail_idx_addr());
    const auto used = mem_.load_acquire<uint16_t>(used_idx_addr());
    const auto avail_flags = mem_.load_acquire<uint16_t>(state_.avail_ring);
    const auto used_flags = mem_.load_acquire<uint16_t>(state_.used_ring);
    std::string s = fmt::format("size={} avail.idx={} next_avail={} used.idx={} next_used={} "
                                "pending_used={} avail.flags={:#x} used.flags={:#x}",
                                state_.size, avail, state_.next_avail, used, state_.next_used,
                                pending_.size(), avail_flags, used_flags);
    if (state_.event_idx)
        s += fmt::format(" used_event={} avail_event={}", mem_.load_acquire<uint16_t>(used_event_addr()),
                         mem_.load_acquire<uint16_t>(avail_event_addr()));
    if (broken_) s += " BROKEN";
    return s;
}

bool Virtqueue::enable_notifications() {
    if (broken_) return false;
    if (state_.event_idx) {
        // §2.7.10: "kick me once avail.idx passes next_avail".
        mem_.store_release<uint16_t>(avail_event_addr(), state_.next_avail);
    } else {
        mem_.store_release<uint16_t>(state_.used_ring, 0);
    }
    // Full fence: avail_event must be visible before we re-read avail.idx;
    // pairs with the driver's virtio_mb() between bumping avail.idx and
    // reading avail_event (Linux virtqueue_kick_prepare_split).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // pop() re-reads and checks the index itself; only compare here.
    return mem_.load_acquire<uint16_t>(avail_idx_addr()) != state_.next_avail;
}

bool Virtqueue::has_avail() const noexcept {
    // Acquire: pairs with the driver's release of avail.idx after it wrote
    // the ring entries (Linux virtio_wmb in virtqueue_add_split).
    return !broken_ && mem_.load_acquire<uint16_t>(avail_idx_addr()) != state_.next_avail;
}

} // namespace ember
