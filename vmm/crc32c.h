// CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), as used by
// iSCSI (RFC 3720 §12.1), ext4 and btrfs metadata. Software only, so the static
// verifier runs on any x86-64 guest CPU model the VMM exposes.
#pragma once

#include <cstdint>
#include <span>

namespace ember {

// Extends `crc` (the value returned by a previous call, or 0 to start) over `data`.
// crc32c(crc32c(0, a), b) == crc32c(0, a ++ b).
uint32_t crc32c(uint32_t crc, std::span<const uint8_t> data) noexcept;

} // namespace ember
