// ACPI tables: read back the blob the way Linux does (RSDP -> XSDT -> FADT ->
// DSDT, MADT) and check each field against ACPI 6.4 §5.2 and vmm/platform.h.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "vmm/acpi/acpi.h"
#include "vmm/acpi/aml.h"
#include "vmm/acpi/sdt.h"
#include "vmm/acpi/tables.h"
#include "vmm/errors.h"
#include "vmm/platform.h"

using namespace ember;
using namespace ember::acpi;
namespace p = ember::platform;
using Bytes = std::vector<uint8_t>;

namespace {

constexpr uint64_t kLoad = p::kAcpiTablesAddr;

uint64_t le(std::span<const uint8_t> b, size_t off, size_t width) {
    REQUIRE(off + width <= b.size());
    uint64_t v = 0;
    for (size_t i = 0; i < width; ++i)
        v |= uint64_t{b[off + i]} << (8 * i);
    return v;
}

uint8_t sum(std::span<const uint8_t> b) {
    return static_cast<uint8_t>(std::accumulate(b.begin(), b.end(), 0u));
}

std::string text(std::span<const uint8_t> b, size_t off, size_t len) {
    REQUIRE(off + len <= b.size());
    return std::string(b.begin() + static_cast<ptrdiff_t>(off),
                       b.begin() + static_cast<ptrdiff_t>(off + len));
}

bool contains(std::span<const uint8_t> hay, std::span<const uint8_t> needle) {
    return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

size_t count(std::span<const uint8_t> hay, std::span<const uint8_t> needle) {
    size_t n = 0;
    for (auto it = hay.begin();
         (it = std::search(it, hay.end(), needle.begin(), needle.end())) != hay.end(); ++it)
        ++n;
    return n;
}

// A table inside the blob, found through its guest-physical address; checks the
// header (§5.2.6) on the way: signature, length within the blob, checksum, OEM id.
std::span<const uint8_t> table_at(const Bytes& blob, uint64_t address, std::string_view signature) {
    REQUIRE(address >= kLoad);
    const size_t off = address - kLoad;
    REQUIRE(off + kSdtHeaderSize <= blob.size());
    CHECK(text(blob, off, 4) == signature);
    const size_t length = le(blob, off + 4, 4);
    REQUIRE(length >= kSdtHeaderSize);
    REQUIRE(off + length <= blob.size());
    const auto table = std::span(blob).subspan(off, length);
    CHECK(sum(table) == 0);
    CHECK(text(table, 10, 6) == "EMBER ");
    CHECK(text(table, 16, 8) == "EMBERVM ");
    CHECK(text(table, 28, 4) == "EMBR");
    return table;
}

struct Tables {
    Bytes blob;
    std::span<const uint8_t> xsdt, fadt, madt, dsdt;
};

Tables walk(const PlatformConfig& config) {
    Tables t{build_tables(config, kLoad), {}, {}, {}, {}};
    const Bytes& b = t.blob;
    REQUIRE(b.size() >= kRsdpSize);
    t.xsdt = table_at(b, le(b, 24, 8), "XSDT");
    REQUIRE(t.xsdt.size() == kSdtHeaderSize + 16);
    t.fadt = table_at(b, le(t.xsdt, 36, 8), "FACP");
    t.madt = table_at(b, le(t.xsdt, 44, 8), "APIC");
    t.dsdt = table_at(b, le(t.fadt, 140, 8), "DSDT");
    return t;
}

PlatformConfig with_slots(uint32_t cpus, size_t slots) {
    PlatformConfig c{.cpus = cpus, .virtio_mmio = {}};
    for (size_t i = 0; i < slots; ++i)
        c.virtio_mmio.push_back({.base = p::kVirtioMmioBase + i * p::kVirtioMmioSize,
                                 .size = p::kVirtioMmioSize,
                                 .gsi = p::kVirtioFirstGsi + static_cast<uint32_t>(i)});
    return c;
}

} // namespace

TEST_CASE("RSDP: ACPI 2.0 form at offset 0 with both checksums (§5.2.5.3)") {
    const Bytes blob = build_tables(with_slots(1, 0), kLoad);
    CHECK(text(blob, 0, 8) == "RSD PTR ");
    CHECK(sum(std::span(blob).first(20)) == 0);        // ACPI 1.0 checksum
    CHECK(sum(std::span(blob).first(kRsdpSize)) == 0); // extended checksum
    CHECK(text(blob, 9, 6) == "EMBER ");
    CHECK(blob[15] == 2);                // revision
    CHECK(le(blob, 16, 4) == 0);         // no RSDT
    CHECK(le(blob, 20, 4) == kRsdpSize); // length
    // Linux's legacy scan (acpi_find_root_pointer) looks at 16-byte steps in
    // 0xE0000..0xFFFFF: the blob must start on such a step and end below 1 MiB.
    CHECK(kLoad % 16 == 0);
    CHECK(kLoad >= 0xE0000);
    CHECK(kLoad + blob.size() <= 0x10'0000);
    // Flipping any byte in the first 20 breaks the checksum that covers it.
    Bytes bad = blob;
    bad[12] ^= 1;
    CHECK(sum(std::span(bad).first(20)) != 0);
}

TEST_CASE("build_rsdp alone: exact layout") {
    const Bytes r = build_rsdp(0x1122'3344'5566'7788);
    REQUIRE(r.size() == 36);
    CHECK(le(r, 24, 8) == 0x1122'3344'5566'7788u);
    CHECK(sum(std::span(r).first(20)) == 0);
    CHECK(sum(r) == 0);
    CHECK(r[33] == 0);
    CHECK(r[34] == 0);
    CHECK(r[35] == 0);
}

TEST_CASE("XSDT points at the FADT and MADT; FADT's X_DSDT at the DSDT") {
    const Tables t = walk(with_slots(2, 3));
    CHECK(t.xsdt[8] == 1); // XSDT revision
    // Every table sits inside the blob (table_at checked signatures and checksums);
    // none overlap.
    const auto start = [&](std::span<const uint8_t> s) { return s.data() - t.blob.data(); };
    CHECK(start(t.xsdt) + static_cast<ptrdiff_t>(t.xsdt.size()) <= start(t.fadt));
    CHECK(start(t.fadt) + static_cast<ptrdiff_t>(t.fadt.size()) <= start(t.madt));
    CHECK(start(t.madt) + static_cast<ptrdiff_t>(t.madt.size()) <= start(t.dsdt));
    CHECK(static_cast<size_t>(start(t.dsdt)) + t.dsdt.size() == t.blob.size());
}

TEST_CASE("FADT: revision 6, hardware-reduced, reset and sleep registers (§5.2.9)") {
    const Tables t = walk(with_slots(1, 1));
    const auto f = t.fadt;
    REQUIRE(f.size() == 276);
    CHECK(f[8] == 6);          // major revision
    CHECK(f[131] == 4);        // minor revision (ACPI 6.4)
    CHECK(le(f, 36, 4) == 0);  // FIRMWARE_CTRL: no FACS
    CHECK(le(f, 40, 4) == 0);  // DSDT: only X_DSDT is used
    CHECK(le(f, 46, 2) == 0);  // SCI_INT: none in hardware-reduced mode
    CHECK(le(f, 132, 8) == 0); // X_FIRMWARE_CTRL
    // IAPC_BOOT_ARCH (Table 5.11): bit 1 8042, bit 2 VGA Not Present, bit 5 CMOS
    // RTC Not Present; bit 0 (LPC/ISA legacy devices) clear.
    CHECK(le(f, 109, 2) == 0x0026);
    // Flags (Table 5.10): bit 4 PWR_BUTTON, bit 5 SLP_BUTTON, bit 10
    // RESET_REG_SUP, bit 20 HW_REDUCED_ACPI.
    CHECK(le(f, 112, 4) == 0x0010'0430);
    // RESET_REG GAS (§5.2.3.2): SystemIO (1), 8 bits, offset 0, byte access (1).
    CHECK(Bytes(f.begin() + 116, f.begin() + 128) ==
          Bytes{0x01, 0x08, 0x00, 0x01, 0x02, 0x06, 0, 0, 0, 0, 0, 0});
    CHECK(le(f, 120, 8) == p::kAcpiResetPort);
    CHECK(f[128] == p::kAcpiResetValue);
    // X_PM1a_EVT_BLK .. X_GPE1_BLK: all absent.
    CHECK(std::all_of(f.begin() + 148, f.begin() + 244, [](uint8_t b) { return b == 0; }));
    // SLEEP_CONTROL_REG at 244 and SLEEP_STATUS_REG at 256.
    CHECK(Bytes(f.begin() + 244, f.begin() + 248) == Bytes{0x01, 0x08, 0x00, 0x01});
    CHECK(le(f, 248, 8) == p::kAcpiSleepControlPort);
    CHECK(Bytes(f.begin() + 256, f.begin() + 260) == Bytes{0x01, 0x08, 0x00, 0x01});
    CHECK(le(f, 260, 8) == p::kAcpiSleepStatusPort);
    CHECK(text(f, 268, 8) == "EMBERVMM");
}

TEST_CASE("MADT with 1 CPU: LAPIC address, one LAPIC, one IOAPIC (§5.2.12)") {
    const Tables t = walk(with_slots(1, 0));
    const auto m = t.madt;
    REQUIRE(m.size() == 36 + 8 + 8 + 12);
    CHECK(m[8] == 5);
    CHECK(le(m, 36, 4) == p::kLocalApicAddr);
    CHECK(le(m, 40, 4) == 0); // no PCAT_COMPAT
    // Processor Local APIC: type 0, length 8, UID 0, APIC ID 0, flags Enabled.
    CHECK(Bytes(m.begin() + 44, m.begin() + 52) == Bytes{0x00, 0x08, 0x00, 0x00, 0x01, 0, 0, 0});
    // I/O APIC: type 1, length 12, id 0, reserved, 0xFEC00000, GSI base 0.
    CHECK(Bytes(m.begin() + 52, m.begin() + 64) ==
          Bytes{0x01, 0x0C, 0x00, 0x00, 0x00, 0x00, 0xC0, 0xFE, 0x00, 0x00, 0x00, 0x00});
}

TEST_CASE("MADT with 4 CPUs: APIC ID = vcpu index, all enabled") {
    const Tables t = walk(with_slots(4, 0));
    const auto m = t.madt;
    REQUIRE(m.size() == 36 + 8 + 4 * 8 + 12);
    for (uint8_t cpu = 0; cpu < 4; ++cpu) {
        const size_t off = 44 + 8u * cpu;
        CAPTURE(cpu);
        CHECK(Bytes(m.begin() + static_cast<ptrdiff_t>(off),
                    m.begin() + static_cast<ptrdiff_t>(off + 8)) ==
              Bytes{0x00, 0x08, cpu, cpu, 0x01, 0, 0, 0});
    }
    CHECK(m[44 + 32] == 1); // then the IOAPIC
    // The largest machine: 254 LAPICs.
    CHECK(build_madt(254).size() == 36 + 8 + 254 * 8 + 12);
}

TEST_CASE("DSDT: \\_S5, COM1, i8042, pvpanic, one LNRO0005 per slot (§5.2.11.1)") {
    for (size_t slots : {size_t{0}, size_t{1}, size_t{p::kMaxVirtioDevices}}) {
        CAPTURE(slots);
        const Tables t = walk(with_slots(2, slots));
        const auto d = t.dsdt;
        CHECK(d[8] == 2); // revision 2: 64-bit integers
        // Name (_S5, Package (4) {5, 5, Zero, Zero}) comes first.
        const Bytes s5{0x08, '_',
                       'S',  '5',
                       '_',  0x12,
                       0x08, 0x04,
                       0x0A, p::kSleepTypeS5,
                       0x0A, p::kSleepTypeS5,
                       0x00, 0x00};
        CHECK(Bytes(d.begin() + 36, d.begin() + 50) == s5);
        // Then Scope (\_SB) spanning the rest of the table: the PkgLength (two
        // bytes here, §20.2.4) counts everything after the ScopeOp.
        REQUIRE(d[50] == 0x10);
        const size_t scope_len = (d[51] & 0x0F) | (size_t{d[52]} << 4);
        CHECK((d[51] >> 6) == 1);
        CHECK(scope_len == d.size() - 51);
        CHECK(Bytes(d.begin() + 53, d.begin() + 58) == Bytes{0x5C, '_', 'S', 'B', '_'});

        // COM1 exactly as derived by hand in acpi_aml_test.cpp.
        // clang-format off
        const Bytes com1{
            0x5B, 0x82, 0x25, 'C', 'O', 'M', '1',
            0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x05, 0x01,
            0x08, '_', 'C', 'R', 'S', 0x11, 0x10, 0x0A, 0x0D,
            0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08,
            0x22, 0x10, 0x00,
            0x79, 0x00};
        // clang-format on
        CHECK(contains(d, com1));
        // i8042: EisaId PNP0303, data port then command port, IRQ 1.
        // clang-format off
        const Bytes kbd_crs{
            0x47, 0x01, 0x60, 0x00, 0x60, 0x00, 0x01, 0x01, // IO (Decode16, 0x60, 0x60, 1, 1)
            0x47, 0x01, 0x64, 0x00, 0x64, 0x00, 0x01, 0x01, // IO (Decode16, 0x64, 0x64, 1, 1)
            0x22, 0x02, 0x00,                               // IRQNoFlags () {1}
            0x79, 0x00};
        // clang-format on
        CHECK(contains(d, Bytes{0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x03, 0x03}));
        CHECK(contains(d, kbd_crs));
        // pvpanic: _HID "QEMU0001", one port at 0x505.
        CHECK(contains(d, aml::name("_HID", aml::string("QEMU0001"))));
        CHECK(contains(d, Bytes{0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01, 0x79, 0x00}));

        const Bytes lnro = aml::string("LNRO0005");
        CHECK(count(d, lnro) == slots);
        for (size_t i = 0; i < slots; ++i) {
            CAPTURE(i);
            const uint64_t base = p::kVirtioMmioBase + i * p::kVirtioMmioSize;
            const auto gsi = static_cast<uint8_t>(p::kVirtioFirstGsi + i);
            // Device (V0ii) { Name (_HID, "LNRO0005") Name (_UID, i) Name (_CRS, ...) }:
            // content 4 + 15 + 6 + 32 = 57 -> PkgLength 58 = 0x3A.
            // clang-format off
            const Bytes dev{
                0x5B, 0x82, 0x3A, 'V', '0', static_cast<uint8_t>('0' + i / 10),
                static_cast<uint8_t>('0' + i % 10),
                0x08, '_', 'H', 'I', 'D', 0x0D, 'L', 'N', 'R', 'O', '0', '0', '0', '5', 0x00,
                0x08, '_', 'U', 'I', 'D'}; // followed by ZeroOp, OneOp, or BytePrefix i
            // clang-format on
            Bytes expected = dev;
            if (i <= 1)
                expected.push_back(static_cast<uint8_t>(i));
            else {
                // BytePrefix i is one byte longer than Zero/One: PkgLength 59.
                expected[2] = 0x3B;
                expected.push_back(0x0A);
                expected.push_back(static_cast<uint8_t>(i));
            }
            const Bytes crs{0x08, '_', 'C', 'R', 'S', 0x11, 0x1A, 0x0A, 0x17,
                            // Memory32Fixed (ReadWrite, base, 0x1000)
                            0x86, 0x09, 0x00, 0x01, static_cast<uint8_t>(base),
                            static_cast<uint8_t>(base >> 8), static_cast<uint8_t>(base >> 16),
                            static_cast<uint8_t>(base >> 24), 0x00, 0x10, 0x00, 0x00,
                            // Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) {gsi}
                            0x89, 0x06, 0x00, 0x03, 0x01, gsi, 0x00, 0x00, 0x00, 0x79, 0x00};
            expected.insert(expected.end(), crs.begin(), crs.end());
            CHECK(contains(d, expected));
        }
    }
}

TEST_CASE("build_tables rejects configurations it cannot describe") {
    CHECK_THROWS_AS(build_tables(with_slots(0, 0), kLoad), Error);
    CHECK_THROWS_AS(build_tables(with_slots(255, 0), kLoad), Error);
    CHECK_NOTHROW(build_tables(with_slots(254, 8), kLoad));
    CHECK_THROWS_AS(build_madt(0), Error);
    // RSDP alignment (§5.2.5.1).
    CHECK_THROWS_AS(build_tables(with_slots(1, 0), kLoad + 8), Error);
    // Too small a reservation: the message names both sizes.
    try {
        build_tables(with_slots(4, 2), kLoad, 256);
        FAIL("expected an Error");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("256") != std::string::npos);
    }
    // Exactly the needed size is enough.
    const size_t needed = build_tables(with_slots(4, 2), kLoad).size();
    CHECK(build_tables(with_slots(4, 2), kLoad, needed).size() == needed);
    CHECK_THROWS_AS(build_tables(with_slots(4, 2), kLoad, needed - 1), Error);

    CHECK_THROWS_AS(build_tables(with_slots(1, p::kMaxVirtioDevices + 1), kLoad), Error);
    auto c = with_slots(1, 2);
    c.virtio_mmio[1].gsi = c.virtio_mmio[0].gsi; // shared GSI
    CHECK_THROWS_AS(build_tables(c, kLoad), Error);
    c = with_slots(1, 1);
    c.virtio_mmio[0].gsi = p::kCom1Gsi;
    CHECK_THROWS_AS(build_tables(c, kLoad), Error);
    c.virtio_mmio[0].gsi = p::kIoApicPins;
    CHECK_THROWS_AS(build_tables(c, kLoad), Error);
    c = with_slots(1, 1);
    c.virtio_mmio[0].base = 0xFFFF'F800; // window crosses 4 GiB
    CHECK_THROWS_AS(build_tables(c, kLoad), Error);
    c.virtio_mmio[0].base = 0x1'0000'0000;
    CHECK_THROWS_AS(build_tables(c, kLoad), Error);
    c = with_slots(1, 1);
    c.virtio_mmio[0].size = 0;
    CHECK_THROWS_AS(build_tables(c, kLoad), Error);
}
