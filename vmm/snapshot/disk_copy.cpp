#include "vmm/snapshot/disk_copy.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include <fmt/format.h>

#include "vmm/errors.h"
#include "vmm/unique_fd.h"

namespace ember {

namespace {

UniqueFd open_or_throw(const std::filesystem::path& p, int flags, mode_t mode = 0) {
    UniqueFd fd(::open(p.c_str(), flags | O_CLOEXEC, mode));
    if (!fd) throw_errno(fmt::format("open {}", p.string()));
    return fd;
}

// Calls the caller's progress callback at most once per `every`.
class ProgressClock {
  public:
    ProgressClock(const DiskCopyProgress& progress, std::chrono::milliseconds every, uint64_t size)
        : progress_(progress), every_(every), size_(size), last_(std::chrono::steady_clock::now()) {
    }
    void at(uint64_t offset) {
        if (!progress_) return;
        const auto now = std::chrono::steady_clock::now();
        if (now - last_ < every_) return;
        last_ = now;
        progress_(offset, size_);
    }

  private:
    const DiskCopyProgress& progress_;
    std::chrono::milliseconds every_;
    uint64_t size_;
    std::chrono::steady_clock::time_point last_;
};

// Copies [off, off + len) with pread/pwrite (copy_file_range would do it in
// the kernel, but across file systems it needs 5.19+, and 9p lacks it).
void copy_range(int in, int out, uint64_t off, uint64_t len, const std::filesystem::path& from,
                ProgressClock& clock) {
    std::vector<char> buf(1 << 20);
    while (len > 0) {
        const size_t want = static_cast<size_t>(std::min<uint64_t>(len, buf.size()));
        const ssize_t n = ::pread(in, buf.data(), want, static_cast<off_t>(off));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno(fmt::format("read {}", from.string()));
        }
        if (n == 0) return; // the file shrank under us: the rest stays a hole
        for (ssize_t done = 0; done < n;) {
            const ssize_t w = ::pwrite(out, buf.data() + done, static_cast<size_t>(n - done),
                                       static_cast<off_t>(off + static_cast<uint64_t>(done)));
            if (w < 0) {
                if (errno == EINTR) continue;
                throw_errno("write the disk copy");
            }
            done += w;
        }
        off += static_cast<uint64_t>(n);
        len -= static_cast<uint64_t>(n);
        clock.at(off);
    }
}

} // namespace

DiskCopyResult copy_disk_image(const std::filesystem::path& from, const std::filesystem::path& to,
                               const DiskCopyProgress& progress, std::chrono::milliseconds every) {
    UniqueFd in = open_or_throw(from, O_RDONLY);
    struct stat st{};
    if (::fstat(in.get(), &st) != 0) throw_errno(fmt::format("stat {}", from.string()));
    const auto size = static_cast<uint64_t>(st.st_size);
    UniqueFd out = open_or_throw(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    DiskCopyResult r;
    if (::ioctl(out.get(), FICLONE, in.get()) == 0) {
        r.cloned = true;
    } else {
        // Not the same file system, or one without reflinks: copy the data
        // extents only, so a sparse image stays sparse.
        ProgressClock clock(progress, every, size);
        uint64_t off = 0;
        while (off < size) {
            const off_t data = ::lseek(in.get(), static_cast<off_t>(off), SEEK_DATA);
            if (data < 0) {
                if (errno == ENXIO) break; // only a hole is left
                if (errno != EINVAL) throw_errno(fmt::format("SEEK_DATA in {}", from.string()));
                copy_range(in.get(), out.get(), off, size - off, from, clock); // no SEEK_DATA here
                r.data_bytes += size - off;
                break;
            }
            off_t hole = ::lseek(in.get(), data, SEEK_HOLE);
            if (hole < 0) hole = static_cast<off_t>(size);
            const auto begin = static_cast<uint64_t>(data);
            const auto end = std::min(static_cast<uint64_t>(hole), size);
            copy_range(in.get(), out.get(), begin, end - begin, from, clock);
            r.data_bytes += end - begin;
            off = end;
        }
        if (::ftruncate(out.get(), static_cast<off_t>(size)) != 0) throw_errno(fmt::format("truncate {}", to.string()));
    }
    if (::fsync(out.get()) != 0) throw_errno(fmt::format("fsync {}", to.string()));
    return r;
}

} // namespace ember
