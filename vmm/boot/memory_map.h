// The guest's physical memory map: RAM layout around the 32-bit MMIO hole and
// the e820 table handed to the kernel (zero page or PVH memmap).
#pragma once

#include <cstdint>
#include <vector>

#include "vmm/guest_memory.h"

namespace ember {

enum class E820Type : uint32_t { ram = 1, reserved = 2 };

struct E820Entry {
    uint64_t addr;
    uint64_t size;
    E820Type type;
    bool operator==(const E820Entry&) const = default;
};

// RAM ranges for `mem_size` bytes: below the MMIO hole first, the rest at 4 GiB.
std::vector<GuestMemory::Range> ram_layout(uint64_t mem_size);

// e820 for that RAM: low RAM up to the EBDA, the BIOS area reserved (ACPI
// tables live there), RAM from 1 MiB, and RAM above 4 GiB.
std::vector<E820Entry> e820_map(uint64_t mem_size);

// End of RAM below the MMIO hole.
uint64_t ram_end_low(uint64_t mem_size);

} // namespace ember
