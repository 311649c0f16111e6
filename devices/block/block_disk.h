// A host file or block device opened as a guest disk. Opening validates
// everything the guest could trip over later, before the guest starts.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "devices/block/disk_spec.h"
#include "vmm/unique_fd.h"

namespace ember {

inline constexpr uint64_t kSectorSize = 512; // virtio 1.2 §5.2.6: sectors are 512 bytes

// Whether open() locks the image against other users (block_disk.cpp).
// `skip` is for tests that model a restored VM in the same process as the
// one it replaces, which still holds the image but no longer writes it.
enum class ImageLock { take, skip };

class BlockDisk final {
  public:
    // Throws ember::Error naming the path: missing, unreadable, a directory,
    // zero size, size not a multiple of 512, O_DIRECT unsupported, in use
    // (locked) by another process or another open of it.
    static BlockDisk open(const DiskSpec& spec, ImageLock lock = ImageLock::take);

    int fd() const noexcept { return fd_.get(); }
    const DiskSpec& spec() const noexcept { return spec_; }
    const std::string& path() const noexcept { return spec_.path; }
    bool readonly() const noexcept { return spec_.readonly; }
    // O_DIRECT (cache=none): buffers, offsets and lengths must be aligned.
    bool direct() const noexcept { return spec_.cache == DiskSpec::Cache::none; }
    uint64_t size_bytes() const noexcept { return size_; }
    uint64_t sectors() const noexcept { return size_ / kSectorSize; }
    // O_DIRECT alignment (statx STATX_DIOALIGN, or the logical sector size of
    // a block device); 512 for buffered disks.
    uint32_t mem_align() const noexcept { return mem_align_; }
    uint32_t offset_align() const noexcept { return offset_align_; }
    // The GET_ID string: `id=` or the file name, at most 20 bytes.
    const std::string& id() const noexcept { return id_; }

    // Host operations the I/O thread runs synchronously (rare, metadata-like).
    // They return 0 or -errno.
    int discard(uint64_t offset, uint64_t len) const noexcept;
    int write_zeroes(uint64_t offset, uint64_t len, bool may_unmap) const noexcept;

  private:
    BlockDisk(DiskSpec spec, UniqueFd fd, uint64_t size, std::string id);
    DiskSpec spec_;
    UniqueFd fd_;
    uint64_t size_{0};
    std::string id_;
    uint32_t mem_align_{512};
    uint32_t offset_align_{512};
};

// Opens every --disk in order (the guest sees them in this order). Throws
// ember::Error for more than platform::kMaxDisks disks or for one
// image given twice (two devices writing one file would corrupt it).
std::vector<BlockDisk> open_disks(std::span<const DiskSpec> specs);

} // namespace ember
