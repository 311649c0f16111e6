// Byte-level building blocks shared by every ACPI table: a little-endian writer,
// the 36-byte System Description Table header (ACPI 6.4 §5.2.6), the Generic
// Address Structure (§5.2.3.2) and the checksum rule (§5.2.6: all bytes of a
// table, checksum included, sum to zero modulo 256).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace ember::acpi {

inline constexpr size_t kSdtHeaderSize = 36;
inline constexpr size_t kSdtLengthOffset = 4;
inline constexpr size_t kSdtChecksumOffset = 9;

// Identification every ember table carries; Linux prints it at boot
// ("ACPI: FACP 0x... 000114 (v06 EMBER  EMBERVM  00000001 EMBR 00000001)").
inline constexpr std::string_view kOemId = "EMBER ";        // 6 bytes
inline constexpr std::string_view kOemTableId = "EMBERVM "; // 8 bytes
inline constexpr uint32_t kOemRevision = 1;
inline constexpr std::string_view kCreatorId = "EMBR"; // 4 bytes
inline constexpr uint32_t kCreatorRevision = 1;

// Generic Address Structure (§5.2.3.2).
enum class AddressSpace : uint8_t { SystemMemory = 0, SystemIo = 1 };
enum class AccessSize : uint8_t { Undefined = 0, Byte = 1, Word = 2, DWord = 3, QWord = 4 };
struct GenericAddress {
    AddressSpace space{AddressSpace::SystemMemory};
    uint8_t bit_width{0};
    uint8_t bit_offset{0};
    AccessSize access_size{AccessSize::Undefined};
    uint64_t address{0};
};
inline constexpr size_t kGenericAddressSize = 12;

// The byte that, stored in a table, makes all its bytes sum to zero.
uint8_t checksum_byte(std::span<const uint8_t> bytes);

// Appends little-endian fields to a growing table.
class TableWriter final {
  public:
    void u8(uint8_t v) { bytes_.push_back(v); }
    void u16(uint16_t v) { le(v, 2); }
    void u32(uint32_t v) { le(v, 4); }
    void u64(uint64_t v) { le(v, 8); }
    // Exactly `width` bytes of `text`, padded with spaces; longer text is a bug.
    void ascii(std::string_view text, size_t width);
    void bytes(std::span<const uint8_t> data) {
        bytes_.insert(bytes_.end(), data.begin(), data.end());
    }
    void zeros(size_t count) { bytes_.resize(bytes_.size() + count, 0); }
    void gas(const GenericAddress& address);

    size_t size() const { return bytes_.size(); }
    std::vector<uint8_t>& data() { return bytes_; }

  private:
    void le(uint64_t v, size_t width);
    std::vector<uint8_t> bytes_;
};

// Starts a table: its header with length and checksum left zero for finish_sdt.
TableWriter begin_sdt(std::string_view signature, uint8_t revision);
// Fills in the header's length and checksum and returns the finished table.
std::vector<uint8_t> finish_sdt(TableWriter&& table);

} // namespace ember::acpi
