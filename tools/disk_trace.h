// bench-blk --trace: the rhythm of the block device under a file, request by
// request, from the kernel's block trace events (tracefs; root only). The
// counters of --disk-load (disk_load.h) give averages over a run; these show
// how the device answers: how many completions come in one burst, how long
// it has nothing to do, and how long after a large burst the next request
// reaches it. A device that answers the whole queue at once sits idle while
// the program on top turns the requests around, so that turnaround then
// decides the IOPS (README "The block device", session 14).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace ember::bench {

struct TraceEvent {
    enum class Kind : uint8_t { issue, complete };
    Kind kind;
    double seconds; // the trace clock
    uint64_t sector;
};

// One line of a tracefs `trace` file; nullopt for comments, other events and
// lines that do not parse.
std::optional<TraceEvent> parse_trace_line(std::string_view line);

struct DiskRhythm {
    uint64_t completions{0};
    // Completions per burst: a run of completions with no issue between.
    double per_burst{0};
    // Fraction of the time from the first issue on with no request at the
    // device (only requests whose issue was traced count).
    double idle{0};
    // Median time from the last completion of a burst of at least `large`
    // to the next issue; -1 without such a burst.
    double turnaround_us{-1};
    double ms_per_request{0}; // issue to completion, mean
};

// `events` in time order, as tracefs prints them.
DiskRhythm disk_rhythm(std::span<const TraceEvent> events, unsigned large);

// Removes the instances `ember-bench-PID` under `instances` (tracefs's
// instances directory) whose bench-blk is gone: a bench-blk killed mid-run
// (SIGKILL, a lost terminal) leaves its instance, with its 8 MB buffer,
// behind. An instance whose PID is alive stays, even if that PID now belongs
// to another program. The names removed, for the caller to report.
std::vector<std::string> remove_stale_instances(const std::filesystem::path& instances);

// Traces one block device's request issues and completions, in a tracefs
// instance of its own (the global trace buffer is left alone), for a window
// inside each run.
class DiskTrace {
  public:
    // The whole disk under `file` (a partition's events carry its disk).
    // nullopt, with the reason in `why`, without tracefs, root or a disk.
    // Instances left by killed bench-blks are removed first; their names are
    // appended to `removed`.
    static std::optional<DiskTrace> for_file(const std::filesystem::path& file, std::string& why,
                                             std::vector<std::string>& removed);
    ~DiskTrace();
    DiskTrace(DiskTrace&& other) noexcept;
    DiskTrace& operator=(DiskTrace&&) = delete;
    DiskTrace(const DiskTrace&) = delete;
    DiskTrace& operator=(const DiskTrace&) = delete;

    // Traces from `delay` after this call for `length`, on a thread of its
    // own, while the caller runs the workload.
    void start(std::chrono::milliseconds delay, std::chrono::milliseconds length);
    // Waits for the window to end; the events traced in it.
    std::vector<TraceEvent> collect();
    const std::string& device() const noexcept { return device_; }

  private:
    DiskTrace(std::filesystem::path instance, std::string device)
        : instance_(std::move(instance)), device_(std::move(device)) {}
    std::filesystem::path instance_; // empty once moved from
    std::string device_;             // e.g. vda, for the report
    std::thread window_;
};

} // namespace ember::bench
