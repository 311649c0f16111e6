// AML encoder: every expectation below is derived by hand from the ACPI 6.4
// specification section cited next to it (§20 AML grammar, §6.4 resource
// descriptors), not produced by the encoder under test.
#include <doctest/doctest.h>

#include "vmm/acpi/aml.h"
#include "vmm/errors.h"

using namespace ember;
using namespace ember::acpi;
using aml::Bytes;

TEST_CASE("AML PkgLength: one byte up to 63, then 2, 3, 4 bytes (§20.2.4)") {
    // One byte: bits 7-6 = 0, value in bits 5-0.
    CHECK(aml::encode_pkg_length(0) == Bytes{0x00});
    CHECK(aml::encode_pkg_length(63) == Bytes{0x3F});
    // Two bytes: lead = 0b01 << 6 | low nibble, then value >> 4.
    CHECK(aml::encode_pkg_length(64) == Bytes{0x40, 0x04});
    CHECK(aml::encode_pkg_length(4095) == Bytes{0x4F, 0xFF});
    // Three bytes: lead = 0b10 << 6 | low nibble, then value >> 4, value >> 12.
    CHECK(aml::encode_pkg_length(4096) == Bytes{0x80, 0x00, 0x01});
    CHECK(aml::encode_pkg_length(0xF'FFFF) == Bytes{0x8F, 0xFF, 0xFF});
    // Four bytes: lead = 0b11 << 6 | low nibble.
    CHECK(aml::encode_pkg_length(0x10'0000) == Bytes{0xC0, 0x00, 0x00, 0x01});
    CHECK(aml::encode_pkg_length(0x0FFF'FFFF) == Bytes{0xCF, 0xFF, 0xFF, 0xFF});
    CHECK_THROWS_AS(aml::encode_pkg_length(0x1000'0000), Error);
}

TEST_CASE("AML PkgLength for content counts its own bytes (§20.2.4)") {
    // 62 content bytes + 1 length byte = 63: still one byte.
    CHECK(aml::pkg_length_for(62) == Bytes{0x3F});
    // 63 + 1 = 64 does not fit in one byte; with two bytes the value is 65.
    CHECK(aml::pkg_length_for(63) == Bytes{0x41, 0x04});
    // 4093 + 2 = 4095: the largest two-byte value.
    CHECK(aml::pkg_length_for(4093) == Bytes{0x4F, 0xFF});
    // 4094 + 2 = 4096 overflows two bytes; 4094 + 3 = 4097 = 0x1001.
    CHECK(aml::pkg_length_for(4094) == Bytes{0x81, 0x00, 0x01});
    // 0xFFFFC + 3 = 0xFFFFF (largest three-byte); one more needs four bytes.
    CHECK(aml::pkg_length_for(0xF'FFFC) == Bytes{0x8F, 0xFF, 0xFF});
    CHECK(aml::pkg_length_for(0xF'FFFD) == Bytes{0xC1, 0x00, 0x00, 0x01});
    CHECK_THROWS_AS(aml::pkg_length_for(0x0FFF'FFFC), Error);
}

TEST_CASE("AML NameSeg is four characters padded with '_' (§20.2.2)") {
    CHECK(aml::name_seg("COM1") == Bytes{'C', 'O', 'M', '1'});
    CHECK(aml::name_seg("_SB") == Bytes{'_', 'S', 'B', '_'});
    CHECK(aml::name_seg("A") == Bytes{'A', '_', '_', '_'});
    CHECK_THROWS_AS(aml::name_seg(""), Error);
    CHECK_THROWS_AS(aml::name_seg("ABCDE"), Error);
    CHECK_THROWS_AS(aml::name_seg("1ABC"), Error); // LeadNameChar is A-Z or _
    CHECK_THROWS_AS(aml::name_seg("com1"), Error); // lower case is not a NameChar
    CHECK_THROWS_AS(aml::name_seg("A-B"), Error);
}

TEST_CASE("AML NameString: root, parent prefixes, dual and multi name paths (§20.2.2)") {
    CHECK(aml::name_string("_HID") == Bytes{'_', 'H', 'I', 'D'});
    // RootChar '\' = 0x5C, DualNamePrefix 0x2E.
    CHECK(aml::name_string("\\_SB_.COM1") ==
          Bytes{0x5C, 0x2E, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'});
    CHECK(aml::name_string("\\_SB.COM1") == aml::name_string("\\_SB_.COM1"));
    // A lone root: RootChar followed by NullName 0x00.
    CHECK(aml::name_string("\\") == Bytes{0x5C, 0x00});
    // ParentPrefixChar '^' = 0x5E, repeated.
    CHECK(aml::name_string("^^FOO") == Bytes{0x5E, 0x5E, 'F', 'O', 'O', '_'});
    // MultiNamePrefix 0x2F, SegCount 3.
    CHECK(aml::name_string("\\A.B.C") ==
          Bytes{0x5C, 0x2F, 0x03, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C', '_', '_', '_'});
    CHECK_THROWS_AS(aml::name_string(""), Error);
    CHECK_THROWS_AS(aml::name_string("A..B"), Error);
    CHECK_THROWS_AS(aml::name_string("A."), Error);
    CHECK_THROWS_AS(aml::name_string("\\^A"), Error); // root and parent prefixes do not mix
}

TEST_CASE("AML integers pick the shortest encoding (§20.2.3)") {
    CHECK(aml::integer(0) == Bytes{0x00});          // ZeroOp
    CHECK(aml::integer(1) == Bytes{0x01});          // OneOp
    CHECK(aml::integer(UINT64_MAX) == Bytes{0xFF}); // OnesOp (64-bit DSDT)
    CHECK(aml::integer(2) == Bytes{0x0A, 0x02});    // BytePrefix
    CHECK(aml::integer(0xFF) == Bytes{0x0A, 0xFF});
    CHECK(aml::integer(0x100) == Bytes{0x0B, 0x00, 0x01}); // WordPrefix
    CHECK(aml::integer(0xFFFF) == Bytes{0x0B, 0xFF, 0xFF});
    CHECK(aml::integer(0x1'0000) == Bytes{0x0C, 0x00, 0x00, 0x01, 0x00}); // DWordPrefix
    CHECK(aml::integer(0xFFFF'FFFF) == Bytes{0x0C, 0xFF, 0xFF, 0xFF, 0xFF});
    CHECK(aml::integer(0x1'0000'0000) ==
          Bytes{0x0E, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00}); // QWordPrefix
    CHECK(aml::integer(UINT64_MAX - 1) ==
          Bytes{0x0E, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF});
}

TEST_CASE("AML strings are StringPrefix, ASCII, NUL (§20.2.3)") {
    CHECK(aml::string("LNRO0005") == Bytes{0x0D, 'L', 'N', 'R', 'O', '0', '0', '0', '5', 0x00});
    CHECK(aml::string("") == Bytes{0x0D, 0x00});
    CHECK_THROWS_AS(aml::string(std::string_view("a\0b", 3)), Error);
    CHECK_THROWS_AS(aml::string("\x80"), Error);
}

TEST_CASE("AML Buffer and Package carry PkgLength and a count (§20.2.5.4)") {
    const uint8_t three[] = {0xAA, 0xBB, 0xCC};
    // BufferOp, PkgLength = 1 (itself) + 2 (BytePrefix 3) + 3 = 6.
    CHECK(aml::buffer(three) == Bytes{0x11, 0x06, 0x0A, 0x03, 0xAA, 0xBB, 0xCC});
    // 100 bytes: content 2 + 100 = 102, two-byte PkgLength 104 = 0x68 -> 0x48 0x06.
    const Bytes hundred(100, 0);
    const Bytes big = aml::buffer(hundred);
    REQUIRE(big.size() == 105);
    CHECK(Bytes(big.begin(), big.begin() + 5) == Bytes{0x11, 0x48, 0x06, 0x0A, 0x64});

    // Package (4) {5, 5, Zero, Zero}: NumElements 1 + 2 + 2 + 1 + 1 = 7, PkgLength 8.
    CHECK(aml::package({aml::integer(5), aml::integer(5), aml::integer(0), aml::integer(0)}) ==
          Bytes{0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00});
    CHECK(aml::package({}) == Bytes{0x12, 0x02, 0x00});
    CHECK_THROWS_AS(aml::package(std::vector<Bytes>(256, aml::integer(0))), Error);
}

TEST_CASE("EisaId compresses the vendor and byte-swaps (§6.1.5)") {
    // 'P'=16, 'N'=14, 'P'=16: 0 10000 01110 10000 = 0x41D0; product 0x0501;
    // bytes 41 D0 05 01 read as a little-endian DWord = 0x0105D041.
    CHECK(aml::eisa_id("PNP0501") == 0x0105D041u);
    CHECK(aml::eisa_id("PNP0303") == 0x0303D041u);
    CHECK(aml::eisa_id("PNP0A03") == 0x030AD041u); // the PCI root bridge ID in every PC DSDT
    CHECK(aml::eisa_id_object("PNP0501") == Bytes{0x0C, 0x41, 0xD0, 0x05, 0x01});
    CHECK_THROWS_AS(aml::eisa_id("pnp0501"), Error);
    CHECK_THROWS_AS(aml::eisa_id("PNP05G1"), Error);
    CHECK_THROWS_AS(aml::eisa_id("PNP050"), Error);
}

TEST_CASE("AML Name, Scope, Method (§20.2.5)") {
    // Name (_UID, One): NameOp 0x08.
    CHECK(aml::name("_UID", aml::integer(1)) == Bytes{0x08, '_', 'U', 'I', 'D', 0x01});
    // Method (_STA, 0, NotSerialized) { Return (0x0F) }: MethodOp 0x14, PkgLength
    // 1 + 4 (name) + 1 (flags) + 1 (ReturnOp 0xA4) + 2 = 9.
    CHECK(aml::method("_STA", 0, false, {aml::return_value(aml::integer(0x0F))}) ==
          Bytes{0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xA4, 0x0A, 0x0F});
    // Serialized with 2 arguments: flags = 2 | 0x08.
    CHECK(aml::method("FOO", 2, true, {}) == Bytes{0x14, 0x06, 'F', 'O', 'O', '_', 0x0A});
    CHECK_THROWS_AS(aml::method("FOO", 8, false, {}), Error);
    // Scope (\_SB) {}: ScopeOp 0x10, PkgLength 1 + 5.
    CHECK(aml::scope("\\_SB", {}) == Bytes{0x10, 0x06, 0x5C, '_', 'S', 'B', '_'});
}

TEST_CASE("Resource descriptors (§6.4.2, §6.4.3)") {
    // I/O Port Descriptor §6.4.2.5: tag 0x47, decode16, min, max, align, length.
    CHECK(aml::io(0x3f8, 0x3f8, 1, 8) == Bytes{0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08});
    CHECK_THROWS_AS(aml::io(0x61, 0x60, 1, 1), Error);
    // Fixed Location I/O Port Descriptor §6.4.2.6: tag 0x4B, base, length.
    CHECK(aml::fixed_io(0x60, 1) == Bytes{0x4B, 0x60, 0x00, 0x01});
    CHECK_THROWS_AS(aml::fixed_io(0x400, 1), Error);
    // IRQ Descriptor §6.4.2.1: tag 0x22 (no information byte), 16-bit mask.
    CHECK(aml::irq_no_flags(4) == Bytes{0x22, 0x10, 0x00});
    CHECK(aml::irq_no_flags(1) == Bytes{0x22, 0x02, 0x00});
    CHECK(aml::irq_no_flags(12) == Bytes{0x22, 0x00, 0x10});
    CHECK_THROWS_AS(aml::irq_no_flags(16), Error);
    // With information byte, tag 0x23: bit 0 edge, bit 3 active-low, bit 4 shared.
    CHECK(aml::irq(5, aml::Trigger::Edge, aml::Polarity::ActiveHigh, aml::Sharing::Exclusive) ==
          Bytes{0x23, 0x20, 0x00, 0x01});
    CHECK(aml::irq(5, aml::Trigger::Level, aml::Polarity::ActiveLow, aml::Sharing::Shared) ==
          Bytes{0x23, 0x20, 0x00, 0x18});
    // 32-bit Fixed Memory Range Descriptor §6.4.3.4: 0x86, length 9, RW bit, base, length.
    CHECK(aml::memory32_fixed(true, 0xD000'0000, 0x1000) ==
          Bytes{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xD0, 0x00, 0x10, 0x00, 0x00});
    CHECK(aml::memory32_fixed(false, 0xFEC0'0000, 0x1000)[3] == 0x00);
    CHECK_THROWS_AS(aml::memory32_fixed(true, 0xFFFF'F000, 0x2000), Error);
    // Extended Interrupt Descriptor §6.4.3.6: 0x89, length 6, flags (bit 0
    // consumer, bit 1 edge, bit 2 active-low, bit 3 shared), count 1, GSI.
    CHECK(
        aml::interrupt(5, aml::Trigger::Edge, aml::Polarity::ActiveHigh, aml::Sharing::Exclusive) ==
        Bytes{0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00});
    CHECK(aml::interrupt(0x123, aml::Trigger::Level, aml::Polarity::ActiveLow,
                         aml::Sharing::Shared) ==
          Bytes{0x89, 0x06, 0x00, 0x0D, 0x01, 0x23, 0x01, 0x00, 0x00});
    // An empty template is just the End Tag (§6.4.2.9: 0x79, checksum 0) in a Buffer.
    CHECK(aml::resource_template({}) == Bytes{0x11, 0x05, 0x0A, 0x02, 0x79, 0x00});
}

TEST_CASE("A complete COM1 device encodes as ASL compilers do") {
    // Device (COM1) {
    //   Name (_HID, EisaId ("PNP0501"))
    //   Name (_CRS, ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 1, 8) IRQNoFlags () {4} })
    // }
    // Derivation: _HID Name = 10 bytes; resource data 8 + 3 + 2 = 13, Buffer content
    // 2 + 13 = 15, PkgLength 16; _CRS Name = 5 + 17 = 22; Device content
    // 4 + 10 + 22 = 36, PkgLength 37 = 0x25.
    // clang-format off
    const Bytes expected{
        0x5B, 0x82, 0x25, 'C', 'O', 'M', '1',                   // Device (COM1)
        0x08, '_', 'H', 'I', 'D', 0x0C, 0x41, 0xD0, 0x05, 0x01, // Name (_HID, EisaId)
        0x08, '_', 'C', 'R', 'S', 0x11, 0x10, 0x0A, 0x0D,       // Name (_CRS, Buffer (13)
        0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08,         //   IO
        0x22, 0x10, 0x00,                                       //   IRQNoFlags {4}
        0x79, 0x00};                                            //   End Tag
    // clang-format on
    const Bytes com1 =
        aml::device("COM1", {aml::name("_HID", aml::eisa_id_object("PNP0501")),
                             aml::name("_CRS", aml::resource_template({aml::io(0x3f8, 0x3f8, 1, 8),
                                                                       aml::irq_no_flags(4)}))});
    CHECK(com1 == expected);
}

TEST_CASE("A device larger than 63 bytes gets a two-byte PkgLength") {
    // 4 (name) + 60 (one 60-byte string object: prefix, 58 chars, NUL) = 64 content
    // bytes -> PkgLength 66 = 0x42 -> 0x42 0x04.
    const Bytes body = aml::string(std::string(58, 'x'));
    REQUIRE(body.size() == 60);
    const Bytes dev = aml::device("BIG_", {body});
    REQUIRE(dev.size() == 2 + 2 + 64);
    CHECK(Bytes(dev.begin(), dev.begin() + 4) == Bytes{0x5B, 0x82, 0x42, 0x04});
}
