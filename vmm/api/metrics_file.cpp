#include "vmm/api/metrics_file.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "vmm/api/output_file.h"
#include "vmm/errors.h"
#include "vmm/log.h"

namespace ember::api {
namespace {

// libember's to_string(State) lives in the library, which the control
// socket's code does not link (it sees a VM only through VmController).
const char* state_name(embed::State s) {
    switch (s) {
    case embed::State::created:
        return "created";
    case embed::State::running:
        return "running";
    case embed::State::paused:
        return "paused";
    case embed::State::exited:
        return "exited";
    }
    return "unknown";
}

} // namespace

nlohmann::json metrics_json(const std::optional<embed::Metrics>& metrics,
                            std::chrono::system_clock::time_point now) {
    nlohmann::json j;
    j["utc_timestamp_ms"] =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    j["vm"] = {{"state", metrics ? state_name(metrics->state) : "not started"}};
    auto vcpus = nlohmann::json::array();
    auto disks = nlohmann::json::array();
    if (metrics) {
        for (const auto& v : metrics->vcpus)
            vcpus.push_back(
                {{"exits", v.exits}, {"pio_exits", v.pio_exits}, {"mmio_exits", v.mmio_exits}});
        for (const auto& d : metrics->disks)
            disks.push_back({{"id", d.id},
                             {"path", d.path.string()},
                             {"requests", d.requests},
                             {"reads", d.reads},
                             {"writes", d.writes},
                             {"flushes", d.flushes},
                             {"discards", d.discards},
                             {"write_zeroes", d.write_zeroes},
                             {"bytes_read", d.bytes_read},
                             {"bytes_written", d.bytes_written},
                             {"bad_requests", d.bad_requests},
                             {"host_errors", d.host_errors},
                             {"interrupts", d.interrupts},
                             {"throttled", d.throttled}});
    }
    j["vcpus"] = std::move(vcpus);
    j["disks"] = std::move(disks);
    // Only for a VM with network devices: one object per device, by id
    // (Firecracker's "net_IFACE" groups, under one key here).
    if (metrics && !metrics->nets.empty()) {
        nlohmann::json nets = nlohmann::json::object();
        for (const auto& n : metrics->nets)
            nets[n.id] = {{"tap", n.tap},
                          {"rx_frames", n.rx_frames},
                          {"rx_bytes", n.rx_bytes},
                          {"rx_dropped", n.rx_dropped},
                          {"tx_frames", n.tx_frames},
                          {"tx_bytes", n.tx_bytes},
                          {"tx_errors", n.tx_errors},
                          {"bad_requests", n.bad_requests},
                          {"interrupts", n.interrupts},
                          {"rx_throttled", n.rx_throttled},
                          {"tx_throttled", n.tx_throttled}};
        j["net"] = std::move(nets);
    }
    // Only for a VM with the device, as Firecracker's "entropy" group.
    if (metrics && metrics->entropy) {
        const auto& e = *metrics->entropy;
        j["entropy"] = {{"requests", e.requests},
                        {"bytes", e.bytes},
                        {"bad_requests", e.bad_requests},
                        {"host_errors", e.host_errors},
                        {"interrupts", e.interrupts}};
    }
    return j;
}

MetricsFile::MetricsFile(std::filesystem::path path) : path_(std::move(path)) {
    auto out = open_output_file(path_, "metrics file");
    fd_ = std::move(out.fd);
    pipe_ = out.pipe;
}

bool MetricsFile::write_counts(const std::optional<embed::Metrics>& metrics) {
    return write(metrics_json(metrics, std::chrono::system_clock::now()));
}

bool MetricsFile::write(const nlohmann::json& line) {
    // After a line cut short, a newline first: the reader loses that line
    // but not this one too.
    const std::string text = (cut_ ? "\n" : "") + line.dump() + '\n';
    size_t done = 0;
    int err = 0;
    while (done < text.size()) {
        const ssize_t n = ::write(fd_.get(), text.data() + done, text.size() - done);
        if (n > 0) {
            done += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        err = n < 0 ? errno : EIO;
        // A pipe that took part of the line: give its reader a moment for
        // the rest rather than leave half a line that breaks the next one.
        if (pipe_ && err == EAGAIN && done > 0) {
            pollfd p{fd_.get(), POLLOUT, 0};
            if (::poll(&p, 1, 100) > 0) continue;
        }
        break;
    }
    if (done == text.size()) {
        cut_ = false;
        return true;
    }
    cut_ = cut_ || done > 0;
    ++lost_;
    if (log::worth_logging(lost_))
        log::warn("metrics file {}: {} ({}); lines lost so far: {}", path_.string(),
                  done == 0 ? "a line was not written" : "a line was cut short",
                  err == EAGAIN ? "the pipe is full: nobody reads it" : std::strerror(err), lost_);
    return false;
}

} // namespace ember::api
