// The DSDT: the one place a hardware-reduced guest learns about devices that are
// not on a discoverable bus. Linux enumerates PNP IDs (PNP0501, PNP0303) through
// pnpacpi and every other _HID as a platform device (QEMU0001 -> pvpanic-mmio,
// LNRO0005 -> virtio-mmio), taking each device's registers and interrupt from _CRS.
#include <fmt/format.h>

#include "vmm/acpi/aml.h"
#include "vmm/acpi/sdt.h"
#include "vmm/acpi/tables.h"
#include "vmm/platform.h"

namespace ember::acpi {
namespace {

namespace p = platform;
using aml::Bytes;

// DSDT revision 2: AML integers are 64 bits wide (§5.2.11.1).
constexpr uint8_t kDsdtRevision = 2;

// \_S5 (§7.4.2): Package {SLP_TYPa, SLP_TYPb, reserved, reserved}. ACPICA's
// acpi_hw_extended_sleep writes SLP_TYPa to the sleep control register; there is
// no PM1b block, so SLP_TYPb only repeats it.
Bytes s5_object() {
    return aml::name("_S5_",
                     aml::package({aml::integer(p::kSleepTypeS5), aml::integer(p::kSleepTypeS5),
                                   aml::integer(0), aml::integer(0)}));
}

// A byte-wide legacy port, decoded on all 16 address bits.
Bytes port(uint16_t base, uint8_t length) {
    return aml::io(base, base, 1, length);
}

// The 16550 UART on COM1; Linux's 8250_pnp driver claims PNP0501.
Bytes com1() {
    return aml::device(
        "COM1", {aml::name("_HID", aml::eisa_id_object("PNP0501")),
                 aml::name("_CRS", aml::resource_template(
                                       {port(p::kCom1Port, 8),
                                        aml::irq_no_flags(static_cast<uint8_t>(p::kCom1Gsi))}))});
}

// The i8042 keyboard controller. Linux's i8042_pnp_kbd_probe takes the data port
// from the first IO resource and the command port from the second, each 1 byte.
Bytes i8042() {
    return aml::device(
        "KBD_", {aml::name("_HID", aml::eisa_id_object("PNP0303")),
                 aml::name("_CRS", aml::resource_template(
                                       {port(p::kI8042DataPort, 1), port(p::kI8042CommandPort, 1),
                                        aml::irq_no_flags(static_cast<uint8_t>(p::kI8042Gsi))}))});
}

// pvpanic, described as QEMU's pvpanic-isa does (one I/O port); Linux's
// pvpanic-mmio driver matches "QEMU0001" and accepts an I/O resource.
Bytes pvpanic() {
    return aml::device("PEVT",
                       {aml::name("_HID", aml::string("QEMU0001")),
                        aml::name("_CRS", aml::resource_template({port(p::kPvPanicPort, 1)}))});
}

// A virtio-mmio transport (Linux drivers/virtio/virtio_mmio.c matches LNRO0005).
// Its interrupt goes straight to an IOAPIC pin through irqfd: edge, active high.
Bytes virtio_mmio(size_t index, const VirtioMmioSlot& slot) {
    return aml::device(
        fmt::format("V{:03}", index),
        {aml::name("_HID", aml::string("LNRO0005")), aml::name("_UID", aml::integer(index)),
         aml::name("_CRS",
                   aml::resource_template(
                       {aml::memory32_fixed(true, static_cast<uint32_t>(slot.base),
                                            static_cast<uint32_t>(slot.size)),
                        aml::interrupt(slot.gsi, aml::Trigger::Edge, aml::Polarity::ActiveHigh,
                                       aml::Sharing::Exclusive)}))});
}

} // namespace

std::vector<uint8_t> build_dsdt(const PlatformConfig& config) {
    std::vector<Bytes> devices{com1(), i8042(), pvpanic()};
    for (size_t i = 0; i < config.virtio_mmio.size(); ++i)
        devices.push_back(virtio_mmio(i, config.virtio_mmio[i]));

    TableWriter t = begin_sdt("DSDT", kDsdtRevision);
    t.bytes(s5_object());
    t.bytes(aml::scope("\\_SB_", devices));
    return finish_sdt(std::move(t));
}

} // namespace ember::acpi
