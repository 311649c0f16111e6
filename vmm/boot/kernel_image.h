// Kernel image loaders: bzImage (Linux boot protocol >= 2.06, 64-bit entry) and
// ELF vmlinux (PVH entry when the Xen PVH note exists, else the 64-bit entry).
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "vmm/errors.h"
#include "vmm/guest_memory.h"

namespace ember {

// A kernel file that is not a kernel ember can boot, or does not fit.
class KernelImageError : public Error {
public:
    using Error::Error;
};

enum class EntryMode {
    linux64, // 64-bit long mode, %rsi = boot_params (boot protocol §"64-bit boot protocol")
    pvh32,   // 32-bit protected mode, %ebx = hvm_start_info (Xen PVH ABI)
};

struct LoadedKernel {
    EntryMode mode = EntryMode::linux64;
    uint64_t entry = 0;           // guest-physical entry point
    uint64_t end = 0;             // first byte after the kernel's load footprint
    setup_header header{};        // bzImage only: copied into the zero page
    bool has_setup_header = false;
    uint32_t cmdline_max = 2047;  // longest command line the kernel accepts (without NUL)
    uint64_t initrd_addr_max = 0x37ffffff;
};

// Parses a bzImage held in memory; throws KernelImageError with a message
// naming `path` when it is truncated, not a bzImage, too old or not 64-bit.
const setup_header& parse_bzimage_header(std::span<const uint8_t> image, const std::filesystem::path& path,
                                         setup_header& out);

// Loads the kernel file at `path` into guest memory. Detects the format from
// the contents. `ram_end_low` is the end of RAM below the 32-bit MMIO hole.
LoadedKernel load_kernel(const std::filesystem::path& path, const GuestMemory& mem,
                         uint64_t ram_end_low);

// Places the initrd as high as allowed below `ram_end_low` and the kernel's
// initrd_addr_max, page aligned, above the kernel; returns its address.
uint64_t load_initrd(const std::filesystem::path& path, const GuestMemory& mem,
                     const LoadedKernel& kernel, uint64_t ram_end_low, uint64_t& size_out);

// Reads a whole file; throws Error naming the path.
std::vector<uint8_t> read_file(const std::filesystem::path& path, const char* what);

} // namespace ember
