// virtio-blk wire definitions (virtio 1.2 §5.2).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ember::virtio::blk {

// Feature bits (§5.2.3). There is no GET_ID feature: the request type is
// always available.
inline constexpr uint64_t kFeatureSizeMax = 1ull << 1;
inline constexpr uint64_t kFeatureSegMax = 1ull << 2;
inline constexpr uint64_t kFeatureRo = 1ull << 5;
inline constexpr uint64_t kFeatureBlkSize = 1ull << 6;
inline constexpr uint64_t kFeatureFlush = 1ull << 9;
inline constexpr uint64_t kFeatureDiscard = 1ull << 13;
inline constexpr uint64_t kFeatureWriteZeroes = 1ull << 14;

// Request types (§5.2.6).
inline constexpr uint32_t kTypeIn = 0;
inline constexpr uint32_t kTypeOut = 1;
inline constexpr uint32_t kTypeFlush = 4;
inline constexpr uint32_t kTypeGetId = 8;
inline constexpr uint32_t kTypeDiscard = 11;
inline constexpr uint32_t kTypeWriteZeroes = 13;

// Status byte values (§5.2.6).
inline constexpr uint8_t kStatusOk = 0;
inline constexpr uint8_t kStatusIoErr = 1;
inline constexpr uint8_t kStatusUnsupp = 2;

struct RequestHeader {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

// One range of a DISCARD or WRITE_ZEROES request (§5.2.6).
struct DiscardWriteZeroes {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags; // bit 0: unmap (WRITE_ZEROES only); the rest reserved
};
static_assert(sizeof(DiscardWriteZeroes) == 16);
inline constexpr uint32_t kWriteZeroesFlagUnmap = 1;

inline constexpr size_t kIdBytes = 20;

// struct virtio_blk_config (§5.2.4), packed as the spec lays it out.
struct Config {
    uint64_t capacity;
    uint32_t size_max;
    uint32_t seg_max;
    uint16_t geometry_cylinders;
    uint8_t geometry_heads;
    uint8_t geometry_sectors;
    uint32_t blk_size;
    uint8_t physical_block_exp;
    uint8_t alignment_offset;
    uint16_t min_io_size;
    uint32_t opt_io_size;
    uint8_t writeback;
    uint8_t unused0;
    uint16_t num_queues;
    uint32_t max_discard_sectors;
    uint32_t max_discard_seg;
    uint32_t discard_sector_alignment;
    uint32_t max_write_zeroes_sectors;
    uint32_t max_write_zeroes_seg;
    uint8_t write_zeroes_may_unmap;
    uint8_t unused1[3];
    uint32_t max_secure_erase_sectors;
    uint32_t max_secure_erase_seg;
    uint32_t secure_erase_sector_alignment;
};
static_assert(offsetof(Config, blk_size) == 20);
static_assert(offsetof(Config, max_discard_sectors) == 36);
static_assert(offsetof(Config, write_zeroes_may_unmap) == 56);
static_assert(sizeof(Config) == 72);

} // namespace ember::virtio::blk
