// Copies a disk image into a checkpoint (--checkpoint-disks copy), so the
// checkpoint can be restored after the original disk has moved on.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>

namespace ember {

struct DiskCopyResult {
    bool cloned = false;     // FICLONE: the file system shares the extents
    uint64_t data_bytes = 0; // bytes copied (sparse copy: holes are skipped)
};

// How far a copy has come: the offset reached in the image and its size.
// The guest is paused while its disks are copied, so a large image should
// not leave the user looking at a silent terminal.
using DiskCopyProgress = std::function<void(uint64_t offset, uint64_t size)>;

// Replaces `to` with a copy of `from`: a reflink (FICLONE) where the file
// system supports it, otherwise a sparse copy of the data extents
// (SEEK_DATA/SEEK_HOLE). Synced to disk before it returns. Throws
// ember::SystemError naming the file. A sparse copy calls `progress` once
// `every` has passed since the start or its last call (not at the end: the
// result says what was done), a reflink never.
DiskCopyResult copy_disk_image(const std::filesystem::path& from, const std::filesystem::path& to,
                               const DiskCopyProgress& progress = {},
                               std::chrono::milliseconds every = std::chrono::seconds(2));

} // namespace ember
