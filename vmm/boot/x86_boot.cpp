#include "vmm/boot/x86_boot.h"

#include <cstring>
#include <fmt/format.h>

#include "vmm/platform.h"

namespace ember {
namespace {

// GDT as the 64-bit boot protocol asks: __BOOT_CS = 0x10, __BOOT_DS = 0x18,
// flat 4 GiB segments (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol").
constexpr uint64_t kGdt[] = {
    0,                     // null
    0,                     // unused
    0x00af9b000000ffffULL, // 0x10: 64-bit code, present, DPL0, execute/read
    0x00cf93000000ffffULL, // 0x18: data, present, DPL0, read/write, 4 GiB
    0x00cf9b000000ffffULL, // 0x20: 32-bit code, for the PVH entry
    0x008b00000000ffffULL, // 0x28: TSS (busy), needed only so TR is valid
};
constexpr uint16_t kCodeSel64 = 0x10;
constexpr uint16_t kDataSel = 0x18;
constexpr uint16_t kCodeSel32 = 0x20;
constexpr uint16_t kTssSel = 0x28;

constexpr uint64_t kCr0Pe = 1ULL << 0, kCr0Et = 1ULL << 4, kCr0Pg = 1ULL << 31;
constexpr uint64_t kCr4Pae = 1ULL << 5;
constexpr uint64_t kEferLme = 1ULL << 8, kEferLma = 1ULL << 10;

// PVH start info (xen/include/public/arch-x86/hvm/start_info.h).
constexpr uint32_t kPvhMagic = 0x336ec578;
struct HvmStartInfo {
    uint32_t magic, version, flags, nr_modules;
    uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    uint32_t memmap_entries, reserved;
};
struct HvmModlistEntry {
    uint64_t paddr, size, cmdline_paddr, reserved;
};
struct HvmMemmapEntry {
    uint64_t addr, size;
    uint32_t type, reserved;
};

kvm_segment segment(uint16_t sel, uint8_t type, bool code64, bool db) {
    kvm_segment s{};
    s.base = 0;
    s.limit = 0xffffffff;
    s.selector = sel;
    s.type = type;
    s.present = 1;
    s.dpl = 0;
    s.db = db ? 1 : 0;
    s.s = 1;
    s.l = code64 ? 1 : 0;
    s.g = 1;
    return s;
}

void write_page_tables(const GuestMemory& mem) {
    // Identity-map the first 4 GiB with 2 MiB pages: enough for the kernel, the
    // zero page and the command line, which is all the entry point may touch.
    constexpr uint64_t kPresentRw = 0x3, kHuge = 0x80;
    mem.write<uint64_t>(GuestAddress{platform::kPml4Addr}, platform::kPdptAddr | kPresentRw);
    for (uint64_t i = 0; i < 4; ++i) {
        const uint64_t pd = platform::kPdAddr + i * 0x1000;
        mem.write<uint64_t>(GuestAddress{platform::kPdptAddr + i * 8}, pd | kPresentRw);
        for (uint64_t j = 0; j < 512; ++j)
            mem.write<uint64_t>(GuestAddress{pd + j * 8}, ((i * 512 + j) << 21) | kPresentRw | kHuge);
    }
}

} // namespace

boot_params make_zero_page(const BootInfo& info) {
    boot_params bp{};
    if (info.kernel.has_setup_header) bp.hdr = info.kernel.header;
    bp.hdr.type_of_loader = 0xff; // "undefined" loader (boot protocol: no assigned id)
    bp.hdr.cmd_line_ptr = static_cast<uint32_t>(platform::kCmdlineAddr);
    bp.hdr.ramdisk_image = static_cast<uint32_t>(info.initrd_addr);
    bp.hdr.ramdisk_size = static_cast<uint32_t>(info.initrd_size);
    bp.ext_ramdisk_image = static_cast<uint32_t>(info.initrd_addr >> 32);
    bp.ext_ramdisk_size = static_cast<uint32_t>(info.initrd_size >> 32);
    bp.ext_cmd_line_ptr = static_cast<uint32_t>(platform::kCmdlineAddr >> 32);
    bp.acpi_rsdp_addr = info.rsdp_addr;
    if (info.e820.size() > E820_MAX_ENTRIES_ZEROPAGE) throw Error("too many e820 entries");
    bp.e820_entries = static_cast<uint8_t>(info.e820.size());
    for (size_t i = 0; i < info.e820.size(); ++i) {
        bp.e820_table[i].addr = info.e820[i].addr;
        bp.e820_table[i].size = info.e820[i].size;
        bp.e820_table[i].type = static_cast<uint32_t>(info.e820[i].type);
    }
    return bp;
}

void write_boot_structures(const GuestMemory& mem, const BootInfo& info) {
    if (info.cmdline.size() > info.kernel.cmdline_max || info.cmdline.size() + 1 > platform::kCmdlineMax)
        throw Error(fmt::format("kernel command line is {} bytes; this kernel accepts at most {}",
                                info.cmdline.size(), info.kernel.cmdline_max));
    auto cl = mem.span(GuestAddress{platform::kCmdlineAddr}, info.cmdline.size() + 1);
    std::memcpy(cl.data(), info.cmdline.c_str(), info.cmdline.size() + 1);

    for (size_t i = 0; i < std::size(kGdt); ++i)
        mem.write<uint64_t>(GuestAddress{platform::kGdtAddr + i * 8}, kGdt[i]);
    mem.write<uint64_t>(GuestAddress{platform::kIdtAddr}, 0);
    write_page_tables(mem);

    if (info.kernel.mode == EntryMode::linux64) {
        mem.write(GuestAddress{platform::kZeroPageAddr}, make_zero_page(info));
        return;
    }
    // PVH: start info, then the module list and memory map right after it.
    const uint64_t modlist = platform::kPvhStartInfoAddr + sizeof(HvmStartInfo);
    const uint64_t memmap = modlist + sizeof(HvmModlistEntry);
    HvmStartInfo si{};
    si.magic = kPvhMagic;
    si.version = 1;
    si.cmdline_paddr = platform::kCmdlineAddr;
    si.rsdp_paddr = info.rsdp_addr;
    if (info.initrd_size != 0) {
        si.nr_modules = 1;
        si.modlist_paddr = modlist;
        mem.write(GuestAddress{modlist}, HvmModlistEntry{info.initrd_addr, info.initrd_size, 0, 0});
    }
    si.memmap_paddr = memmap;
    si.memmap_entries = static_cast<uint32_t>(info.e820.size());
    for (size_t i = 0; i < info.e820.size(); ++i)
        mem.write(GuestAddress{memmap + i * sizeof(HvmMemmapEntry)},
                  HvmMemmapEntry{info.e820[i].addr, info.e820[i].size,
                                 static_cast<uint32_t>(info.e820[i].type), 0});
    if (memmap + info.e820.size() * sizeof(HvmMemmapEntry) > platform::kZeroPageAddr)
        throw Error("PVH memory map does not fit below the zero page");
    mem.write(GuestAddress{platform::kPvhStartInfoAddr}, si);
}

void setup_vcpu_common(KvmVcpu& vcpu) {
    // MSRs a BIOS would have set (as Firecracker and QEMU do): fast strings on,
    // MTRRs enabled with write-back default, SYSCALL MSRs cleared.
    std::vector<kvm_msr_entry> msrs;
    auto add = [&](uint32_t idx, uint64_t v) {
        kvm_msr_entry e{};
        e.index = idx;
        e.data = v;
        msrs.push_back(e);
    };
    add(0x174, 0);              // IA32_SYSENTER_CS
    add(0x175, 0);              // IA32_SYSENTER_ESP
    add(0x176, 0);              // IA32_SYSENTER_EIP
    add(0xc0000081, 0);         // STAR
    add(0xc0000082, 0);         // LSTAR
    add(0xc0000083, 0);         // CSTAR
    add(0xc0000102, 0);         // KERNEL_GS_BASE
    add(0xc0000084, 0);         // SYSCALL_MASK
    add(0x1a0, 1);              // IA32_MISC_ENABLE: fast string operations
    add(0x2ff, (1u << 11) | 6); // IA32_MTRR_DEF_TYPE: enabled, default write-back
    vcpu.set_msrs(msrs);

    kvm_fpu fpu{};
    fpu.fcw = 0x37f;    // x87 default control word (FNINIT)
    fpu.mxcsr = 0x1f80; // SSE default: all exceptions masked
    vcpu.set_fpu(fpu);

    // LINT0 = ExtINT, LINT1 = NMI, as the MP spec's virtual-wire mode expects.
    auto lapic = vcpu.lapic();
    auto set_lvt = [&](size_t off, uint32_t mode) {
        uint32_t v;
        std::memcpy(&v, lapic.regs + off, 4);
        v = (v & ~0x700u) | (mode << 8);
        std::memcpy(lapic.regs + off, &v, 4);
    };
    set_lvt(0x350, 7); // ExtINT
    set_lvt(0x360, 4); // NMI
    vcpu.set_lapic(lapic);
}

void setup_boot_vcpu(KvmVcpu& vcpu, const BootInfo& info) {
    kvm_sregs s = vcpu.sregs();
    s.gdt.base = platform::kGdtAddr;
    s.gdt.limit = sizeof(kGdt) - 1;
    s.idt.base = platform::kIdtAddr;
    s.idt.limit = 7;
    kvm_segment tss{};
    tss.selector = kTssSel;
    tss.limit = 0x67;
    tss.type = 11; // 64/32-bit busy TSS
    tss.present = 1;
    s.tr = tss;
    kvm_regs r{};
    r.rflags = 2; // bit 1 is reserved-one; interrupts disabled
    r.rip = info.kernel.entry;

    if (info.kernel.mode == EntryMode::linux64) {
        s.cs = segment(kCodeSel64, 11, true, false);
        s.ds = s.es = s.fs = s.gs = s.ss = segment(kDataSel, 3, false, true);
        s.cr3 = platform::kPml4Addr;
        s.cr4 |= kCr4Pae;
        s.cr0 |= kCr0Pe | kCr0Pg | kCr0Et;
        s.efer |= kEferLme | kEferLma;
        r.rsi = platform::kZeroPageAddr;
        r.rsp = platform::kBootStackTop;
        r.rbp = platform::kBootStackTop;
    } else {
        // PVH: 32-bit protected mode, paging off, %ebx = start info.
        s.cs = segment(kCodeSel32, 11, false, true);
        s.ds = s.es = s.fs = s.gs = s.ss = segment(kDataSel, 3, false, true);
        s.cr0 = (s.cr0 | kCr0Pe | kCr0Et) & ~kCr0Pg;
        s.cr4 = 0;
        s.efer = 0;
        r.rbx = platform::kPvhStartInfoAddr;
    }
    vcpu.set_sregs(s);
    vcpu.set_regs(r);
}

} // namespace ember
