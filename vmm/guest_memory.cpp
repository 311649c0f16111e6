#include "vmm/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>

namespace ember {

GuestMemory::GuestMemory(std::span<const Range> layout) {
    if (layout.empty()) throw Error("guest memory layout is empty");
    uint64_t prev_end = 0;
    for (const auto& r : layout) {
        if (r.size == 0 || r.start < prev_end || r.start + r.size < r.start)
            throw Error("guest memory layout has empty, overlapping or unsorted ranges");
        prev_end = r.start + r.size;
        total_ += r.size;
    }
    memfd_ = UniqueFd(::memfd_create("ember-guest-ram", MFD_CLOEXEC));
    if (!memfd_) throw_errno("memfd_create(guest RAM)");
    if (::ftruncate(memfd_.get(), static_cast<off_t>(total_)) != 0)
        throw_errno(fmt::format("ftruncate(guest RAM, {} bytes)", total_));
    void* p = ::mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                     memfd_.get(), 0);
    if (p == MAP_FAILED) throw_errno(fmt::format("mmap(guest RAM, {} bytes)", total_));
    base_ = static_cast<uint8_t*>(p);
    // Guest RAM is never useful in a core dump and may be large.
    ::madvise(base_, total_, MADV_DONTDUMP);
    uint64_t off = 0;
    for (const auto& r : layout) {
        regions_.push_back(GuestRegion{GuestAddress{r.start}, r.size, off, base_ + off});
        off += r.size;
    }
}

GuestMemory GuestMemory::flat(uint64_t size) {
    const Range r{0, size};
    return GuestMemory(std::span<const Range>(&r, 1));
}

GuestMemory::GuestMemory(GuestMemory&& o) noexcept
    : memfd_(std::move(o.memfd_)), base_(std::exchange(o.base_, nullptr)),
      total_(std::exchange(o.total_, 0)), regions_(std::move(o.regions_)) {}

GuestMemory& GuestMemory::operator=(GuestMemory&& o) noexcept {
    if (this != &o) {
        unmap();
        memfd_ = std::move(o.memfd_);
        base_ = std::exchange(o.base_, nullptr);
        total_ = std::exchange(o.total_, 0);
        regions_ = std::move(o.regions_);
    }
    return *this;
}

GuestMemory::~GuestMemory() { unmap(); }

void GuestMemory::unmap() noexcept {
    if (base_ != nullptr) ::munmap(base_, total_);
    base_ = nullptr;
}

GuestAddress GuestMemory::end() const noexcept {
    if (regions_.empty()) return GuestAddress{0};
    const auto& last = regions_.back();
    return GuestAddress{last.start.value + last.size};
}

bool GuestMemory::contains(GuestAddress addr, uint64_t len) const noexcept {
    for (const auto& r : regions_) {
        if (addr.value < r.start.value) return false;
        const uint64_t off = addr.value - r.start.value;
        if (off < r.size || (off == r.size && len == 0)) return len <= r.size - off;
    }
    return false;
}

std::span<uint8_t> GuestMemory::span(GuestAddress addr, uint64_t len) const {
    for (const auto& r : regions_) {
        if (addr.value < r.start.value) break;
        const uint64_t off = addr.value - r.start.value;
        if (off > r.size || (off == r.size && len != 0)) continue;
        if (len > r.size - off) break;
        return {r.host + off, static_cast<size_t>(len)};
    }
    throw GuestMemoryError(
        fmt::format("guest memory access [{:#x}, +{:#x}) is outside guest RAM", addr.value, len));
}

} // namespace ember
