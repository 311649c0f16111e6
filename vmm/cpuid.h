// Per-vcpu CPUID, derived from KVM_GET_SUPPORTED_CPUID: APIC IDs, topology and
// the hypervisor bit, so the guest sees N single-threaded cores in one package
// and finds the KVM leaves (kvm-clock, PV EOI, ...).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace ember {

// Returns the table for vcpu `index` of `count` (APIC ID = index).
std::vector<kvm_cpuid_entry2> vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                         uint32_t index, uint32_t count);

} // namespace ember
