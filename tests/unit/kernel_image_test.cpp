#include <doctest/doctest.h>

#include <elf.h>
#include <unistd.h>

#include <cstring>
#include <fmt/format.h>
#include <fstream>

#include "vmm/boot/kernel_image.h"
#include "vmm/boot/memory_map.h"
#include "vmm/boot/x86_boot.h"
#include "vmm/platform.h"

using namespace ember;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> read_all(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

// The first KiB of Debian's 6.1 cloud bzImage (real setup header), padded
// with zeros to the size its header promises.
std::vector<uint8_t> debian_like_bzimage() {
    auto img = read_all(fs::path(EMBER_TEST_DATA) / "bzimage-debian-6.1-cloud-head.bin");
    REQUIRE(img.size() == 1024);
    setup_header h;
    std::memcpy(&h, img.data() + 0x1f1, sizeof h);
    const size_t setup = (h.setup_sects + 1) * 512;
    img.resize(setup + size_t{h.syssize} * 16, 0);
    return img;
}

struct TempFile {
    fs::path path;
    explicit TempFile(const std::vector<uint8_t>& data) {
        path = fs::temp_directory_path() / fmt::format("ember-test-{}-{}", ::getpid(), counter()++);
        std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()),
                                                    static_cast<std::streamsize>(data.size()));
    }
    ~TempFile() { fs::remove(path); }
    static int& counter() {
        static int c = 0;
        return c;
    }
};

} // namespace

TEST_CASE("bzImage: the real Debian header parses and loads at 1 MiB with the 64-bit entry") {
    const auto img = debian_like_bzimage();
    setup_header h{};
    parse_bzimage_header(img, "vmlinuz", h);
    const uint16_t version = h.version, xloadflags = h.xloadflags;
    CHECK(version == 0x020f);
    CHECK((xloadflags & 1) == 1);
    TempFile f(img);
    auto mem = GuestMemory(ram_layout(256ULL << 20));
    const auto k = load_kernel(f.path, mem, ram_end_low(256ULL << 20));
    CHECK(k.mode == EntryMode::linux64);
    CHECK(k.entry == platform::kHighMemoryStart + 0x200);
    CHECK(k.cmdline_max == 2047);
    CHECK(k.end == platform::kHighMemoryStart + h.init_size);
}

TEST_CASE("bzImage: a kernel whose init_size does not fit in RAM is refused with a hint") {
    TempFile f(debian_like_bzimage());
    auto mem = GuestMemory(ram_layout(32ULL << 20));
    CHECK_THROWS_WITH_AS(load_kernel(f.path, mem, ram_end_low(32ULL << 20)),
                         doctest::Contains("give it more with --mem"), KernelImageError);
}

TEST_CASE("bzImage: truncated, foreign and too-old images get clear errors") {
    auto img = debian_like_bzimage();
    setup_header h{};
    SUBCASE("truncated after the setup code") {
        img.resize(img.size() / 2);
        CHECK_THROWS_WITH_AS(parse_bzimage_header(img, "k", h), doctest::Contains("truncated"), KernelImageError);
    }
    SUBCASE("too small to hold a header") {
        img.resize(100);
        CHECK_THROWS_WITH_AS(parse_bzimage_header(img, "k", h), doctest::Contains("too small"), KernelImageError);
    }
    SUBCASE("no HdrS signature") {
        img[0x202] = 'X';
        CHECK_THROWS_WITH_AS(parse_bzimage_header(img, "k", h), doctest::Contains("not a Linux bzImage"),
                             KernelImageError);
    }
    SUBCASE("protocol 2.05") {
        img[0x206] = 0x05;
        img[0x207] = 0x02;
        CHECK_THROWS_WITH_AS(parse_bzimage_header(img, "k", h), doctest::Contains("2.06"), KernelImageError);
    }
    SUBCASE("no 64-bit entry") {
        img[0x236] &= static_cast<uint8_t>(~1);
        CHECK_THROWS_WITH_AS(parse_bzimage_header(img, "k", h), doctest::Contains("64-bit"), KernelImageError);
    }
}

TEST_CASE("kernel files: a text file, a directory and a missing file name their path") {
    auto mem = GuestMemory(ram_layout(64ULL << 20));
    std::vector<uint8_t> text(4096, 'a');
    TempFile f(text);
    CHECK_THROWS_WITH(load_kernel(f.path, mem, 64ULL << 20), doctest::Contains(f.path.c_str()));
    CHECK_THROWS_WITH(load_kernel("/nonexistent/vmlinuz", mem, 64ULL << 20),
                      doctest::Contains("/nonexistent/vmlinuz"));
    CHECK_THROWS_WITH(load_kernel(fs::temp_directory_path(), mem, 64ULL << 20),
                      doctest::Contains("not a regular file"));
}

namespace {
// A minimal ELF64 vmlinux: one PT_LOAD at 16 MiB, optionally a Xen PVH note.
std::vector<uint8_t> synthetic_elf(bool pvh) {
    std::vector<uint8_t> img(0x2000, 0);
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_machine = EM_X86_64;
    eh.e_entry = 0xffffffff81000000ULL;
    eh.e_phoff = sizeof eh;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = pvh ? 2 : 1;
    std::memcpy(img.data(), &eh, sizeof eh);
    Elf64_Phdr load{};
    load.p_type = PT_LOAD;
    load.p_offset = 0x1000;
    load.p_paddr = 0x1000000;
    load.p_filesz = 0x100;
    load.p_memsz = 0x2000;
    std::memcpy(img.data() + sizeof eh, &load, sizeof load);
    img[0x1000] = 0xf4; // hlt
    if (pvh) {
        Elf64_Phdr note{};
        note.p_type = PT_NOTE;
        note.p_offset = 0x800;
        note.p_filesz = sizeof(Elf64_Nhdr) + 4 + 4;
        std::memcpy(img.data() + sizeof eh + sizeof load, &note, sizeof note);
        Elf64_Nhdr nh{4, 4, 18};
        std::memcpy(img.data() + 0x800, &nh, sizeof nh);
        std::memcpy(img.data() + 0x800 + sizeof nh, "Xen", 4);
        const uint32_t entry = 0x1000010;
        std::memcpy(img.data() + 0x800 + sizeof nh + 4, &entry, 4);
    }
    return img;
}
} // namespace

TEST_CASE("ELF vmlinux: segments load at their physical address; PVH note selects the 32-bit entry") {
    auto mem = GuestMemory(ram_layout(64ULL << 20));
    {
        TempFile f(synthetic_elf(false));
        const auto k = load_kernel(f.path, mem, 64ULL << 20);
        CHECK(k.mode == EntryMode::linux64);
        CHECK(k.entry == 0x1000000);
        CHECK(mem.read<uint8_t>(GuestAddress{0x1000000}) == 0xf4);
    }
    {
        TempFile f(synthetic_elf(true));
        const auto k = load_kernel(f.path, mem, 64ULL << 20);
        CHECK(k.mode == EntryMode::pvh32);
        CHECK(k.entry == 0x1000010);
    }
    {
        auto img = synthetic_elf(false);
        Elf64_Phdr load;
        std::memcpy(&load, img.data() + sizeof(Elf64_Ehdr), sizeof load);
        load.p_filesz = 0x10000; // beyond the end of the file
        std::memcpy(img.data() + sizeof(Elf64_Ehdr), &load, sizeof load);
        TempFile f(img);
        CHECK_THROWS_WITH_AS(load_kernel(f.path, mem, 64ULL << 20), doctest::Contains("outside the file"),
                             KernelImageError);
    }
}

TEST_CASE("e820: low RAM, reserved BIOS area, RAM from 1 MiB, and RAM above 4 GiB past the hole") {
    const auto small = e820_map(512ULL << 20);
    REQUIRE(small.size() == 3);
    CHECK(small[0] == E820Entry{0, platform::kEbdaStart, E820Type::ram});
    CHECK(small[1].type == E820Type::reserved);
    CHECK(small[1].addr + small[1].size == 0x100000);
    CHECK(small[2] == E820Entry{0x100000, (512ULL << 20) - 0x100000, E820Type::ram});
    const auto big = e820_map(4ULL << 30);
    REQUIRE(big.size() == 4);
    CHECK(big[2].addr + big[2].size == platform::kMmioHoleStart);
    CHECK(big[3] == E820Entry{platform::kMmioHoleEnd, (4ULL << 30) - platform::kMmioHoleStart, E820Type::ram});
    const auto layout = ram_layout(4ULL << 30);
    REQUIRE(layout.size() == 2);
    CHECK(layout[1].start == platform::kMmioHoleEnd);
}

TEST_CASE("zero page: carries the setup header, loader type, command line, initrd, RSDP and e820") {
    BootInfo info;
    info.kernel.has_setup_header = true;
    info.kernel.header.version = 0x020f;
    info.kernel.header.boot_flag = 0xAA55;
    info.initrd_addr = 0x1f000000;
    info.initrd_size = 0x123456;
    info.rsdp_addr = platform::kAcpiTablesAddr;
    info.e820 = e820_map(512ULL << 20);
    const auto bp = make_zero_page(info);
    // Copies: boot_params is packed, and doctest binds by reference.
    const uint16_t version = bp.hdr.version;
    const uint8_t loader = bp.hdr.type_of_loader, entries = bp.e820_entries;
    const uint32_t cmdline = bp.hdr.cmd_line_ptr, image = bp.hdr.ramdisk_image, size = bp.hdr.ramdisk_size;
    const uint64_t rsdp = bp.acpi_rsdp_addr, e2 = bp.e820_table[2].addr;
    const uint32_t t1 = bp.e820_table[1].type;
    CHECK(version == 0x020f);
    CHECK(loader == 0xff);
    CHECK(cmdline == platform::kCmdlineAddr);
    CHECK(image == 0x1f000000);
    CHECK(size == 0x123456);
    CHECK(rsdp == platform::kAcpiTablesAddr);
    CHECK(entries == 3);
    CHECK(e2 == 0x100000);
    CHECK(t1 == 2);
}

TEST_CASE("boot structures: command line, GDT and identity page tables; overlong command lines refused") {
    auto mem = GuestMemory(ram_layout(64ULL << 20));
    BootInfo info;
    info.kernel.cmdline_max = 16;
    info.cmdline = "console=ttyS0";
    info.e820 = e820_map(64ULL << 20);
    write_boot_structures(mem, info);
    auto cl = mem.span(GuestAddress{platform::kCmdlineAddr}, info.cmdline.size() + 1);
    CHECK(std::string(reinterpret_cast<const char*>(cl.data())) == "console=ttyS0");
    CHECK(mem.read<uint64_t>(GuestAddress{platform::kGdtAddr + 0x10}) == 0x00af9b000000ffffULL);
    // PD entry for 2 MiB * 513 (second PD, entry 1) maps that same address.
    CHECK(mem.read<uint64_t>(GuestAddress{platform::kPdAddr + 0x1000 + 8}) == ((513ULL << 21) | 0x83));
    CHECK(mem.read<uint8_t>(GuestAddress{platform::kZeroPageAddr + 0x210}) == 0xff); // type_of_loader
    info.cmdline = std::string(17, 'x');
    CHECK_THROWS_WITH_AS(write_boot_structures(mem, info), doctest::Contains("at most 16"), Error);
}

TEST_CASE("initrd: placed page-aligned at the top of low RAM, refused when it cannot fit") {
    auto mem = GuestMemory(ram_layout(64ULL << 20));
    LoadedKernel k;
    k.end = 0x1000000;
    k.initrd_addr_max = 0x37ffffff;
    TempFile f(std::vector<uint8_t>(10000, 0x42));
    uint64_t size = 0;
    const uint64_t addr = load_initrd(f.path, mem, k, 64ULL << 20, size);
    CHECK(size == 10000);
    CHECK(addr % 4096 == 0);
    CHECK(addr + size <= (64ULL << 20));
    CHECK(addr >= (64ULL << 20) - 16384);
    CHECK(mem.read<uint8_t>(GuestAddress{addr}) == 0x42);
    k.end = (64ULL << 20) - 4096;
    CHECK_THROWS_WITH(load_initrd(f.path, mem, k, 64ULL << 20, size), doctest::Contains("does not fit"));
}
