// The fixed x86-64 machine that ember presents to a guest: one place for every
// address, port and interrupt line, shared by the boot code, the ACPI tables and
// the devices so the three can never disagree.
#pragma once

#include <cstdint>

namespace ember::platform {

// --- Guest-physical memory map -------------------------------------------------
// RAM runs from 0 up to the 32-bit MMIO hole; RAM beyond that is mapped at 4 GiB.
inline constexpr uint64_t kMmioHoleStart = 0xC000'0000; // 3 GiB
inline constexpr uint64_t kMmioHoleEnd = 0x1'0000'0000; // 4 GiB

// Low-memory boot structures (all below 1 MiB, inside RAM).
inline constexpr uint64_t kGdtAddr = 0x500;
inline constexpr uint64_t kIdtAddr = 0x520;
inline constexpr uint64_t kZeroPageAddr = 0x7000;  // struct boot_params
inline constexpr uint64_t kPml4Addr = 0x9000;      // identity page tables: PML4,
inline constexpr uint64_t kPdptAddr = 0xA000;      // PDPT,
inline constexpr uint64_t kPdAddr = 0xB000;        // 4 PDs (0xB000..0xEFFF) mapping 4 GiB
inline constexpr uint64_t kPvhStartInfoAddr = 0x6000;
inline constexpr uint64_t kCmdlineAddr = 0x2'0000;
inline constexpr uint64_t kCmdlineMax = 0x1'0000; // 64 KiB including the NUL
inline constexpr uint64_t kBootStackTop = 0x8ff0;
// The "EBDA"/BIOS area Linux treats as reserved; the ACPI tables live here so
// the legacy RSDP scan of 0xE0000..0xFFFFF finds them.
inline constexpr uint64_t kEbdaStart = 0x9'fc00;
inline constexpr uint64_t kAcpiTablesAddr = 0xE'0000;
inline constexpr uint64_t kAcpiTablesMax = 0x2'0000; // up to 1 MiB
inline constexpr uint64_t kHighMemoryStart = 0x10'0000; // 1 MiB: kernel load address

// --- Interrupt controllers (in-kernel KVM irqchip) ------------------------------
inline constexpr uint64_t kIoApicAddr = 0xFEC0'0000;
inline constexpr uint64_t kLocalApicAddr = 0xFEE0'0000;
inline constexpr uint32_t kIoApicPins = 24;

// --- Legacy devices (port I/O) -------------------------------------------------
inline constexpr uint16_t kCom1Port = 0x3f8;
inline constexpr uint32_t kCom1Gsi = 4;
inline constexpr uint16_t kI8042DataPort = 0x60;
inline constexpr uint16_t kI8042CommandPort = 0x64;
inline constexpr uint32_t kI8042Gsi = 1;
// QEMU's pvpanic ISA port; Linux's pvpanic-mmio driver binds to "QEMU0001".
inline constexpr uint16_t kPvPanicPort = 0x505;

// Hardware-reduced ACPI registers (ACPI 6.4 §4.8.3.7, §4.8.3.6), one byte each.
inline constexpr uint16_t kAcpiSleepControlPort = 0x600;
inline constexpr uint16_t kAcpiSleepStatusPort = 0x601;
inline constexpr uint16_t kAcpiResetPort = 0x602;
inline constexpr uint8_t kAcpiResetValue = 0x01;
// SLP_TYPx value the DSDT's \_S5 package gives for soft-off.
inline constexpr uint8_t kSleepTypeS5 = 5;

// --- virtio-mmio devices --------------------------------------------------------
// Slot i has its 4 KiB register window at kVirtioMmioBase + i * kVirtioMmioSize
// and interrupt line kVirtioFirstGsi + i (edge-triggered, via irqfd).
inline constexpr uint64_t kVirtioMmioBase = 0xD000'0000;
inline constexpr uint64_t kVirtioMmioSize = 0x1000;
inline constexpr uint32_t kVirtioFirstGsi = 5;
// Up to 8 disks (slots 0-7), then up to 4 network devices, then the entropy
// device, each group in the slots right after the one before (so a VM's
// disks keep their slots whatever else it has): at most 13 slots, GSIs 5-17.
inline constexpr uint32_t kMaxDisks = 8;
inline constexpr uint32_t kMaxNets = 4;
inline constexpr uint32_t kMaxVirtioDevices = kMaxDisks + kMaxNets + 1;

} // namespace ember::platform
