// Puts a vcpu and guest memory into the state the kernel's entry point expects:
// the zero page (or PVH start info), GDT, identity page tables, registers, MSRs
// and the local APIC's LINT pins.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/boot/kernel_image.h"
#include "vmm/boot/memory_map.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"

namespace ember {

struct BootInfo {
    LoadedKernel kernel;
    std::string cmdline;
    uint64_t initrd_addr = 0;
    uint64_t initrd_size = 0;
    uint64_t rsdp_addr = 0;
    std::vector<E820Entry> e820;
};

// Builds the zero page (struct boot_params) for a bzImage/vmlinux linux64 entry.
boot_params make_zero_page(const BootInfo& info);

// Writes the command line, zero page or PVH start info, GDT and page tables.
// Throws Error when the command line is longer than the kernel accepts.
void write_boot_structures(const GuestMemory& mem, const BootInfo& info);

// Registers of the boot vcpu (0) at the entry point; the others start in
// wait-for-SIPI and are brought up by the guest through the local APIC.
void setup_boot_vcpu(KvmVcpu& vcpu, const BootInfo& info);
// Common to every vcpu: MSRs, FPU, LAPIC LINT0=ExtINT / LINT1=NMI.
void setup_vcpu_common(KvmVcpu& vcpu);

} // namespace ember
