// Metrics output as Firecracker writes it (PUT /metrics, --metrics-path):
// one JSON object per line, appended to a file or a named pipe, every 60 s
// and on request. Unlike Firecracker's, ember's counters are totals since
// the VM was built or restored, not deltas since the last line, so a lost
// or skipped line loses nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ember/vm.h"
#include "vmm/unique_fd.h"

namespace ember::api {

// How often a metrics line is written without being asked (Firecracker's
// period).
inline constexpr std::chrono::seconds kMetricsPeriod{60};

// One metrics line's object. `metrics` unset: no VM exists yet (the control
// socket before InstanceStart).
nlohmann::json metrics_json(const std::optional<embed::Metrics>& metrics,
                            std::chrono::system_clock::time_point now);

class MetricsFile final {
  public:
    // Opens `path` as open_output_file() does (output_file.h): a reader of
    // a named pipe that is absent or slow costs lines, never a stalled VMM.
    // Throws ember::Error naming the path.
    explicit MetricsFile(std::filesystem::path path);

    // Appends `line` and a newline. A failure is logged (sampled) and
    // counted, never thrown: metrics must not stop a VM. Returns whether the
    // whole line was written.
    bool write(const nlohmann::json& line);

    // Appends the line of `metrics` as of now (metrics_json); what the
    // periodic timer, FlushMetrics and the last line at the exit write.
    bool write_counts(const std::optional<embed::Metrics>& metrics);

    const std::filesystem::path& path() const noexcept { return path_; }
    uint64_t lines_lost() const noexcept { return lost_; }

  private:
    std::filesystem::path path_;
    UniqueFd fd_;
    bool pipe_{false};
    bool cut_{false}; // the last line written was cut short
    uint64_t lost_{0};
};

} // namespace ember::api
