// Builders for the individual ACPI tables (ACPI 6.4 §5.2). build_tables() in
// acpi.h composes them; tests and tools/acpi-dump call them one by one.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/acpi/acpi.h"

namespace ember::acpi {

inline constexpr size_t kRsdpSize = 36;
inline constexpr size_t kFadtSize = 276;  // revision 6 (ACPI 6.0 and later)
inline constexpr uint32_t kMaxCpus = 254; // xAPIC IDs 0-254; 255 is broadcast

// FADT Flags (§5.2.9, Table 5.10).
inline constexpr uint32_t kFadtPwrButton = 1u << 4; // no fixed-feature power button
inline constexpr uint32_t kFadtSlpButton = 1u << 5; // no fixed-feature sleep button
inline constexpr uint32_t kFadtResetRegSup = 1u << 10;
inline constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;
// FADT IA-PC Boot Architecture Flags (§5.2.9.3, Table 5.11).
inline constexpr uint16_t kBootArch8042 = 1u << 1;
inline constexpr uint16_t kBootArchVgaNotPresent = 1u << 2;
inline constexpr uint16_t kBootArchCmosRtcNotPresent = 1u << 5;

// Root System Description Pointer (§5.2.5.3), ACPI 2.0+ form: revision 2,
// RsdtAddress 0 (the XSDT supersedes it), both checksums.
std::vector<uint8_t> build_rsdp(uint64_t xsdt_address);

// Extended System Description Table (§5.2.8): one 64-bit pointer per table.
std::vector<uint8_t> build_xsdt(std::span<const uint64_t> table_addresses);

// Fixed ACPI Description Table (§5.2.9), revision 6, hardware-reduced.
std::vector<uint8_t> build_fadt(uint64_t dsdt_address);

// Multiple APIC Description Table (§5.2.12): one enabled Processor Local APIC
// per vcpu (ACPI processor UID and APIC ID = vcpu index), one I/O APIC.
std::vector<uint8_t> build_madt(uint32_t cpus);

// Differentiated System Description Table (§5.2.11.1): \_S5 and the devices.
std::vector<uint8_t> build_dsdt(const PlatformConfig& config);

} // namespace ember::acpi
