#include "devices/block/block_disk.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "vmm/log.h"
#include "vmm/platform.h"

namespace ember {

namespace {
[[noreturn]] void fail(const std::string& path, std::string_view why) {
    throw Error(fmt::format("disk image {}: {}", path, why));
}

// Two VMs writing one image corrupt it, and a VM reading an image another
// writes sees torn data: like QEMU (and unlike Firecracker), ember locks the
// image for as long as it is open. An open file description lock
// (F_OFD_SETLK) on the whole file: exclusive for a writable disk, shared for a
// read-only one, so read-only disks can be shared. It goes away with the
// descriptor, also when ember is killed. QEMU locks single bytes of the
// image, which conflict with these whole-file locks either way round.
void lock_image(int fd, const std::string& path, bool readonly) {
    struct flock fl {};
    fl.l_type = readonly ? F_RDLCK : F_WRLCK;
    fl.l_whence = SEEK_SET; // l_start = l_len = 0: the whole file, also as it grows
    if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) return;
    const int err = errno;
    if (err == EAGAIN || err == EACCES) {
        // (F_OFD_GETLK could not name the holder: it reports pid -1 for
        // open file description locks.)
        fail(path, readonly ? "is in use: another process has it open for writing (it holds "
                              "a write lock on it), so what the guest reads could change under "
                              "it; stop that process first"
                            : "is in use: another process has it open (it holds a lock on it: "
                              "another ember, or QEMU); two VMs writing one image corrupt it. "
                              "Stop that process first, or give the disk ,readonly in both to "
                              "share it read-only");
    }
    // A file system without locks (some network file systems): serve the
    // disk unlocked, as before, and say so.
    log::warn("disk image {}: cannot be locked against other processes ({}); serving it "
              "unlocked",
              path, std::strerror(err));
}
} // namespace

BlockDisk::BlockDisk(DiskSpec spec, UniqueFd fd, uint64_t size, std::string id)
    : spec_(std::move(spec)), fd_(std::move(fd)), size_(size), id_(std::move(id)) {}

BlockDisk BlockDisk::open(const DiskSpec& spec, ImageLock lock) {
    const auto& path = spec.path;
    if (path.empty()) throw Error("disk image path is empty");
    if (spec.id.size() > kBlockIdMax)
        fail(path, fmt::format("id '{}' is longer than {} bytes", spec.id, kBlockIdMax));
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) fail(path, "does not exist");
        fail(path, fmt::format("cannot be examined: {}", std::strerror(errno)));
    }
    if (S_ISDIR(st.st_mode)) fail(path, "is a directory, not a disk image");
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        fail(path, "is neither a regular file nor a block device");
    int flags = (spec.readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    if (spec.cache == DiskSpec::Cache::none) flags |= O_DIRECT;
    UniqueFd fd(::open(path.c_str(), flags));
    if (!fd) {
        const int err = errno;
        if (err == EINVAL && (flags & O_DIRECT) != 0)
            fail(path,
                 "its file system does not support O_DIRECT (cache=none); use cache=writeback");
        if ((err == EACCES || err == EROFS || err == EPERM) && !spec.readonly)
            fail(path, fmt::format("cannot be opened for writing: {} (add ,readonly to use it "
                                   "read-only)",
                                   std::strerror(err)));
        fail(path, fmt::format("cannot be opened: {}", std::strerror(err)));
    }
    if (lock == ImageLock::take) lock_image(fd.get(), path, spec.readonly);
    uint64_t size = static_cast<uint64_t>(st.st_size);
    if (S_ISBLK(st.st_mode) && ::ioctl(fd.get(), BLKGETSIZE64, &size) != 0)
        fail(path, fmt::format("BLKGETSIZE64 failed: {}", std::strerror(errno)));
    if (size == 0) fail(path, "is empty (0 bytes); a disk needs at least one 512-byte sector");
    if (size % kSectorSize != 0)
        fail(path, fmt::format("size {} bytes is not a multiple of 512 (the sector size)", size));
    std::string id = spec.id;
    if (id.empty()) {
        const auto slash = path.find_last_of('/');
        id = path.substr(slash == std::string::npos ? 0 : slash + 1).substr(0, kBlockIdMax);
    }
    BlockDisk disk(spec, std::move(fd), size, std::move(id));
    if (disk.direct()) {
        struct statx sx {};
        if (S_ISBLK(st.st_mode)) {
            int lbs = 0;
            if (::ioctl(disk.fd(), BLKSSZGET, &lbs) == 0 && lbs > 0)
                disk.mem_align_ = disk.offset_align_ = static_cast<uint32_t>(lbs);
        } else if (::statx(disk.fd(), "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
                   (sx.stx_mask & STATX_DIOALIGN) != 0 && sx.stx_dio_offset_align != 0) {
            disk.mem_align_ = std::max<uint32_t>(sx.stx_dio_mem_align, 1);
            disk.offset_align_ = sx.stx_dio_offset_align;
        }
        // Whole sectors are the unit the guest uses; a disk whose direct I/O
        // needs more than its size allows cannot be served.
        if (disk.offset_align_ < kSectorSize) disk.offset_align_ = kSectorSize;
        if (size % disk.offset_align_ != 0 || disk.offset_align_ > 4096)
            fail(path, fmt::format("size {} does not fit the O_DIRECT alignment {} (cache=none)",
                                   size, disk.offset_align_));
    }
    return disk;
}

int BlockDisk::discard(uint64_t offset, uint64_t len) const noexcept {
    if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(offset), static_cast<off_t>(len)) == 0)
        return 0;
    // A discard is a hint (virtio 1.2 §5.2.6.2): unsupported is success.
    return errno == EOPNOTSUPP ? 0 : -errno;
}

int BlockDisk::write_zeroes(uint64_t offset, uint64_t len, bool may_unmap) const noexcept {
    const int mode = may_unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                               : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    if (::fallocate(fd_.get(), mode, static_cast<off_t>(offset), static_cast<off_t>(len)) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != EINVAL) return -errno;
    // Fallback: write zeroes. Aligned for O_DIRECT; offsets and lengths are
    // whole sectors already.
    constexpr size_t kChunk = 1 << 20;
    std::unique_ptr<void, decltype(&std::free)> zeroes(std::aligned_alloc(4096, kChunk),
                                                       &std::free);
    if (!zeroes) return -ENOMEM;
    std::memset(zeroes.get(), 0, kChunk);
    while (len > 0) {
        const size_t n = len < kChunk ? static_cast<size_t>(len) : kChunk;
        const ssize_t w = ::pwrite(fd_.get(), zeroes.get(), n, static_cast<off_t>(offset));
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (w == 0) return -EIO;
        offset += static_cast<uint64_t>(w);
        len -= static_cast<uint64_t>(w);
    }
    return 0;
}

std::vector<BlockDisk> open_disks(std::span<const DiskSpec> specs) {
    if (specs.size() > platform::kMaxDisks)
        throw Error(fmt::format("{} disks given; ember supports at most {}", specs.size(),
                                platform::kMaxDisks));
    std::vector<BlockDisk> disks;
    std::vector<std::pair<dev_t, ino_t>> seen;
    for (const auto& spec : specs) {
        // Checked before opening: the image's lock would otherwise refuse the
        // second open as "in use", which is true but hides the real mistake.
        // (A path that cannot be examined is left to open() to explain.)
        if (struct stat st{}; ::stat(spec.path.c_str(), &st) == 0) {
            const auto key = S_ISBLK(st.st_mode) ? std::pair{st.st_rdev, ino_t{0}}
                                                 : std::pair{st.st_dev, st.st_ino};
            if (std::find(seen.begin(), seen.end(), key) != seen.end())
                fail(spec.path, "is given as a disk more than once");
            seen.push_back(key);
        }
        disks.push_back(BlockDisk::open(spec));
    }
    return disks;
}

} // namespace ember
