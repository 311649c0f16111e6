// Copies a disk image into a checkpoint (--checkpoint-disks copy), so the
// checkpoint can be restored after the original disk has moved on.
#pragma once

#include <cstdint>
#include <filesystem>

namespace ember {

struct DiskCopyResult {
    bool cloned = false;     // FICLONE: the file system shares the extents
    uint64_t data_bytes = 0; // bytes copied (sparse copy: holes are skipped)
};

// Replaces `to` with a copy of `from`: a reflink (FICLONE) where the file
// system supports it, otherwise a sparse copy of the data extents
// (SEEK_DATA/SEEK_HOLE). Synced to disk before it returns. Throws
// ember::SystemError naming the file.
DiskCopyResult copy_disk_image(const std::filesystem::path& from, const std::filesystem::path& to);

} // namespace ember
