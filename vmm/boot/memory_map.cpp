#include "vmm/boot/memory_map.h"

#include <algorithm>

#include "vmm/platform.h"

namespace ember {

std::vector<GuestMemory::Range> ram_layout(uint64_t mem_size) {
    std::vector<GuestMemory::Range> r;
    const uint64_t low = std::min(mem_size, platform::kMmioHoleStart);
    r.push_back({0, low});
    if (mem_size > low) r.push_back({platform::kMmioHoleEnd, mem_size - low});
    return r;
}

uint64_t ram_end_low(uint64_t mem_size) { return std::min(mem_size, platform::kMmioHoleStart); }

std::vector<E820Entry> e820_map(uint64_t mem_size) {
    const uint64_t low_end = ram_end_low(mem_size);
    std::vector<E820Entry> m{
        {0, platform::kEbdaStart, E820Type::ram},
        {platform::kEbdaStart, platform::kHighMemoryStart - platform::kEbdaStart, E820Type::reserved},
        {platform::kHighMemoryStart, low_end - platform::kHighMemoryStart, E820Type::ram},
    };
    if (mem_size > low_end) m.push_back({platform::kMmioHoleEnd, mem_size - low_end, E820Type::ram});
    return m;
}

} // namespace ember
