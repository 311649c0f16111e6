// The device or file under test: open, size checks, and positional I/O that
// reports errno instead of throwing, because the verifier counts I/O errors and
// keeps going (a run with errors ends in VERIFY FAIL, not in a crash).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace ember::verify {

struct DiskOptions {
    bool writable{true};
    bool direct{false};  // O_DIRECT: buffers and offsets must be 4 KiB aligned
    bool create{false};  // create or extend a regular file to `size`
    uint64_t size{0};    // bytes of the region from offset 0; 0 = the whole device or file
};

// The result of one positional I/O: 0, an errno value, or kShortTransfer when
// the file ended early (pread returned 0) or a write made no progress.
inline constexpr int kShortTransfer = -1;
std::string io_error_text(int err); // "Input/output error (errno 5)", "unexpected end of file"

class Disk final {
public:
    // Throws SetupError with a message naming the path and the problem.
    static Disk open(const std::string& path, const DiskOptions& options);

    Disk(Disk&& other) noexcept;
    Disk& operator=(Disk&&) = delete;
    Disk(const Disk&) = delete;
    ~Disk();

    const std::string& path() const noexcept { return path_; }
    uint64_t region_bytes() const noexcept { return region_bytes_; }
    uint64_t capacity_bytes() const noexcept { return capacity_bytes_; }
    bool is_block_device() const noexcept { return block_device_; }

    // Whole transfers with EINTR and short-transfer loops; thread safe.
    int write_at(std::span<const uint8_t> data, uint64_t offset) const noexcept;
    int read_at(std::span<uint8_t> data, uint64_t offset) const noexcept;
    int datasync() const noexcept;
    // Evicts the region's clean pages from the page cache so that the next reads
    // reach the device (POSIX_FADV_DONTNEED; a no-op in effect with O_DIRECT).
    int drop_cache() const noexcept;

private:
    Disk(int fd, std::string path, uint64_t region, uint64_t capacity, bool block_device) noexcept;

    int fd_{-1};
    std::string path_;
    uint64_t region_bytes_{0};
    uint64_t capacity_bytes_{0};
    bool block_device_{false};
};

// A heap buffer aligned for O_DIRECT.
class AlignedBuffer final {
public:
    explicit AlignedBuffer(std::size_t bytes);
    std::span<uint8_t> span() noexcept { return {data_.get(), size_}; }
    std::span<const uint8_t> span() const noexcept { return {data_.get(), size_}; }

private:
    struct Free {
        void operator()(uint8_t* p) const noexcept;
    };
    std::unique_ptr<uint8_t[], Free> data_;
    std::size_t size_;
};

} // namespace ember::verify
