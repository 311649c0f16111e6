// The one checked door to guest RAM (DESIGN.md "Guest memory").
//
// RAM is a memfd mapped MAP_SHARED so a checkpoint can copy it and an
// out-of-process backend could map it. Every access is bounds-checked against
// the regions; a guest-controlled address never becomes a raw pointer without
// passing through span(), which fails on overflow or a range outside RAM.
#pragma once

#include <atomic>
#include <compare>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "vmm/errors.h"
#include "vmm/unique_fd.h"

namespace ember {

// A guest-physical address. Distinct from host pointers and plain integers so
// the two cannot be mixed up; arithmetic on it is checked.
struct GuestAddress {
    uint64_t value = 0;

    constexpr GuestAddress() = default;
    constexpr explicit GuestAddress(uint64_t v) : value(v) {}
    constexpr auto operator<=>(const GuestAddress&) const = default;

    // nullopt when the sum wraps past 2^64.
    constexpr std::optional<GuestAddress> checked_add(uint64_t off) const {
        uint64_t r = 0;
        if (__builtin_add_overflow(value, off, &r)) return std::nullopt;
        return GuestAddress{r};
    }
};

// An access outside guest RAM. Devices turn it into a guest-visible error.
class GuestMemoryError : public Error {
public:
    using Error::Error;
};

// What backs guest RAM: the host's 4 KiB pages, or 2 MiB huge pages from the
// pool the host reserved (vm.nr_hugepages), as Firecracker's huge_pages "2M".
enum class HugePages : uint8_t { none, two_mib };
inline constexpr uint64_t kHugePageBytes = 2ULL << 20;

// One contiguous range of guest-physical RAM backed by part of the memfd.
struct GuestRegion {
    GuestAddress start;
    uint64_t size = 0;
    uint64_t file_offset = 0; // offset in the memfd
    uint8_t* host = nullptr;  // start of the host mapping of this region
};

class GuestMemory final {
public:
    // Layout as {guest start, size} pairs, non-overlapping, sorted by start.
    struct Range {
        uint64_t start;
        uint64_t size;
    };

    // Creates a memfd of the total size and maps it; throws SystemError.
    // With huge pages the total must be a multiple of 2 MiB, and the pages are
    // reserved now: too few free in the host's pool is an Error saying how
    // many are needed and free, never a SIGBUS when the guest first touches
    // a page.
    explicit GuestMemory(std::span<const Range> layout, HugePages huge = HugePages::none);
    // Convenience: a single region [0, size), as the unit tests use.
    static GuestMemory flat(uint64_t size);

    GuestMemory(GuestMemory&&) noexcept;
    GuestMemory& operator=(GuestMemory&&) noexcept;
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;
    ~GuestMemory();

    std::span<const GuestRegion> regions() const noexcept { return regions_; }
    int memfd() const noexcept { return memfd_.get(); }
    uint64_t total_size() const noexcept { return total_; }
    // One past the highest guest-physical RAM address.
    GuestAddress end() const noexcept;

    // True when [addr, addr+len) lies inside one region.
    bool contains(GuestAddress addr, uint64_t len) const noexcept;

    // Host view of [addr, addr+len); throws GuestMemoryError when any byte is
    // outside RAM or the range crosses a region boundary. len 0 is allowed.
    std::span<uint8_t> span(GuestAddress addr, uint64_t len) const;

    void read_bytes(GuestAddress addr, std::span<uint8_t> out) const {
        auto s = span(addr, out.size());
        std::memcpy(out.data(), s.data(), out.size());
    }
    void write_bytes(GuestAddress addr, std::span<const uint8_t> in) const {
        auto s = span(addr, in.size());
        std::memcpy(s.data(), in.data(), in.size());
    }

    template <typename T>
    T read(GuestAddress addr) const {
        static_assert(std::is_trivially_copyable_v<T>);
        T v;
        std::memcpy(&v, span(addr, sizeof(T)).data(), sizeof(T));
        return v;
    }

    template <typename T>
    void write(GuestAddress addr, const T& v) const {
        static_assert(std::is_trivially_copyable_v<T>);
        std::memcpy(span(addr, sizeof(T)).data(), &v, sizeof(T));
    }

    // Atomic accessors for ring indices and flags shared with a running guest.
    // The address must be naturally aligned (rings are validated for it).
    template <typename T>
    T load_acquire(GuestAddress addr) const {
        return std::atomic_ref<T>(aligned<T>(addr)).load(std::memory_order_acquire);
    }
    template <typename T>
    void store_release(GuestAddress addr, T v) const {
        std::atomic_ref<T>(aligned<T>(addr)).store(v, std::memory_order_release);
    }
    template <typename T>
    T load_relaxed(GuestAddress addr) const {
        return std::atomic_ref<T>(aligned<T>(addr)).load(std::memory_order_relaxed);
    }

private:
    GuestMemory() = default;
    template <typename T>
    T& aligned(GuestAddress addr) const {
        static_assert(std::is_integral_v<T>);
        if (addr.value % alignof(T) != 0)
            throw GuestMemoryError("misaligned atomic access to guest memory");
        return *reinterpret_cast<T*>(span(addr, sizeof(T)).data());
    }
    void unmap() noexcept;

    UniqueFd memfd_;
    uint8_t* base_ = nullptr;
    uint64_t total_ = 0;
    std::vector<GuestRegion> regions_;
};

} // namespace ember
