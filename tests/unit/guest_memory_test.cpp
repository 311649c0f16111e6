#include <doctest/doctest.h>

#include <linux/magic.h>
#include <sys/vfs.h>

#include <fstream>
#include <string>

#include "vmm/guest_memory.h"

using namespace ember;

TEST_CASE("GuestMemory: reads and writes inside RAM round-trip") {
    auto mem = GuestMemory::flat(0x10000);
    mem.write<uint32_t>(GuestAddress{0x100}, 0xdeadbeef);
    CHECK(mem.read<uint32_t>(GuestAddress{0x100}) == 0xdeadbeef);
    mem.store_release<uint16_t>(GuestAddress{0x200}, 7);
    CHECK(mem.load_acquire<uint16_t>(GuestAddress{0x200}) == 7);
}

TEST_CASE("GuestMemory: out-of-range and overflowing accesses fail") {
    auto mem = GuestMemory::flat(0x10000);
    CHECK_THROWS_AS(mem.read<uint32_t>(GuestAddress{0xfffe}), GuestMemoryError);
    CHECK_THROWS_AS(mem.span(GuestAddress{0x10}, 0x10000), GuestMemoryError);
    CHECK_THROWS_AS(mem.span(GuestAddress{UINT64_MAX - 1}, 4), GuestMemoryError);
    CHECK_THROWS_AS(mem.load_acquire<uint16_t>(GuestAddress{0x201}), GuestMemoryError);
    CHECK(mem.span(GuestAddress{0x10000}, 0).empty());
    CHECK_FALSE(GuestAddress{UINT64_MAX}.checked_add(1).has_value());
}

TEST_CASE("GuestMemory: a hole between regions is not RAM and ranges do not cross it") {
    const GuestMemory::Range layout[] = {{0, 0x1000}, {0x4000, 0x1000}};
    GuestMemory mem{layout};
    CHECK(mem.contains(GuestAddress{0x4ff0}, 0x10));
    CHECK_FALSE(mem.contains(GuestAddress{0x2000}, 1));
    CHECK_THROWS_AS(mem.span(GuestAddress{0xff0}, 0x20), GuestMemoryError);
    mem.write<uint8_t>(GuestAddress{0x4000}, 0x5a);
    // The second region follows the first in the memfd.
    CHECK(mem.regions()[1].file_offset == 0x1000);
    CHECK(mem.regions()[1].host[0] == 0x5a);
    CHECK(mem.end().value == 0x5000);
}

namespace {
uint64_t free_2m_pages() {
    std::ifstream in("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
    uint64_t n = 0;
    return in >> n ? n : 0;
}
std::string error_of(uint64_t bytes) {
    try {
        const GuestMemory::Range r{0, bytes};
        GuestMemory m(std::span<const GuestMemory::Range>(&r, 1), HugePages::two_mib);
    } catch (const Error& e) {
        return e.what();
    }
    return "mapped";
}
} // namespace

TEST_CASE("GuestMemory: 2 MiB huge pages: whole pages only, reserved up front or refused") {
    CHECK(error_of((4ULL << 20) + 4096) ==
          "4198400 bytes of guest RAM with 2 MiB huge pages: the size must be a multiple of 2 MiB");
    // 1 TiB: more than any host's pool. Refused when mapped, with the count
    // needed and free, rather than a SIGBUS at the guest's first touch.
    const auto big = error_of(1ULL << 40);
    CAPTURE(big);
    CHECK(big.starts_with("1048576 MiB of guest RAM needs 524288 free 2 MiB huge pages and the "
                          "host has "));
    CHECK(big.find("sysctl vm.nr_hugepages=N") != std::string::npos);
    if (free_2m_pages() < 2) {
        MESSAGE("no 2 MiB huge pages free on this host: the mapping itself is tested by the e2e "
                "scenario huge-pages, which reserves them in its own L1");
        return;
    }
    const uint64_t before = free_2m_pages();
    const GuestMemory::Range r{0, 4ULL << 20};
    GuestMemory m(std::span<const GuestMemory::Range>(&r, 1), HugePages::two_mib);
    struct statfs fs {};
    REQUIRE(::fstatfs(m.memfd(), &fs) == 0);
    CHECK(fs.f_type == HUGETLBFS_MAGIC);
    m.write<uint64_t>(GuestAddress{(2ULL << 20) + 8}, 42);
    CHECK(m.read<uint64_t>(GuestAddress{(2ULL << 20) + 8}) == 42);
    CHECK(free_2m_pages() <= before - 1); // the touched page came from the pool
}
