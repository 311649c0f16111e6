#include "vmm/guest_memory.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <string>

#include <fmt/format.h>

namespace ember {

namespace {

// MFD_HUGE_2MB from <linux/memfd.h> (log2 of the page size at bit 26), which
// cannot be included beside glibc's <sys/mman.h>: without it memfd_create
// takes the host's default huge page size, which may be 1 GiB.
constexpr unsigned kMfdHuge2Mb = 21U << 26;

// Free 2 MiB huge pages in the host's pool, for the message when there are too
// few; nullopt when unreadable.
std::optional<uint64_t> free_huge_pages() {
    std::ifstream in("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
    uint64_t n = 0;
    if (in >> n) return n;
    return std::nullopt;
}

} // namespace

GuestMemory::GuestMemory(std::span<const Range> layout, HugePages huge) {
    if (layout.empty()) throw Error("guest memory layout is empty");
    uint64_t prev_end = 0;
    for (const auto& r : layout) {
        if (r.size == 0 || r.start < prev_end || r.start + r.size < r.start)
            throw Error("guest memory layout has empty, overlapping or unsorted ranges");
        prev_end = r.start + r.size;
        total_ += r.size;
    }
    const bool hugetlb = huge == HugePages::two_mib;
    if (hugetlb && total_ % kHugePageBytes != 0)
        throw Error(fmt::format("{} bytes of guest RAM with 2 MiB huge pages: the size must be a "
                                "multiple of 2 MiB",
                                total_));
    memfd_ = UniqueFd(::memfd_create("ember-guest-ram",
                                     MFD_CLOEXEC | (hugetlb ? MFD_HUGETLB | kMfdHuge2Mb : 0U)));
    if (!memfd_) {
        if (hugetlb)
            throw_errno("memfd_create(guest RAM, 2 MiB huge pages; does this kernel have "
                        "hugetlbfs?)");
        throw_errno("memfd_create(guest RAM)");
    }
    if (::ftruncate(memfd_.get(), static_cast<off_t>(total_)) != 0)
        throw_errno(fmt::format("ftruncate(guest RAM, {} bytes)", total_));
    // Huge pages are reserved at mmap (no MAP_NORESERVE): a pool too small
    // fails here, not with a SIGBUS at the guest's first touch of a page.
    void* p = ::mmap(nullptr, total_, PROT_READ | PROT_WRITE,
                     MAP_SHARED | (hugetlb ? 0 : MAP_NORESERVE), memfd_.get(), 0);
    if (p == MAP_FAILED && hugetlb && errno == ENOMEM) {
        const uint64_t need = total_ / kHugePageBytes;
        const auto free = free_huge_pages();
        throw Error(fmt::format(
            "{} MiB of guest RAM needs {} free 2 MiB huge pages and the host has {}: reserve "
            "more (sysctl vm.nr_hugepages=N, as root) or leave huge pages off",
            total_ >> 20, need, free ? std::to_string(*free) : std::string("an unknown number")));
    }
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
