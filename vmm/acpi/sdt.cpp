#include "vmm/acpi/sdt.h"

#include <fmt/format.h>

#include "vmm/errors.h"

namespace ember::acpi {

uint8_t checksum_byte(std::span<const uint8_t> bytes) {
    uint8_t sum = 0;
    for (uint8_t b : bytes)
        sum = static_cast<uint8_t>(sum + b);
    return static_cast<uint8_t>(0x100 - sum);
}

void TableWriter::le(uint64_t v, size_t width) {
    for (size_t i = 0; i < width; ++i)
        bytes_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void TableWriter::ascii(std::string_view text, size_t width) {
    if (text.size() > width)
        throw Error(fmt::format("ACPI field '{}' is longer than {} bytes", text, width));
    bytes_.insert(bytes_.end(), text.begin(), text.end());
    bytes_.resize(bytes_.size() + (width - text.size()), ' ');
}

void TableWriter::gas(const GenericAddress& address) {
    u8(static_cast<uint8_t>(address.space));
    u8(address.bit_width);
    u8(address.bit_offset);
    u8(static_cast<uint8_t>(address.access_size));
    u64(address.address);
}

TableWriter begin_sdt(std::string_view signature, uint8_t revision) {
    TableWriter t;
    if (signature.size() != 4) throw Error(fmt::format("bad ACPI signature '{}'", signature));
    t.ascii(signature, 4);
    t.u32(0); // length, set by finish_sdt
    t.u8(revision);
    t.u8(0); // checksum, set by finish_sdt
    t.ascii(kOemId, 6);
    t.ascii(kOemTableId, 8);
    t.u32(kOemRevision);
    t.ascii(kCreatorId, 4);
    t.u32(kCreatorRevision);
    return t;
}

std::vector<uint8_t> finish_sdt(TableWriter&& table) {
    std::vector<uint8_t> bytes = std::move(table.data());
    const auto length = static_cast<uint32_t>(bytes.size());
    for (size_t i = 0; i < 4; ++i)
        bytes[kSdtLengthOffset + i] = static_cast<uint8_t>(length >> (8 * i));
    bytes[kSdtChecksumOffset] = 0;
    bytes[kSdtChecksumOffset] = checksum_byte(bytes);
    return bytes;
}

} // namespace ember::acpi
