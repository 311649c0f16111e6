// ember-verify's block format: CRC32C, encode/decode, and how damage is classified.
#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <string>
#include <string_view>

#include "tools/ember-verify/block_format.h"
#include "vmm/crc32c.h"

using namespace ember::verify;
using ember::crc32c;

namespace {

using Block = std::array<uint8_t, kBlockSize>;

Block encoded(const BlockStamp& s) {
    Block b{};
    encode_block(s, b);
    return b;
}

uint32_t crc_of(std::string_view s) {
    return crc32c(0, {reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

uint64_t le64_at(const Block& b, std::size_t off) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | b[off + static_cast<std::size_t>(i)];
    return v;
}

const BlockStamp kStamp{.seed = 0x1234'5678'9abc'def0ull,
                        .block = 37,
                        .generation = 3,
                        .write_index = 1001,
                        .region_blocks = 64};
const Expectation kExpect{.seed = kStamp.seed, .block = 37, .region_blocks = 64};

} // namespace

TEST_CASE("crc32c: matches the Castagnoli check value and RFC 3720 B.4 vectors") {
    CHECK(crc_of("123456789") == 0xe3069283u);
    std::array<uint8_t, 32> zeros{};
    CHECK(crc32c(0, zeros) == 0x8a9136aau);
    std::array<uint8_t, 32> ones{};
    ones.fill(0xff);
    CHECK(crc32c(0, ones) == 0x62a8ab43u);
    std::array<uint8_t, 32> ascending{};
    for (std::size_t i = 0; i < ascending.size(); ++i) ascending[i] = static_cast<uint8_t>(i);
    CHECK(crc32c(0, ascending) == 0x46dd794eu);
}

TEST_CASE("crc32c: can be extended piecewise, at every split point") {
    const std::string_view text = "the quick brown fox jumps over the lazy dog, twice over";
    const auto* p = reinterpret_cast<const uint8_t*>(text.data());
    const uint32_t whole = crc32c(0, {p, text.size()});
    for (std::size_t split = 0; split <= text.size(); ++split)
        CHECK(crc32c(crc32c(0, {p, split}), {p + split, text.size() - split}) == whole);
}

TEST_CASE("block format: encode/decode round trip keeps every header field") {
    const Block b = encoded(kStamp);
    const DecodedBlock d = decode_block(b);
    CHECK(d.state == BlockState::valid);
    CHECK(d.stamp == kStamp);
    const Classified c = classify(b, kExpect);
    CHECK(c.verdict == Verdict::ok);
    CHECK(describe(c) == "gen=3");
}

TEST_CASE("block format: the header layout is the documented one") {
    const Block b = encoded(kStamp);
    CHECK(std::memcmp(b.data(), "EMBVRFY1", 8) == 0);
    CHECK(le64_at(b, 8) == kStamp.seed);
    CHECK(le64_at(b, 16) == kStamp.block);
    CHECK(le64_at(b, 24) == kStamp.generation);
    CHECK(le64_at(b, 32) == kStamp.write_index);
    CHECK(le64_at(b, 40) == kStamp.region_blocks);
    for (std::size_t i = 48; i < 60; ++i) CHECK(b[i] == 0);
    // The CRC at 60 covers everything but itself.
    Block copy = b;
    std::memset(copy.data() + 60, 0, 4);
    const uint32_t expect = crc32c(crc32c(0, std::span{copy}.first(60)), std::span{copy}.subspan(64));
    const uint32_t stored = uint32_t{b[60]} | uint32_t{b[61]} << 8 | uint32_t{b[62]} << 16 |
                            uint32_t{b[63]} << 24;
    CHECK(stored == expect);
}

TEST_CASE("block format: payload is a pure function of seed, block and generation") {
    const Block a = encoded(kStamp);
    CHECK(encoded(kStamp) == a);
    BlockStamp other = kStamp;
    other.generation = 4;
    const Block b = encoded(other);
    // Same position, next generation: the payloads share (almost) nothing.
    std::size_t same = 0;
    for (std::size_t i = kHeaderSize; i < kBlockSize; ++i) same += a[i] == b[i];
    CHECK(same < 64);
    other = kStamp;
    other.seed ^= 1;
    CHECK(std::memcmp(encoded(other).data() + kHeaderSize, a.data() + kHeaderSize,
                      kBlockSize - kHeaderSize) != 0);
}

TEST_CASE("block format: a single flipped bit anywhere is detected") {
    const Block good = encoded(kStamp);
    // Every header byte, and a spread of payload bytes, each bit position.
    for (std::size_t offset = 0; offset < kBlockSize; offset += (offset < 64 ? 1 : 61)) {
        for (int bit = 0; bit < 8; bit += 3) {
            Block bad = good;
            bad[offset] ^= static_cast<uint8_t>(1u << bit);
            const Classified c = classify(bad, kExpect);
            INFO("offset " << offset << " bit " << bit);
            CHECK(c.verdict != Verdict::ok);
            if (offset >= 8) CHECK(c.verdict == Verdict::bad_checksum);
            if (offset < 8) CHECK(c.verdict == Verdict::bad_magic);
        }
    }
    Block last = good;
    last[kBlockSize - 1] ^= 0x80;
    CHECK(classify(last, kExpect).verdict == Verdict::bad_checksum);
}

TEST_CASE("block format: a payload that does not belong to the header is caught even with a valid CRC") {
    Block b = encoded(kStamp);
    b[1000] ^= 0x01;
    // Re-seal the CRC as a buggy writer would.
    std::memset(b.data() + 60, 0, 4);
    const uint32_t crc = crc32c(crc32c(0, std::span{b}.first(60)), std::span{b}.subspan(64));
    for (int i = 0; i < 4; ++i) b[60 + static_cast<std::size_t>(i)] = static_cast<uint8_t>(crc >> (8 * i));
    CHECK(decode_block(b).state == BlockState::payload_mismatch);
    CHECK(classify(b, kExpect).verdict == Verdict::payload_mismatch);
}

TEST_CASE("block format: a block written for another sector is a misdirected write") {
    BlockStamp elsewhere = kStamp;
    elsewhere.block = 38;
    const Classified c = classify(encoded(elsewhere), kExpect);
    CHECK(c.verdict == Verdict::wrong_block);
    CHECK(c.stamp.block == 38);
    CHECK(describe(c).find("block=38") != std::string::npos);
    CHECK(describe(c).find("misdirected") != std::string::npos);
}

TEST_CASE("block format: a stale generation decodes as valid, with its generation for the caller to judge") {
    BlockStamp stale = kStamp;
    stale.generation = 1;
    stale.write_index = 20;
    const Classified c = classify(encoded(stale), kExpect);
    CHECK(c.verdict == Verdict::ok);
    CHECK(c.stamp.generation == 1);
    CHECK(c.stamp.generation < kStamp.generation);
}

TEST_CASE("block format: other runs, other region sizes, zeros and garbage are told apart") {
    BlockStamp other_run = kStamp;
    other_run.seed = 99;
    CHECK(classify(encoded(other_run), kExpect).verdict == Verdict::wrong_seed);

    BlockStamp other_region = kStamp;
    other_region.region_blocks = 128;
    CHECK(classify(encoded(other_region), kExpect).verdict == Verdict::wrong_region);

    const Block zeros{};
    CHECK(classify(zeros, kExpect).verdict == Verdict::zeros);
    CHECK(describe(classify(zeros, kExpect)) == "zeros (never written)");

    Block garbage{};
    garbage.fill(0xa5);
    CHECK(classify(garbage, kExpect).verdict == Verdict::bad_magic);
}
