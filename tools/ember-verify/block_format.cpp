#include "tools/ember-verify/block_format.h"

#include <algorithm>

#include <fmt/format.h>

#include "vmm/crc32c.h"
#include "tools/ember-verify/prng.h"

namespace ember::verify {
namespace {

void put_le64(uint8_t* p, uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

void put_le32(uint8_t* p, uint32_t v) noexcept {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t get_le64(const uint8_t* p) noexcept {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

uint32_t get_le32(const uint8_t* p) noexcept {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

uint32_t block_crc(std::span<const uint8_t, kBlockSize> b) noexcept {
    const uint32_t head = crc32c(0, b.subspan(0, kCrcOffset));
    return crc32c(head, b.subspan(kHeaderSize));
}

// The payload generator: one 64-bit word per 8 bytes, each an independent mix of
// a per-block key and the word index, so any word can be checked on its own.
uint64_t payload_key(const BlockStamp& s) noexcept {
    return mix64(s.seed ^ mix64(s.block ^ mix64(s.generation ^ 0xb10cb10cb10cb10cull)));
}

uint64_t payload_word(uint64_t key, std::size_t i) noexcept {
    return mix64(key + (i + 1) * kGolden64);
}

bool payload_matches(const BlockStamp& s, std::span<const uint8_t, kBlockSize> b) noexcept {
    const uint64_t key = payload_key(s);
    for (std::size_t off = kHeaderSize, i = 0; off < kBlockSize; off += 8, ++i)
        if (get_le64(&b[off]) != payload_word(key, i)) return false;
    return true;
}

} // namespace

void encode_block(const BlockStamp& s, std::span<uint8_t, kBlockSize> out) noexcept {
    uint8_t* p = out.data();
    std::fill(p, p + kHeaderSize, uint8_t{0});
    put_le64(p + 0, kMagic);
    put_le64(p + 8, s.seed);
    put_le64(p + 16, s.block);
    put_le64(p + 24, s.generation);
    put_le64(p + 32, s.write_index);
    put_le64(p + 40, s.region_blocks);
    const uint64_t key = payload_key(s);
    for (std::size_t off = kHeaderSize, i = 0; off < kBlockSize; off += 8, ++i)
        put_le64(p + off, payload_word(key, i));
    put_le32(p + kCrcOffset, block_crc(out));
}

DecodedBlock decode_block(std::span<const uint8_t, kBlockSize> in) noexcept {
    const uint8_t* p = in.data();
    DecodedBlock d;
    if (std::all_of(in.begin(), in.end(), [](uint8_t b) { return b == 0; })) {
        d.state = BlockState::zeros;
        return d;
    }
    if (get_le64(p) != kMagic) {
        d.state = BlockState::bad_magic;
        return d;
    }
    d.stamp = BlockStamp{.seed = get_le64(p + 8),
                         .block = get_le64(p + 16),
                         .generation = get_le64(p + 24),
                         .write_index = get_le64(p + 32),
                         .region_blocks = get_le64(p + 40)};
    if (get_le32(p + kCrcOffset) != block_crc(in)) {
        d.state = BlockState::bad_checksum;
        return d;
    }
    // Reserved bytes are covered by the CRC, so a valid CRC with non-zero reserved
    // bytes means a writer that is not us: treat like a payload mismatch.
    const bool reserved_zero = std::all_of(p + 48, p + kCrcOffset, [](uint8_t b) { return b == 0; });
    d.state = reserved_zero && payload_matches(d.stamp, in) ? BlockState::valid
                                                            : BlockState::payload_mismatch;
    return d;
}

Classified classify(std::span<const uint8_t, kBlockSize> in, const Expectation& e) noexcept {
    const DecodedBlock d = decode_block(in);
    Classified c{.verdict = Verdict::ok, .stamp = d.stamp};
    switch (d.state) {
    case BlockState::zeros: c.verdict = Verdict::zeros; return c;
    case BlockState::bad_magic: c.verdict = Verdict::bad_magic; return c;
    case BlockState::bad_checksum: c.verdict = Verdict::bad_checksum; return c;
    case BlockState::payload_mismatch: c.verdict = Verdict::payload_mismatch; return c;
    case BlockState::valid: break;
    }
    if (d.stamp.seed != e.seed)
        c.verdict = Verdict::wrong_seed;
    else if (d.stamp.block != e.block)
        c.verdict = Verdict::wrong_block;
    else if (d.stamp.region_blocks != e.region_blocks)
        c.verdict = Verdict::wrong_region;
    return c;
}

std::string describe(const Classified& c) {
    const BlockStamp& s = c.stamp;
    switch (c.verdict) {
    case Verdict::ok: return fmt::format("gen={}", s.generation);
    case Verdict::zeros: return "zeros (never written)";
    case Verdict::bad_magic: return "bad magic (not a verifier block)";
    case Verdict::bad_checksum: return fmt::format("bad checksum (header says gen={})", s.generation);
    case Verdict::payload_mismatch: return fmt::format("payload mismatch (gen={})", s.generation);
    case Verdict::wrong_seed: return fmt::format("seed={} (another run, gen={})", s.seed, s.generation);
    case Verdict::wrong_block:
        return fmt::format("block={} gen={} (misdirected write)", s.block, s.generation);
    case Verdict::wrong_region:
        return fmt::format("region of {} blocks (gen={})", s.region_blocks, s.generation);
    }
    return "?";
}

} // namespace ember::verify
