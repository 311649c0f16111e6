#include <doctest/doctest.h>

#include "vmm/cpuid.h"

using namespace ember;

namespace {
kvm_cpuid_entry2 leaf(uint32_t fn, uint32_t index = 0) {
    kvm_cpuid_entry2 e{};
    e.function = fn;
    e.index = index;
    return e;
}
const kvm_cpuid_entry2& find(const std::vector<kvm_cpuid_entry2>& v, uint32_t fn, uint32_t index = 0) {
    for (const auto& e : v)
        if (e.function == fn && e.index == index) return e;
    FAIL("leaf missing");
    return v.front();
}
} // namespace

TEST_CASE("CPUID: per-vcpu APIC IDs, topology and the hypervisor bit") {
    std::vector<kvm_cpuid_entry2> supported{leaf(0x1), leaf(0xb, 0), leaf(0xb, 1), leaf(0xb, 2),
                                            leaf(0x40000000), leaf(0x80000008), leaf(0x8000001e)};
    find(supported, 0x1);
    supported[0].ebx = 0x00000800; // CLFLUSH line size must survive
    const auto c2 = vcpu_cpuid(supported, 2, 4);
    CHECK((find(c2, 0x1).ebx >> 24) == 2);
    CHECK(((find(c2, 0x1).ebx >> 16) & 0xff) == 4);
    CHECK((find(c2, 0x1).ebx & 0xffff) == 0x0800);
    CHECK((find(c2, 0x1).ecx & (1u << 31)) != 0);
    CHECK((find(c2, 0x1).edx & (1u << 28)) != 0);
    CHECK(find(c2, 0xb, 0).edx == 2);
    CHECK(find(c2, 0xb, 0).ebx == 1);
    CHECK(find(c2, 0xb, 1).ebx == 4);
    CHECK(find(c2, 0xb, 1).eax == 2); // 4 cores need 2 ID bits
    CHECK(((find(c2, 0xb, 1).ecx >> 8) & 0xff) == 2);
    CHECK(((find(c2, 0xb, 2).ecx >> 8) & 0xff) == 0); // invalid level ends the list
    CHECK((find(c2, 0x80000008).ecx & 0xff) == 3);
    CHECK(find(c2, 0x8000001e).eax == 2);
    CHECK(find(c2, 0x40000000).eax >= 0x40000001);
    const auto c0 = vcpu_cpuid(supported, 0, 1);
    CHECK((find(c0, 0x1).edx & (1u << 28)) == 0);
    CHECK(find(c0, 0xb, 1).eax == 0);
}
