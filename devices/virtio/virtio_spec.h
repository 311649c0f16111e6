// Constants and wire layouts from the virtio 1.2 specification that the
// transport, the split virtqueue and the devices share. Everything here is
// little-endian on the wire; ember is x86-64 only, so host order is wire order.
#pragma once

#include <cstdint>

namespace ember::virtio {

// Device status bits (virtio 1.2 §2.1).
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// Reserved feature bits (virtio 1.2 §6).
inline constexpr uint64_t kFeatureRingIndirectDesc = 1ull << 28;
inline constexpr uint64_t kFeatureRingEventIdx = 1ull << 29;
inline constexpr uint64_t kFeatureVersion1 = 1ull << 32;

// InterruptStatus bits (virtio 1.2 §4.2.2, offset 0x60).
inline constexpr uint32_t kInterruptUsedBuffer = 1;
inline constexpr uint32_t kInterruptConfigChange = 2;

// Device IDs (virtio 1.2 §5).
inline constexpr uint32_t kDeviceIdNet = 1;
inline constexpr uint32_t kDeviceIdBlock = 2;
inline constexpr uint32_t kDeviceIdEntropy = 4;

// virtio-mmio register offsets, version 2 (virtio 1.2 §4.2.2, table 4.1).
namespace mmio {
inline constexpr uint64_t kMagicValue = 0x000;
inline constexpr uint64_t kVersion = 0x004;
inline constexpr uint64_t kDeviceId = 0x008;
inline constexpr uint64_t kVendorId = 0x00c;
inline constexpr uint64_t kDeviceFeatures = 0x010;
inline constexpr uint64_t kDeviceFeaturesSel = 0x014;
inline constexpr uint64_t kDriverFeatures = 0x020;
inline constexpr uint64_t kDriverFeaturesSel = 0x024;
inline constexpr uint64_t kQueueSel = 0x030;
inline constexpr uint64_t kQueueNumMax = 0x034;
inline constexpr uint64_t kQueueNum = 0x038;
inline constexpr uint64_t kQueueReady = 0x044;
inline constexpr uint64_t kQueueNotify = 0x050;
inline constexpr uint64_t kInterruptStatus = 0x060;
inline constexpr uint64_t kInterruptAck = 0x064;
inline constexpr uint64_t kStatus = 0x070;
inline constexpr uint64_t kQueueDescLow = 0x080;
inline constexpr uint64_t kQueueDescHigh = 0x084;
inline constexpr uint64_t kQueueDriverLow = 0x090;
inline constexpr uint64_t kQueueDriverHigh = 0x094;
inline constexpr uint64_t kQueueDeviceLow = 0x0a0;
inline constexpr uint64_t kQueueDeviceHigh = 0x0a4;
inline constexpr uint64_t kShmSel = 0x0ac;
inline constexpr uint64_t kShmLenLow = 0x0b0;
inline constexpr uint64_t kShmLenHigh = 0x0b4;
inline constexpr uint64_t kShmBaseLow = 0x0b8;
inline constexpr uint64_t kShmBaseHigh = 0x0bc;
inline constexpr uint64_t kConfigGeneration = 0x0fc;
inline constexpr uint64_t kConfig = 0x100;

inline constexpr uint32_t kMagic = 0x74726976; // "virt"
inline constexpr uint32_t kVersion2 = 2;       // modern only; legacy (1) is not offered
// Not a registered PCI vendor: "EMBR" read as a little-endian u32 is harmless
// to Linux, which ignores the vendor of virtio-mmio devices.
inline constexpr uint32_t kVendor = 0x52424d45;
} // namespace mmio

// Split virtqueue layout (virtio 1.2 §2.7).
inline constexpr uint16_t kDescFlagNext = 1;
inline constexpr uint16_t kDescFlagWrite = 2;
inline constexpr uint16_t kDescFlagIndirect = 4;
inline constexpr uint16_t kAvailFlagNoInterrupt = 1;
inline constexpr uint16_t kUsedFlagNoNotify = 1;

struct VirtqDesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
static_assert(sizeof(VirtqDesc) == 16);

struct VirtqUsedElem {
    uint32_t id;
    uint32_t len;
};
static_assert(sizeof(VirtqUsedElem) == 8);

// Alignment of the three parts (virtio 1.2 §2.7, table "Virtqueue Part Alignment").
inline constexpr uint64_t kDescAlign = 16;
inline constexpr uint64_t kAvailAlign = 2;
inline constexpr uint64_t kUsedAlign = 4;

// Byte sizes of the parts for a queue of `size` entries, including the
// event-index fields at the end of the rings (§2.7.6, §2.7.8).
constexpr uint64_t desc_table_bytes(uint32_t size) {
    return 16ull * size;
}
constexpr uint64_t avail_ring_bytes(uint32_t size) {
    return 6ull + 2ull * size;
}
constexpr uint64_t used_ring_bytes(uint32_t size) {
    return 6ull + 8ull * size;
}

// virtio 1.2 §2.7.10: true when `event` lies in the window (old, new_idx], i.e.
// the other side asked to be told once the index moved past `event`.
constexpr bool need_event(uint16_t event, uint16_t new_idx, uint16_t old) {
    return static_cast<uint16_t>(new_idx - event - 1) < static_cast<uint16_t>(new_idx - old);
}

} // namespace ember::virtio
