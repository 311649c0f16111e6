#include "vmm/acpi/tables.h"

#include <fmt/format.h>

#include "vmm/acpi/sdt.h"
#include "vmm/errors.h"
#include "vmm/platform.h"

namespace ember::acpi {
namespace {

// ACPI 6.4 tables; Linux 6.1 accepts any revision at least this high.
constexpr uint8_t kXsdtRevision = 1; // §5.2.8
constexpr uint8_t kFadtRevision = 6; // §5.2.9, Table 5.9: "Major Version Number"
constexpr uint8_t kFadtMinorVersion = 4;
constexpr uint8_t kMadtRevision = 5; // §5.2.12, Table 5.19

// Identifies the hypervisor in the FADT (offset 268, ACPI 6.0+); informational.
constexpr std::string_view kHypervisorVendor = "EMBERVMM";

GenericAddress io_register(uint16_t port) {
    return GenericAddress{.space = AddressSpace::SystemIo,
                          .bit_width = 8,
                          .bit_offset = 0,
                          .access_size = AccessSize::Byte,
                          .address = port};
}

} // namespace

std::vector<uint8_t> build_rsdp(uint64_t xsdt_address) {
    TableWriter t;
    t.ascii("RSD PTR ", 8);
    t.u8(0); // checksum over bytes 0-19 (the ACPI 1.0 structure)
    t.ascii(kOemId, 6);
    t.u8(2);  // revision 2: ACPI 2.0 and later, XSDT present
    t.u32(0); // RsdtAddress: no RSDT; Linux uses the XSDT when revision > 1
    t.u32(static_cast<uint32_t>(kRsdpSize));
    t.u64(xsdt_address);
    t.u8(0); // extended checksum over all 36 bytes
    t.zeros(3);
    auto& b = t.data();
    b[8] = checksum_byte(std::span(b).first(20));
    b[32] = checksum_byte(b);
    return std::move(b);
}

std::vector<uint8_t> build_xsdt(std::span<const uint64_t> table_addresses) {
    TableWriter t = begin_sdt("XSDT", kXsdtRevision);
    for (uint64_t address : table_addresses)
        t.u64(address);
    return finish_sdt(std::move(t));
}

std::vector<uint8_t> build_fadt(uint64_t dsdt_address) {
    // Offsets are those of ACPI 6.4 Table 5.9. In a hardware-reduced FADT every
    // fixed-hardware field (PM1/PM2/GPE blocks, PM timer, SCI_INT, SMI_CMD, C-state
    // latencies) is ignored by OSPM (§5.2.9), so they stay zero.
    TableWriter t = begin_sdt("FACP", kFadtRevision);
    t.u32(0);       // 36 FIRMWARE_CTRL: no FACS (optional in HW-reduced mode)
    t.u32(0);       // 40 DSDT: X_DSDT below supersedes it
    t.u8(0);        // 44 reserved
    t.u8(0);        // 45 Preferred_PM_Profile: unspecified
    t.u16(0);       // 46 SCI_INT: no SCI
    t.u32(0);       // 48 SMI_CMD: no SMM, ACPI is always enabled
    t.zeros(4);     // 52 ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, PSTATE_CNT
    t.zeros(8 * 4); // 56 PM1a/b EVT, PM1a/b CNT, PM2 CNT, PM TMR, GPE0, GPE1 blocks
    t.zeros(8);     // 88 block lengths, GPE1_BASE, CST_CNT
    t.zeros(4 * 2); // 96 P_LVL2_LAT, P_LVL3_LAT, FLUSH_SIZE, FLUSH_STRIDE
    t.zeros(5);     // 104 DUTY_OFFSET, DUTY_WIDTH, DAY_ALRM, MON_ALRM, CENTURY
    // 109 IAPC_BOOT_ARCH: Linux (arch/x86/kernel/acpi/boot.c, acpi_parse_fadt)
    // marks the i8042 "firmware absent" unless the 8042 flag is set, then the
    // i8042 driver gives up when PNP finds nothing; VGA_NOT_PRESENT sets
    // x86_platform.legacy.no_vga so nothing probes VGA memory; CMOS_RTC_NOT_PRESENT
    // stops it registering rtc_cmos for ports 0x70/0x71, where ember has no device
    // (the wall clock comes from kvmclock).
    t.u16(kBootArch8042 | kBootArchVgaNotPresent | kBootArchCmosRtcNotPresent);
    t.u8(0); // 111 reserved
    // 112 Flags: HW_REDUCED_ACPI makes Linux skip the PIT and the 8259 PIC
    // (acpi_generic_reduced_hw_init) and use the sleep registers for S5.
    // RESET_REG_SUP makes acpi_reboot() (drivers/acpi/reboot.c) write RESET_VALUE.
    t.u32(kFadtHwReducedAcpi | kFadtResetRegSup | kFadtPwrButton | kFadtSlpButton);
    t.gas(io_register(platform::kAcpiResetPort)); // 116 RESET_REG
    t.u8(platform::kAcpiResetValue);              // 128 RESET_VALUE
    t.u16(0);                                     // 129 ARM_BOOT_ARCH
    t.u8(kFadtMinorVersion);                      // 131 FADT Minor Version
    t.u64(0);                                     // 132 X_FIRMWARE_CTRL
    t.u64(dsdt_address);                          // 140 X_DSDT
    t.zeros(8 * kGenericAddressSize);             // 148 X_PM1a_EVT_BLK .. X_GPE1_BLK
    // 244 SLEEP_CONTROL_REG, 256 SLEEP_STATUS_REG (§4.8.3.7, §4.8.3.8). Linux
    // registers ACPI power-off only if both are non-zero and \_S5 exists
    // (drivers/acpi/sleep.c, acpi_sleep_state_supported).
    t.gas(io_register(platform::kAcpiSleepControlPort));
    t.gas(io_register(platform::kAcpiSleepStatusPort));
    t.ascii(kHypervisorVendor, 8); // 268 Hypervisor Vendor Identity
    return finish_sdt(std::move(t));
}

std::vector<uint8_t> build_madt(uint32_t cpus) {
    if (cpus == 0 || cpus > kMaxCpus)
        throw Error(fmt::format("cannot describe {} vcpus in the MADT: 1 to {} are supported", cpus,
                                kMaxCpus));
    TableWriter t = begin_sdt("APIC", kMadtRevision);
    t.u32(static_cast<uint32_t>(platform::kLocalApicAddr));
    // Flags: PCAT_COMPAT clear. Interrupts reach the guest through the IOAPIC only:
    // in hardware-reduced mode Linux swaps in null_legacy_pic and never programs
    // the 8259s that KVM's irqchip models, and the flag would only make newer
    // kernels assume the 8259s exist (§5.2.12, Table 5.20).
    t.u32(0);
    for (uint32_t cpu = 0; cpu < cpus; ++cpu) {
        // Processor Local APIC structure (§5.2.12.2).
        t.u8(0);                         // type
        t.u8(8);                         // length
        t.u8(static_cast<uint8_t>(cpu)); // ACPI Processor UID
        t.u8(static_cast<uint8_t>(cpu)); // APIC ID: KVM gives vcpu N APIC ID N
        t.u32(1);                        // flags: Enabled
    }
    // I/O APIC structure (§5.2.12.3). No Interrupt Source Overrides: the ISA IRQs
    // in use (1, 4) map 1:1 to GSIs with ISA's edge/active-high default, which is
    // what §5.2.12.5 assumes without an override; IRQ0's usual override to GSI 2
    // serves the PIT, which Linux does not use in hardware-reduced mode.
    t.u8(1);  // type
    t.u8(12); // length
    t.u8(0);  // I/O APIC ID
    t.u8(0);  // reserved
    t.u32(static_cast<uint32_t>(platform::kIoApicAddr));
    t.u32(0); // Global System Interrupt Base
    return finish_sdt(std::move(t));
}

} // namespace ember::acpi
