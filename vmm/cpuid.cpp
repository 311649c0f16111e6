#include "vmm/cpuid.h"

#include <bit>

namespace ember {
namespace {

constexpr uint32_t kHypervisorBit = 1u << 31; // CPUID.1:ECX[31], reserved for hypervisors
constexpr uint32_t kHttBit = 1u << 28;        // CPUID.1:EDX[28]

// Bits needed to number `count` cores (x2APIC ID shift for the core level).
uint32_t id_bits(uint32_t count) { return count <= 1 ? 0 : std::bit_width(count - 1); }

} // namespace

std::vector<kvm_cpuid_entry2> vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                         uint32_t index, uint32_t count) {
    std::vector<kvm_cpuid_entry2> out = supported;
    for (auto& e : out) {
        switch (e.function) {
        case 0x1:
            // EBX[31:24] initial APIC ID, EBX[23:16] logical processors per package.
            e.ebx = (e.ebx & 0x0000ffff) | (index << 24) | ((count & 0xff) << 16);
            e.ecx |= kHypervisorBit;
            if (count > 1) e.edx |= kHttBit;
            else e.edx &= ~kHttBit;
            break;
        case 0xb:
        case 0x1f:
            // Extended topology (Intel SDM vol. 2A, CPUID leaf 0BH): level 0 is
            // SMT with one thread per core, level 1 the cores of one package.
            e.edx = index;
            if (e.index == 0) {
                e.eax = 0;
                e.ebx = 1;
                e.ecx = (1u << 8) | 0;
            } else if (e.index == 1) {
                e.eax = id_bits(count);
                e.ebx = count;
                e.ecx = (2u << 8) | 1;
            } else {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = e.index;
            }
            break;
        case 0x80000008:
            // AMD APM vol. 3, CPUID Fn8000_0008_ECX: NC = cores - 1, ApicIdSize.
            e.ecx = (e.ecx & ~0xf0ffu) | (id_bits(count) << 12) | ((count - 1) & 0xff);
            break;
        case 0x8000001e:
            // AMD: extended APIC ID, core ID, one thread per core, node 0.
            e.eax = index;
            e.ebx = index & 0xff;
            e.ecx = 0;
            break;
        case 0x40000000:
            // KVM signature leaf; make sure the max hypervisor leaf covers 0x40000001
            // so the guest finds the KVM feature bits (kvm-clock).
            if (e.eax < 0x40000001) e.eax = 0x40000001;
            break;
        default:
            break;
        }
    }
    return out;
}

} // namespace ember
