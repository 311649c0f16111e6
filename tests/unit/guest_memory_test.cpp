#include <doctest/doctest.h>

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
