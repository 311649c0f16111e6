#include "vmm/acpi/acpi.h"

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/format.h>

#include "vmm/acpi/sdt.h"
#include "vmm/acpi/tables.h"
#include "vmm/errors.h"
#include "vmm/platform.h"

namespace ember::acpi {
namespace {

// The RSDP must sit on a 16-byte boundary for the legacy scan (§5.2.5.1); the
// other tables need no alignment, 16 bytes just keeps a hex dump readable.
constexpr uint64_t kAlignment = 16;
constexpr uint64_t kMmioLimit = uint64_t{1} << 32;

uint64_t align_up(uint64_t value) {
    return (value + kAlignment - 1) & ~(kAlignment - 1);
}

void validate(const PlatformConfig& config, uint64_t load_address, size_t max_size) {
    if (config.cpus == 0 || config.cpus > kMaxCpus)
        throw Error(fmt::format("{} vcpus requested: ember's ACPI tables describe 1 to {}",
                                config.cpus, kMaxCpus));
    if (load_address % kAlignment != 0)
        throw Error(fmt::format("ACPI tables address {:#x} is not 16-byte aligned", load_address));
    if (load_address > UINT64_MAX - max_size)
        throw Error(fmt::format("ACPI tables address {:#x} is too high", load_address));
    if (config.virtio_mmio.size() > platform::kMaxVirtioDevices)
        throw Error(fmt::format("{} virtio-mmio devices requested, at most {} are supported",
                                config.virtio_mmio.size(), platform::kMaxVirtioDevices));
    std::vector<uint32_t> gsis;
    for (const auto& slot : config.virtio_mmio) {
        // Memory32Fixed (§6.4.3.4) holds a 32-bit base and length.
        if (slot.size == 0 || slot.size > kMmioLimit || slot.base > kMmioLimit - slot.size)
            throw Error(
                fmt::format("virtio-mmio window {:#x}+{:#x} must be non-empty and below 4 GiB",
                            slot.base, slot.size));
        if (slot.gsi >= platform::kIoApicPins)
            throw Error(fmt::format("virtio-mmio GSI {} is beyond the IOAPIC's {} pins", slot.gsi,
                                    platform::kIoApicPins));
        // GSI 0 and 2 carry the PIT under KVM's default routing; 1 and 4 are taken.
        if (slot.gsi == 0 || slot.gsi == 2 || slot.gsi == platform::kI8042Gsi ||
            slot.gsi == platform::kCom1Gsi || std::ranges::count(gsis, slot.gsi) != 0)
            throw Error(fmt::format("virtio-mmio GSI {} is already in use", slot.gsi));
        gsis.push_back(slot.gsi);
    }
}

} // namespace

std::vector<uint8_t> build_tables(const PlatformConfig& config, uint64_t load_address,
                                  size_t max_size) {
    validate(config, load_address, max_size);
    const std::vector<uint8_t> dsdt = build_dsdt(config);
    const std::vector<uint8_t> madt = build_madt(config.cpus);

    constexpr size_t kXsdtEntries = 2; // FADT, MADT
    const uint64_t rsdp_offset = 0;
    const uint64_t xsdt_offset = align_up(rsdp_offset + kRsdpSize);
    const uint64_t fadt_offset = align_up(xsdt_offset + kSdtHeaderSize + 8 * kXsdtEntries);
    const uint64_t madt_offset = align_up(fadt_offset + kFadtSize);
    const uint64_t dsdt_offset = align_up(madt_offset + madt.size());
    const uint64_t total = dsdt_offset + dsdt.size();
    if (total > max_size)
        throw Error(fmt::format("ACPI tables need {} bytes but only {} are reserved for them",
                                total, max_size));

    const std::array<uint64_t, kXsdtEntries> pointers{load_address + fadt_offset,
                                                      load_address + madt_offset};
    const std::vector<uint8_t> fadt = build_fadt(load_address + dsdt_offset);
    const std::vector<uint8_t> xsdt = build_xsdt(pointers);
    const std::vector<uint8_t> rsdp = build_rsdp(load_address + xsdt_offset);

    std::vector<uint8_t> blob(total, 0);
    const auto place = [&](uint64_t offset, const std::vector<uint8_t>& table) {
        std::memcpy(blob.data() + offset, table.data(), table.size());
    };
    place(rsdp_offset, rsdp);
    place(xsdt_offset, xsdt);
    place(fadt_offset, fadt);
    place(madt_offset, madt);
    place(dsdt_offset, dsdt);
    return blob;
}

std::vector<uint8_t> build_tables(const PlatformConfig& config, uint64_t load_address) {
    return build_tables(config, load_address, platform::kAcpiTablesMax);
}

} // namespace ember::acpi
