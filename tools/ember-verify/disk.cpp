#include "tools/ember-verify/disk.h"

#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "tools/ember-verify/block_format.h"
#include "tools/ember-verify/errors.h"

namespace ember::verify {
namespace {

constexpr std::align_val_t kAlignment{kBlockSize};

std::string errno_text(int err) { return fmt::format("{} (errno {})", std::strerror(err), err); }

[[noreturn]] void fail(const std::string& path, const std::string& what, int err) {
    throw SetupError(fmt::format("{}: {}: {}", path, what, errno_text(err)));
}

} // namespace

std::string io_error_text(int err) {
    if (err == kShortTransfer) return "unexpected end of file or device";
    return errno_text(err);
}

Disk Disk::open(const std::string& path, const DiskOptions& o) {
    if (o.size % kBlockSize != 0)
        throw SetupError(fmt::format("size {} is not a multiple of {}", o.size, kBlockSize));
    int flags = (o.writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
    if (o.direct) flags |= O_DIRECT;
    if (o.create) flags |= O_CREAT;

    // Judge the kind of file before opening it, so that a directory or a
    // character device gets a plain answer rather than an errno from open().
    if (struct stat st {}; ::stat(path.c_str(), &st) == 0 && !S_ISBLK(st.st_mode) &&
                           !S_ISREG(st.st_mode))
        throw SetupError(fmt::format("{}: not a block device or regular file{}", path,
                                     S_ISDIR(st.st_mode) ? " (it is a directory)" : ""));

    int fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0) {
        const int err = errno;
        if (err == EINVAL && o.direct)
            throw SetupError(fmt::format("{}: O_DIRECT is not supported here (--direct): {}", path,
                                         errno_text(err)));
        if (err == ENOENT && !o.create)
            throw SetupError(fmt::format("{}: no such device or file (use --create to create a "
                                         "regular file)",
                                         path));
        fail(path, o.writable ? "cannot open for reading and writing" : "cannot open for reading",
             err);
    }
    // From here the fd must be closed on every throw.
    struct Closer {
        int& fd;
        ~Closer() {
            if (fd >= 0) ::close(fd);
        }
    } closer{fd};

    struct stat st {};
    if (::fstat(fd, &st) != 0) fail(path, "fstat", errno);
    uint64_t capacity = 0;
    const bool block_device = S_ISBLK(st.st_mode);
    if (block_device) {
        if (::ioctl(fd, BLKGETSIZE64, &capacity) != 0) fail(path, "ioctl BLKGETSIZE64", errno);
        int logical = 0;
        if (::ioctl(fd, BLKSSZGET, &logical) != 0) fail(path, "ioctl BLKSSZGET", errno);
        if (logical <= 0 || static_cast<std::size_t>(logical) > kBlockSize)
            throw SetupError(fmt::format("{}: logical block size {} is not supported (at most {})",
                                         path, logical, kBlockSize));
    } else if (S_ISREG(st.st_mode)) {
        capacity = static_cast<uint64_t>(st.st_size);
        if (o.create && o.size > capacity) {
            if (::ftruncate(fd, static_cast<off_t>(o.size)) != 0)
                fail(path, fmt::format("cannot extend to {} bytes", o.size), errno);
            capacity = o.size;
        }
    } else {
        throw SetupError(fmt::format("{}: not a block device or regular file", path));
    }

    uint64_t region = o.size;
    if (region == 0) {
        region = capacity / kBlockSize * kBlockSize;
        if (region == 0)
            throw SetupError(fmt::format("{}: {} bytes is smaller than one {}-byte block", path,
                                         capacity, kBlockSize));
    } else if (region > capacity) {
        throw SetupError(fmt::format("{}: size {} is larger than the {} ({} bytes)", path, region,
                                     block_device ? "device" : "file", capacity));
    }
    const int owned = std::exchange(fd, -1);
    return Disk{owned, path, region, capacity, block_device};
}

Disk::Disk(int fd, std::string path, uint64_t region, uint64_t capacity, bool block_device) noexcept
    : fd_{fd}, path_{std::move(path)}, region_bytes_{region}, capacity_bytes_{capacity},
      block_device_{block_device} {}

Disk::Disk(Disk&& other) noexcept
    : fd_{std::exchange(other.fd_, -1)}, path_{std::move(other.path_)},
      region_bytes_{other.region_bytes_}, capacity_bytes_{other.capacity_bytes_},
      block_device_{other.block_device_} {}

Disk::~Disk() {
    if (fd_ >= 0) ::close(fd_);
}

int Disk::write_at(std::span<const uint8_t> data, uint64_t offset) const noexcept {
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done,
                                   static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue; // a stop signal or a checkpoint: retry
            return errno;
        }
        if (n == 0) return kShortTransfer;
        done += static_cast<std::size_t>(n);
    }
    return 0;
}

int Disk::read_at(std::span<uint8_t> data, uint64_t offset) const noexcept {
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::pread(fd_, data.data() + done, data.size() - done,
                                  static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return kShortTransfer;
        done += static_cast<std::size_t>(n);
    }
    return 0;
}

int Disk::datasync() const noexcept {
    while (::fdatasync(fd_) != 0) {
        if (errno != EINTR) return errno;
    }
    return 0;
}

int Disk::drop_cache() const noexcept {
    return ::posix_fadvise(fd_, 0, static_cast<off_t>(region_bytes_), POSIX_FADV_DONTNEED);
}

AlignedBuffer::AlignedBuffer(std::size_t bytes)
    : data_{static_cast<uint8_t*>(::operator new[](bytes, kAlignment))}, size_{bytes} {
    std::memset(data_.get(), 0, bytes);
}

void AlignedBuffer::Free::operator()(uint8_t* p) const noexcept { ::operator delete[](p, kAlignment); }

} // namespace ember::verify
