// The ACPI tables ember gives a guest: the entry point the boot code calls.
//
// Stock distribution kernels (Debian's cloud flavour has no MP-table support)
// find CPUs, the IOAPIC and every platform device only through ACPI, as on
// Firecracker and Cloud Hypervisor. The tables describe a hardware-reduced ACPI
// platform (ACPI 6.4 §4.1): no PM1/GPE blocks, no SCI, power-off and reset
// through the FADT's sleep control and reset registers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ember::acpi {

// One virtio-mmio transport: its register window and its interrupt line.
struct VirtioMmioSlot {
    uint64_t base{0};
    uint64_t size{0};
    uint32_t gsi{0};
};

struct PlatformConfig {
    uint32_t cpus{1};
    std::vector<VirtioMmioSlot> virtio_mmio;
};

// All tables laid out for the guest-physical address `load_address`
// (platform::kAcpiTablesAddr): the RSDP at offset 0, where Linux's legacy scan
// of 0xE0000-0xFFFFF (16-byte steps) finds it, then XSDT, FADT, MADT and DSDT.
// Throws ember::Error when the blob would exceed platform::kAcpiTablesMax, when
// cpus is 0 or above 254, when load_address is not 16-byte aligned, or when a
// virtio-mmio slot does not fit the platform (window above 4 GiB, GSI beyond the
// IOAPIC's pins, more than platform::kMaxVirtioDevices slots).
std::vector<uint8_t> build_tables(const PlatformConfig& config, uint64_t load_address);

// The same with an explicit size limit instead of platform::kAcpiTablesMax.
std::vector<uint8_t> build_tables(const PlatformConfig& config, uint64_t load_address,
                                  size_t max_size);

} // namespace ember::acpi
