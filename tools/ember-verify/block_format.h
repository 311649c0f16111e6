// The on-disk format of one verifier block (4 KiB). Every block the verifier
// writes is self-describing, so a reader needs only the run's seed to judge it:
//
//   offset size  field          (all integers little-endian)
//        0    8  magic          "EMBVRFY1"
//        8    8  seed           run id; blocks of another run are recognised as such
//       16    8  block          index of this 4 KiB block in the region (byte offset / 4096)
//       24    8  generation     1 + the pass that wrote it (0 is never written)
//       32    8  write_index    position of this write in the run's write sequence
//       40    8  region_blocks  size of the region in blocks (the sequence depends on it)
//       48   12  reserved       zero
//       60    4  crc32c         over bytes [0, 60) and [64, 4096)
//       64 4032  payload        pseudo-random, a pure function of (seed, block, generation)
//
// The payload is never stored anywhere else: a reader regenerates it and compares,
// so a flipped bit anywhere in the block is caught twice (checksum and payload).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace ember::verify {

inline constexpr std::size_t kBlockSize = 4096;
inline constexpr std::size_t kHeaderSize = 64;
inline constexpr std::size_t kCrcOffset = 60;
inline constexpr uint64_t kMagic = 0x3159465256424d45ull; // "EMBVRFY1" read as little-endian

// What a block says about itself.
struct BlockStamp {
    uint64_t seed{0};
    uint64_t block{0};
    uint64_t generation{0};
    uint64_t write_index{0};
    uint64_t region_blocks{0};
    friend bool operator==(const BlockStamp&, const BlockStamp&) = default;
};

// Fills `out` (exactly kBlockSize bytes) with the header, payload and checksum for `stamp`.
void encode_block(const BlockStamp& stamp, std::span<uint8_t, kBlockSize> out) noexcept;

enum class BlockState {
    valid,            // magic, checksum and payload all match the stamp in the header
    zeros,            // all bytes zero: nothing was ever written here (fresh disk)
    bad_magic,        // not a verifier block at all (or a wholly overwritten header)
    bad_checksum,     // header magic present but the CRC does not match: torn or corrupted
    payload_mismatch, // the CRC matches but the payload is not the one the header implies
};

struct DecodedBlock {
    BlockState state{BlockState::bad_magic};
    BlockStamp stamp{}; // meaningful for valid (and, for diagnostics, bad_checksum)
};

// Decodes and self-checks one block (exactly kBlockSize bytes). It does not judge
// whether the stamp is the expected one: see classify() for that.
DecodedBlock decode_block(std::span<const uint8_t, kBlockSize> in) noexcept;

// What the reader expected at a block position.
struct Expectation {
    uint64_t seed{0};
    uint64_t block{0};
    uint64_t region_blocks{0};
};

enum class Verdict {
    ok,            // a valid block of this run, this position and this region size
    zeros,         // never written
    bad_magic,
    bad_checksum,
    payload_mismatch,
    wrong_seed,    // a valid block from another run
    wrong_block,   // a valid block of this run written for another position (misdirected write)
    wrong_region,  // a valid block of this run but with a different region size
};

struct Classified {
    Verdict verdict{Verdict::bad_magic};
    BlockStamp stamp{};
};

// Decodes `in` and checks identity (seed, block, region size); the generation is
// the caller's to judge because writer and image checker accept different ranges.
Classified classify(std::span<const uint8_t, kBlockSize> in, const Expectation& expect) noexcept;

// A short human description of what was found, for "got ..." in error lines:
// "gen=3", "zeros (never written)", "bad magic", "bad checksum (stamp gen=3)",
// "payload mismatch (gen=3)", "seed=0x..", "block=17 (misdirected write)", "region of 8 blocks".
std::string describe(const Classified& c);

} // namespace ember::verify
