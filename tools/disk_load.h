// What the block device under a file did during a benchmark run, from its
// counters in /sys/dev/block/MAJ:MIN/stat (Documentation/block/stat.rst):
// how many requests it held on average, how busy it was, and how long one
// request took there. bench-blk prints it for ember and fio side by side, so
// a gap in IOPS can be placed: at the disk, or in what runs around it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace ember::bench {

// The counters bench-blk needs, cumulative since the device appeared.
struct DiskCounters {
    uint64_t reads{0};
    uint64_t read_ms{0}; // summed over requests
    uint64_t writes{0};
    uint64_t write_ms{0}; // summed over requests
    uint64_t busy_ms{0};  // io_ticks: time with at least one request held
    uint64_t queue_ms{0}; // time_in_queue: requests held, summed over time
};

// One stat line; nullopt unless it has at least the 11 original fields.
std::optional<DiskCounters> parse_disk_stat(std::string_view line);

struct DiskLoad {
    double in_flight{0}; // requests held by the device, time-averaged
    double busy{0};      // fraction of the time it held any
    double ms_per_request{0};
};

// From two samples `seconds` apart. Requests that were in flight at either
// sample make ms_per_request a little uncertain; over seconds of a run at
// thousands of IOPS that is well under a per cent.
DiskLoad disk_load(const DiskCounters& before, const DiskCounters& after, double seconds);

// /sys/dev/block/MAJ:MIN of the block device under `file` (the device itself
// when `file` is a block device), resolved; nullopt, with the reason in
// `why`, when there is none (tmpfs, overlayfs, 9p) or `file` cannot be read.
std::optional<std::filesystem::path> block_device_sysfs(const std::filesystem::path& file,
                                                        std::string& why);

// The stat file of the block device a file lives on.
class DiskStatFile {
  public:
    // nullopt when the file's file system has no block device under it
    // (tmpfs, overlayfs, 9p) or the kernel shows no stat for it.
    static std::optional<DiskStatFile> for_file(const std::filesystem::path& file);

    std::optional<DiskCounters> sample() const;
    const std::string& device() const noexcept { return device_; }

  private:
    DiskStatFile(std::filesystem::path stat, std::string device)
        : stat_(std::move(stat)), device_(std::move(device)) {}
    std::filesystem::path stat_;
    std::string device_; // e.g. vda, for the report
};

} // namespace ember::bench
