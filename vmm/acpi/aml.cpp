#include "vmm/acpi/aml.h"

#include <fmt/format.h>

#include "vmm/errors.h"

namespace ember::acpi::aml {
namespace {

void append(Bytes& out, std::span<const uint8_t> bytes) {
    out.insert(out.end(), bytes.begin(), bytes.end());
}

void append_le(Bytes& out, uint64_t value, size_t width) {
    for (size_t i = 0; i < width; ++i)
        out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

Bytes concat(const std::vector<Bytes>& parts) {
    Bytes out;
    for (const auto& part : parts)
        append(out, part);
    return out;
}

// `opcode PkgLength body`, the shape of every package-like term (§20.2.4: the
// PkgLength counts itself and the body, not the opcode).
Bytes with_pkg_length(std::span<const uint8_t> opcode, const Bytes& body) {
    Bytes out(opcode.begin(), opcode.end());
    append(out, pkg_length_for(body.size()));
    append(out, body);
    return out;
}

bool is_lead_char(char c) {
    return (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
    return is_lead_char(c) || (c >= '0' && c <= '9');
}

// Small resource data type header (§6.4.2): bit 7 clear, item name in bits 6-3,
// length of the data that follows in bits 2-0.
uint8_t small_tag(uint8_t item, uint8_t length) {
    return static_cast<uint8_t>((item << 3) | length);
}

// Large resource data type header (§6.4.3): bit 7 set, item name in bits 6-0,
// then a 16-bit length of the data that follows.
void large_header(Bytes& out, uint8_t item, uint16_t length) {
    out.push_back(static_cast<uint8_t>(0x80 | item));
    append_le(out, length, 2);
}

} // namespace

Bytes encode_pkg_length(uint32_t value) {
    if (value <= 0x3F) return {static_cast<uint8_t>(value)};
    if (value > kMaxPkgLength)
        throw Error(fmt::format("AML package length {:#x} exceeds the maximum {:#x}", value,
                                kMaxPkgLength));
    const uint8_t following = value <= 0xFFF ? 1 : value <= 0xF'FFFF ? 2 : 3;
    Bytes out{static_cast<uint8_t>((following << 6) | (value & 0x0F))};
    for (uint8_t i = 0; i < following; ++i)
        out.push_back(static_cast<uint8_t>(value >> (4 + 8 * i)));
    return out;
}

Bytes pkg_length_for(size_t content_len) {
    // Each extra PkgLength byte adds 8 bits of range but also counts itself.
    for (size_t bytes = 1; bytes <= 4; ++bytes) {
        const size_t total = content_len + bytes;
        const size_t limit = bytes == 1 ? 0x3F : (size_t{1} << (4 + 8 * (bytes - 1))) - 1;
        if (total <= limit) return encode_pkg_length(static_cast<uint32_t>(total));
    }
    throw Error(fmt::format("AML package of {} bytes is too large to encode", content_len));
}

Bytes name_seg(std::string_view seg) {
    if (seg.empty() || seg.size() > 4 || !is_lead_char(seg[0]))
        throw Error(fmt::format("invalid ACPI name segment '{}'", seg));
    Bytes out;
    for (char c : seg) {
        if (!is_name_char(c)) throw Error(fmt::format("invalid ACPI name segment '{}'", seg));
        out.push_back(static_cast<uint8_t>(c));
    }
    out.resize(4, '_');
    return out;
}

Bytes name_string(std::string_view path) {
    Bytes out;
    std::string_view rest = path;
    if (!rest.empty() && rest.front() == '\\') {
        out.push_back(kRootChar);
        rest.remove_prefix(1);
    } else {
        while (!rest.empty() && rest.front() == '^') {
            out.push_back(kParentPrefix);
            rest.remove_prefix(1);
        }
    }
    std::vector<Bytes> segs;
    while (!rest.empty()) {
        const size_t dot = rest.find('.');
        segs.push_back(name_seg(rest.substr(0, dot)));
        if (dot == std::string_view::npos) break;
        rest.remove_prefix(dot + 1);
        if (rest.empty()) throw Error(fmt::format("invalid ACPI name path '{}'", path));
    }
    if (segs.empty()) {
        // NullName: only meaningful after a prefix ("\" names the root).
        if (out.empty()) throw Error("empty ACPI name path");
        out.push_back(0x00);
    } else if (segs.size() == 2) {
        out.push_back(kDualNamePrefix);
    } else if (segs.size() > 2) {
        if (segs.size() > 255) throw Error(fmt::format("ACPI name path '{}' is too long", path));
        out.push_back(kMultiNamePrefix);
        out.push_back(static_cast<uint8_t>(segs.size()));
    }
    for (const auto& seg : segs)
        append(out, seg);
    return out;
}

Bytes integer(uint64_t value) {
    if (value == 0) return {kZeroOp};
    if (value == 1) return {kOneOp};
    if (value == UINT64_MAX) return {kOnesOp};
    Bytes out;
    if (value <= UINT8_MAX) {
        out.push_back(kBytePrefix);
        append_le(out, value, 1);
    } else if (value <= UINT16_MAX) {
        out.push_back(kWordPrefix);
        append_le(out, value, 2);
    } else if (value <= UINT32_MAX) {
        out.push_back(kDWordPrefix);
        append_le(out, value, 4);
    } else {
        out.push_back(kQWordPrefix);
        append_le(out, value, 8);
    }
    return out;
}

Bytes string(std::string_view text) {
    Bytes out{kStringPrefix};
    for (char c : text) {
        const auto b = static_cast<uint8_t>(c);
        if (b == 0 || b > 0x7F)
            throw Error(fmt::format("AML strings hold ASCII 0x01-0x7F only: '{}'", text));
        out.push_back(b);
    }
    out.push_back(0x00);
    return out;
}

Bytes buffer(std::span<const uint8_t> data) {
    Bytes body = integer(data.size());
    append(body, data);
    const uint8_t op[] = {kBufferOp};
    return with_pkg_length(op, body);
}

Bytes package(const std::vector<Bytes>& elements) {
    if (elements.size() > 255)
        throw Error(fmt::format("AML package of {} elements exceeds 255", elements.size()));
    Bytes body{static_cast<uint8_t>(elements.size())};
    append(body, concat(elements));
    const uint8_t op[] = {kPackageOp};
    return with_pkg_length(op, body);
}

uint32_t eisa_id(std::string_view id) {
    const auto bad = [&] { return Error(fmt::format("invalid EISA ID '{}'", id)); };
    if (id.size() != 7) throw bad();
    uint32_t vendor = 0;
    for (size_t i = 0; i < 3; ++i) {
        if (id[i] < 'A' || id[i] > 'Z') throw bad();
        // 'A' is 1 in the 5-bit compressed alphabet.
        vendor = (vendor << 5) | static_cast<uint32_t>(id[i] - 'A' + 1);
    }
    uint32_t product = 0;
    for (size_t i = 3; i < 7; ++i) {
        const char c = id[i];
        uint32_t digit = 0;
        if (c >= '0' && c <= '9')
            digit = static_cast<uint32_t>(c - '0');
        else if (c >= 'A' && c <= 'F')
            digit = static_cast<uint32_t>(c - 'A' + 10);
        else
            throw bad();
        product = (product << 4) | digit;
    }
    // Bytes in memory: vendor high, vendor low, product high, product low.
    const uint32_t big_endian = (vendor << 16) | product;
    return __builtin_bswap32(big_endian);
}

Bytes eisa_id_object(std::string_view id) {
    return integer(eisa_id(id));
}

Bytes name(std::string_view path, const Bytes& object) {
    Bytes out{kNameOp};
    append(out, name_string(path));
    append(out, object);
    return out;
}

Bytes scope(std::string_view path, const std::vector<Bytes>& terms) {
    Bytes body = name_string(path);
    append(body, concat(terms));
    const uint8_t op[] = {kScopeOp};
    return with_pkg_length(op, body);
}

Bytes device(std::string_view path, const std::vector<Bytes>& terms) {
    Bytes body = name_string(path);
    append(body, concat(terms));
    const uint8_t op[] = {kExtOpPrefix, kDeviceOp};
    return with_pkg_length(op, body);
}

Bytes method(std::string_view path, uint8_t arg_count, bool serialized,
             const std::vector<Bytes>& terms) {
    if (arg_count > 7) throw Error(fmt::format("AML method {} takes at most 7 arguments", path));
    Bytes body = name_string(path);
    body.push_back(static_cast<uint8_t>(arg_count | (serialized ? 0x08 : 0x00)));
    append(body, concat(terms));
    const uint8_t op[] = {kMethodOp};
    return with_pkg_length(op, body);
}

Bytes return_value(const Bytes& object) {
    Bytes out{kReturnOp};
    append(out, object);
    return out;
}

Bytes io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length) {
    if (min > max)
        throw Error(fmt::format("IO descriptor: minimum {:#x} above maximum {:#x}", min, max));
    // Item 0x08, 7 data bytes; information bit 0 = 1: the device decodes 16 bits.
    Bytes out{small_tag(0x08, 7), 0x01};
    append_le(out, min, 2);
    append_le(out, max, 2);
    out.push_back(alignment);
    out.push_back(length);
    return out;
}

Bytes fixed_io(uint16_t base, uint8_t length) {
    if (base > 0x3FF)
        throw Error(fmt::format("FixedIO descriptor: base {:#x} needs more than 10 bits", base));
    Bytes out{small_tag(0x09, 3)};
    append_le(out, base, 2);
    out.push_back(length);
    return out;
}

Bytes irq_no_flags(uint8_t irq) {
    if (irq > 15) throw Error(fmt::format("IRQ descriptor: IRQ {} is not an ISA IRQ (0-15)", irq));
    Bytes out{small_tag(0x04, 2)};
    append_le(out, uint16_t{1} << irq, 2);
    return out;
}

Bytes irq(uint8_t irq, Trigger trigger, Polarity polarity, Sharing sharing) {
    Bytes out = irq_no_flags(irq);
    out[0] = small_tag(0x04, 3);
    // Information byte: bit 0 edge, bit 3 active-low, bit 4 shared.
    out.push_back(static_cast<uint8_t>((trigger == Trigger::Edge ? 0x01 : 0) |
                                       (polarity == Polarity::ActiveLow ? 0x08 : 0) |
                                       (sharing == Sharing::Shared ? 0x10 : 0)));
    return out;
}

Bytes memory32_fixed(bool read_write, uint32_t base, uint32_t length) {
    if (uint64_t{base} + length > (uint64_t{1} << 32))
        throw Error(fmt::format("Memory32Fixed: {:#x}+{:#x} crosses 4 GiB", base, length));
    Bytes out;
    large_header(out, 0x06, 9);
    out.push_back(read_write ? 0x01 : 0x00);
    append_le(out, base, 4);
    append_le(out, length, 4);
    return out;
}

Bytes interrupt(uint32_t gsi, Trigger trigger, Polarity polarity, Sharing sharing) {
    Bytes out;
    // Data: flags, table length, one 32-bit interrupt number.
    large_header(out, 0x09, 6);
    // Flags: bit 0 consumer, bit 1 edge, bit 2 active-low, bit 3 shared.
    out.push_back(static_cast<uint8_t>(0x01 | (trigger == Trigger::Edge ? 0x02 : 0) |
                                       (polarity == Polarity::ActiveLow ? 0x04 : 0) |
                                       (sharing == Sharing::Shared ? 0x08 : 0)));
    out.push_back(1);
    append_le(out, gsi, 4);
    return out;
}

Bytes resource_template(const std::vector<Bytes>& descriptors) {
    Bytes data = concat(descriptors);
    data.push_back(small_tag(0x0F, 1)); // End Tag
    data.push_back(0x00);
    return buffer(data);
}

} // namespace ember::acpi::aml
