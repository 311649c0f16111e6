#include "vmm/boot/kernel_image.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fmt/format.h>
#include <fmt/std.h>

#include "vmm/platform.h"
#include "vmm/unique_fd.h"

namespace ember {
namespace {

// Linux boot protocol (Documentation/arch/x86/boot.rst), setup header offsets.
constexpr size_t kSetupHeaderOffset = 0x1f1;
constexpr uint16_t kBootFlag = 0xAA55;
constexpr uint32_t kHdrSMagic = 0x53726448; // "HdrS"
constexpr uint16_t kMinProtocol = 0x0206;   // cmdline_size, initrd_addr_max, 64-bit entry
constexpr uint16_t kXlfKernel64 = 1u << 0;  // xloadflags: has the 64-bit entry at +0x200
constexpr uint8_t kLoadedHigh = 1u << 0;    // loadflags: protected-mode code at 1 MiB
constexpr uint64_t kEntry64Offset = 0x200;

// Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h): the PVH entry.
constexpr uint32_t kXenElfNotePhys32Entry = 18;

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

std::optional<uint64_t> find_pvh_entry(std::span<const uint8_t> img, const Elf64_Ehdr& eh) {
    for (uint16_t i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        std::memcpy(&ph, img.data() + eh.e_phoff + i * sizeof(Elf64_Phdr), sizeof ph);
        if (ph.p_type != PT_NOTE) continue;
        if (ph.p_offset > img.size() || ph.p_filesz > img.size() - ph.p_offset) continue;
        uint64_t off = ph.p_offset;
        const uint64_t end = ph.p_offset + ph.p_filesz;
        while (off + sizeof(Elf64_Nhdr) <= end) {
            Elf64_Nhdr nh;
            std::memcpy(&nh, img.data() + off, sizeof nh);
            const uint64_t name_at = off + sizeof nh;
            const uint64_t desc_at = name_at + align_up(nh.n_namesz, 4);
            const uint64_t next = desc_at + align_up(nh.n_descsz, 4);
            if (next > end) break;
            if (nh.n_type == kXenElfNotePhys32Entry && nh.n_namesz == 4 &&
                std::memcmp(img.data() + name_at, "Xen", 4) == 0 && nh.n_descsz >= 4) {
                uint32_t entry = 0;
                std::memcpy(&entry, img.data() + desc_at, 4);
                return entry;
            }
            off = next;
        }
    }
    return std::nullopt;
}

LoadedKernel load_elf(std::span<const uint8_t> img, const std::filesystem::path& path,
                      const GuestMemory& mem, uint64_t ram_end_low) {
    Elf64_Ehdr eh;
    if (img.size() < sizeof eh) throw KernelImageError(fmt::format("{}: truncated ELF header", path));
    std::memcpy(&eh, img.data(), sizeof eh);
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64)
        throw KernelImageError(fmt::format("{}: not an x86-64 ELF kernel", path));
    if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff > img.size() ||
        uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr) > img.size() - eh.e_phoff)
        throw KernelImageError(fmt::format("{}: ELF program headers are truncated", path));
    LoadedKernel k;
    uint64_t loaded = 0;
    for (uint16_t i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        std::memcpy(&ph, img.data() + eh.e_phoff + i * sizeof(Elf64_Phdr), sizeof ph);
        if (ph.p_type != PT_LOAD) continue;
        if (ph.p_offset > img.size() || ph.p_filesz > img.size() - ph.p_offset || ph.p_filesz > ph.p_memsz)
            throw KernelImageError(fmt::format("{}: ELF segment {} lies outside the file", path, i));
        const uint64_t end = ph.p_paddr + ph.p_memsz;
        if (ph.p_paddr < platform::kHighMemoryStart || end < ph.p_paddr || end > ram_end_low)
            throw KernelImageError(fmt::format(
                "{}: ELF segment {} at {:#x}+{:#x} does not fit in guest RAM (1 MiB..{:#x}); give the VM more memory",
                path, i, ph.p_paddr, ph.p_memsz, ram_end_low));
        mem.write_bytes(GuestAddress{ph.p_paddr}, img.subspan(ph.p_offset, ph.p_filesz));
        auto rest = mem.span(GuestAddress{ph.p_paddr + ph.p_filesz}, ph.p_memsz - ph.p_filesz);
        std::memset(rest.data(), 0, rest.size());
        k.end = std::max(k.end, end);
        ++loaded;
    }
    if (loaded == 0) throw KernelImageError(fmt::format("{}: ELF file has no loadable segments", path));
    if (auto pvh = find_pvh_entry(img, eh)) {
        k.mode = EntryMode::pvh32;
        k.entry = *pvh;
    } else {
        // vmlinux links startup_64 at a virtual address; its physical address is
        // the low bits (the kernel's __START_KERNEL_map is 0xffffffff80000000).
        k.mode = EntryMode::linux64;
        k.entry = eh.e_entry & 0x7fffffffULL;
    }
    if (k.entry < platform::kHighMemoryStart || k.entry >= k.end)
        throw KernelImageError(fmt::format("{}: ELF entry point {:#x} is outside the loaded image", path, k.entry));
    return k;
}

} // namespace

std::vector<uint8_t> read_file(const std::filesystem::path& path, const char* what) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw Error(fmt::format("cannot open {} {}: {}", what, path, std::strerror(errno)));
    struct stat st{};
    if (::fstat(fd.get(), &st) != 0) throw_errno(fmt::format("stat {}", path));
    if (!S_ISREG(st.st_mode)) throw Error(fmt::format("{} {} is not a regular file", what, path));
    std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < data.size()) {
        const ssize_t n = ::read(fd.get(), data.data() + got, data.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw Error(fmt::format("cannot read {} {}: {}", what, path, std::strerror(errno)));
        if (n == 0) break;
        got += static_cast<size_t>(n);
    }
    data.resize(got);
    return data;
}

const setup_header& parse_bzimage_header(std::span<const uint8_t> img, const std::filesystem::path& path,
                                         setup_header& hdr) {
    if (img.size() < kSetupHeaderOffset + sizeof(setup_header))
        throw KernelImageError(fmt::format("{}: file is too small to be a kernel ({} bytes)", path, img.size()));
    std::memcpy(&hdr, img.data() + kSetupHeaderOffset, sizeof hdr);
    if (hdr.boot_flag != kBootFlag || hdr.header != kHdrSMagic)
        throw KernelImageError(fmt::format("{}: not a Linux bzImage (no boot signature) nor an ELF vmlinux", path));
    if (hdr.version < kMinProtocol)
        throw KernelImageError(fmt::format("{}: boot protocol {}.{:02} is too old; ember needs 2.06 or newer",
                                           path, hdr.version >> 8, hdr.version & 0xff));
    if (!(hdr.loadflags & kLoadedHigh))
        throw KernelImageError(fmt::format("{}: a zImage (loaded low) is not supported; use a bzImage", path));
    if (hdr.version >= 0x020c && !(hdr.xloadflags & kXlfKernel64))
        throw KernelImageError(fmt::format("{}: kernel has no 64-bit entry point (XLF_KERNEL_64 unset)", path));
    const uint64_t setup_sects = hdr.setup_sects == 0 ? 4 : hdr.setup_sects;
    const uint64_t setup_size = (setup_sects + 1) * 512;
    if (setup_size >= img.size())
        throw KernelImageError(fmt::format("{}: truncated: setup code claims {} bytes of a {}-byte file", path,
                                           setup_size, img.size()));
    // syssize counts 16-byte paragraphs of protected-mode code (boot protocol 2.04+).
    if (uint64_t{hdr.syssize} * 16 > img.size() - setup_size)
        throw KernelImageError(fmt::format("{}: truncated: kernel needs {} bytes after the setup code, file has {}",
                                           path, uint64_t{hdr.syssize} * 16, img.size() - setup_size));
    return hdr;
}

LoadedKernel load_kernel(const std::filesystem::path& path, const GuestMemory& mem, uint64_t ram_end_low) {
    const auto img = read_file(path, "kernel");
    if (img.size() >= 4 && std::memcmp(img.data(), ELFMAG, SELFMAG) == 0)
        return load_elf(img, path, mem, ram_end_low);

    LoadedKernel k;
    parse_bzimage_header(img, path, k.header);
    k.has_setup_header = true;
    const uint64_t setup_sects = k.header.setup_sects == 0 ? 4 : k.header.setup_sects;
    const uint64_t pm_offset = (setup_sects + 1) * 512;
    const uint64_t pm_size = img.size() - pm_offset;
    // The decompressor needs init_size bytes from the load address (2.10+).
    const uint64_t footprint = std::max<uint64_t>(pm_size, k.header.version >= 0x020a ? k.header.init_size : 0);
    const uint64_t load = platform::kHighMemoryStart;
    if (load + footprint > ram_end_low)
        throw KernelImageError(fmt::format(
            "{}: kernel needs {} MiB of RAM above 1 MiB to decompress, the VM has {} MiB; give it more with --mem",
            path, footprint >> 20, (ram_end_low - load) >> 20));
    mem.write_bytes(GuestAddress{load}, std::span<const uint8_t>(img).subspan(pm_offset));
    k.mode = EntryMode::linux64;
    k.entry = load + kEntry64Offset;
    k.end = load + footprint;
    k.cmdline_max = k.header.cmdline_size;
    k.initrd_addr_max = k.header.initrd_addr_max;
    return k;
}

uint64_t load_initrd(const std::filesystem::path& path, const GuestMemory& mem, const LoadedKernel& kernel,
                     uint64_t ram_end_low, uint64_t& size_out) {
    const auto data = read_file(path, "initrd");
    if (data.empty()) throw Error(fmt::format("initrd {} is empty", path));
    const uint64_t limit = std::min<uint64_t>(ram_end_low, kernel.initrd_addr_max + 1);
    const uint64_t lowest = align_up(kernel.end, 4096);
    if (data.size() > limit || (limit - data.size()) < lowest)
        throw Error(fmt::format("initrd {} ({} MiB) does not fit in guest RAM below {:#x} after the kernel; "
                                "give the VM more memory with --mem",
                                path, data.size() >> 20, limit));
    const uint64_t addr = (limit - data.size()) & ~uint64_t{4095};
    mem.write_bytes(GuestAddress{addr}, data);
    size_out = data.size();
    return addr;
}

} // namespace ember
