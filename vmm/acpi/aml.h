// A small ACPI Machine Language (AML) encoder: just enough of ACPI 6.4 §20 (AML
// grammar) and §6.4 (resource data types) to describe a fixed virtual machine's
// devices in a DSDT. Every function returns the encoded bytes of one term, so a
// table reads like the ASL it stands for:
//
//   device("COM1", {name("_HID", eisa_id_object("PNP0501")),
//                   name("_CRS", resource_template({io(0x3f8, 0x3f8, 1, 8),
//                                                   irq_no_flags(4)}))})
//
// Invalid input (a bad name, a string with a NUL, a too-long package) throws
// ember::Error: these tables are built by the VMM, so such input is a bug that
// should stop the VMM before it boots a guest with broken firmware tables.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace ember::acpi::aml {

using Bytes = std::vector<uint8_t>;

// Opcodes (ACPI 6.4 §20.3 "AML Byte Stream Byte Values").
inline constexpr uint8_t kZeroOp = 0x00;
inline constexpr uint8_t kOneOp = 0x01;
inline constexpr uint8_t kOnesOp = 0xFF;
inline constexpr uint8_t kNameOp = 0x08;
inline constexpr uint8_t kBytePrefix = 0x0A;
inline constexpr uint8_t kWordPrefix = 0x0B;
inline constexpr uint8_t kDWordPrefix = 0x0C;
inline constexpr uint8_t kStringPrefix = 0x0D;
inline constexpr uint8_t kQWordPrefix = 0x0E;
inline constexpr uint8_t kScopeOp = 0x10;
inline constexpr uint8_t kBufferOp = 0x11;
inline constexpr uint8_t kPackageOp = 0x12;
inline constexpr uint8_t kMethodOp = 0x14;
inline constexpr uint8_t kDualNamePrefix = 0x2E;
inline constexpr uint8_t kMultiNamePrefix = 0x2F;
inline constexpr uint8_t kExtOpPrefix = 0x5B;
inline constexpr uint8_t kDeviceOp = 0x82;     // after kExtOpPrefix
inline constexpr uint8_t kRootChar = 0x5C;     // '\'
inline constexpr uint8_t kParentPrefix = 0x5E; // '^'
inline constexpr uint8_t kReturnOp = 0xA4;

// Largest value a PkgLength can hold: 4 bits + 3 * 8 bits (§20.2.4).
inline constexpr uint32_t kMaxPkgLength = 0x0FFF'FFFF;

// --- Encoding primitives ---------------------------------------------------------

// PkgLength (§20.2.4) for a value that already counts the PkgLength bytes
// themselves: 1 byte up to 63, else a lead byte holding the count of following
// bytes in bits 7-6 and the low nibble in bits 3-0, then the rest 8 bits at a time.
Bytes encode_pkg_length(uint32_t value);

// The PkgLength that precedes `content_len` bytes of package content: picks the
// shortest encoding whose value (content + its own size) still fits.
Bytes pkg_length_for(size_t content_len);

// NameSeg (§20.2.2): 1-4 characters, lead [A-Z_], others [A-Z0-9_], padded with '_'.
Bytes name_seg(std::string_view seg);

// NameString (§20.2.2): optional '\' or a run of '^', then dot-separated NameSegs,
// e.g. "\\_SB_.COM1", "^PCI0", "_HID"; "_SB" is padded to "_SB_".
Bytes name_string(std::string_view path);

// --- Data objects ------------------------------------------------------------------

// ComputationalData integer (§20.2.3): ZeroOp, OneOp, OnesOp (all 64 bits set:
// the DSDT is revision 2, so integers are 64-bit, §5.2.11.1), otherwise the
// smallest of BytePrefix/WordPrefix/DWordPrefix/QWordPrefix that holds it.
Bytes integer(uint64_t value);

// String (§20.2.3): StringPrefix, ASCII 0x01-0x7F, NUL.
Bytes string(std::string_view text);

// DefBuffer (§20.2.5.4): BufferOp PkgLength BufferSize(integer) ByteList.
Bytes buffer(std::span<const uint8_t> data);

// DefPackage (§20.2.5.4): PackageOp PkgLength NumElements(byte) elements; at most
// 255 elements (larger ones need VarPackage, which nothing here uses).
Bytes package(const std::vector<Bytes>& elements);

// EISA ID (§6.1.5 _HID): "PNP0501" -> 0x0105D041. Three letters compressed to
// 5 bits each plus four hex digits, stored as a big-endian 32-bit value, so
// the little-endian DWord reads byte-swapped.
uint32_t eisa_id(std::string_view id);
// EisaId("...") as ASL writes it: the integer object for eisa_id(id).
Bytes eisa_id_object(std::string_view id);

// --- Named objects and control --------------------------------------------------------

// DefName (§20.2.5.1): NameOp NameString DataRefObject.
Bytes name(std::string_view path, const Bytes& object);

// DefScope (§20.2.5.1): ScopeOp PkgLength NameString TermList.
Bytes scope(std::string_view path, const std::vector<Bytes>& terms);

// DefDevice (§20.2.5.2): ExtOpPrefix DeviceOp PkgLength NameString TermList.
Bytes device(std::string_view path, const std::vector<Bytes>& terms);

// DefMethod (§20.2.5.2): MethodOp PkgLength NameString MethodFlags TermList.
// MethodFlags: bits 0-2 argument count, bit 3 serialized, bits 4-7 SyncLevel 0.
Bytes method(std::string_view path, uint8_t arg_count, bool serialized,
             const std::vector<Bytes>& terms);

// DefReturn (§20.2.5.3): ReturnOp ArgObject.
Bytes return_value(const Bytes& object);

// --- Resource descriptors (§6.4) ---------------------------------------------------------

// IO (Decode16, min, max, alignment, length): I/O Port Descriptor, §6.4.2.5.
Bytes io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length);

// FixedIO (base, length): Fixed Location I/O Port Descriptor, §6.4.2.6; the
// decoder sees 10 address bits, so base must be below 0x400.
Bytes fixed_io(uint16_t base, uint8_t length);

// IRQNoFlags () {irq}: IRQ Descriptor without information byte, §6.4.2.1; means
// edge-triggered, active-high, exclusive (the ISA default).
Bytes irq_no_flags(uint8_t irq);

enum class Trigger : uint8_t { Level, Edge };
enum class Polarity : uint8_t { ActiveHigh, ActiveLow };
enum class Sharing : uint8_t { Exclusive, Shared };

// IRQ (trigger, polarity, sharing) {irq}: IRQ Descriptor with information byte.
Bytes irq(uint8_t irq, Trigger trigger, Polarity polarity, Sharing sharing);

// Memory32Fixed (ReadWrite|ReadOnly, base, length): §6.4.3.4.
Bytes memory32_fixed(bool read_write, uint32_t base, uint32_t length);

// Interrupt (ResourceConsumer, trigger, polarity, sharing) {gsi}: Extended
// Interrupt Descriptor, §6.4.3.6, one interrupt, no resource source.
Bytes interrupt(uint32_t gsi, Trigger trigger, Polarity polarity, Sharing sharing);

// ResourceTemplate () {...}: a Buffer holding the descriptors followed by the
// End Tag (§6.4.2.9) with checksum byte 0, which §6.4.2.9 defines as "treat the
// checksum as valid" (what iasl emits too).
Bytes resource_template(const std::vector<Bytes>& descriptors);

} // namespace ember::acpi::aml
