#include "vmm/cli_run.h"

#include <pthread.h>
#include <time.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>

#include "vmm/api/config_file.h"
#include "vmm/api/output_file.h"
#include "vmm/cli_embed.h"
#include "vmm/log.h"
#include "vmm/raw_terminal.h"

namespace ember {
namespace {

constexpr int kStopSignals[] = {SIGTERM, SIGINT, SIGHUP};
// How long a stop may take (a checkpoint the signal came in the middle of,
// a vcpu slow to leave the guest) before ember exits without it.
constexpr std::chrono::seconds kStopGrace{30};

const char* signal_name(int sig) {
    switch (sig) {
    case SIGTERM:
        return "SIGTERM";
    case SIGINT:
        return "SIGINT";
    case SIGHUP:
        return "SIGHUP";
    }
    return "a signal";
}

} // namespace

sigset_t block_stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : kStopSignals) {
        struct sigaction old {};
        if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaddset(&set, sig);
    }
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    return set;
}

int run_until_exit(embed::Vm& vm, std::optional<api::MetricsFile>& metrics, const sigset_t& stops) {
    using clock = std::chrono::steady_clock;
    auto write_metrics = [&] {
        if (metrics) metrics->write_counts(vm.metrics());
    };
    vm.start();
    auto next_line = clock::now() + api::kMetricsPeriod;
    int stopped_by = 0;
    for (;;) {
        // A short wait: the stop signals are polled in between.
        if (const auto exit = vm.wait_for(std::chrono::milliseconds(200))) {
            write_metrics(); // the final counts
            if (stopped_by == 0) return report_exit(*exit);
            log::info("stopped by {}", signal_name(stopped_by));
            return 128 + stopped_by;
        }
        const timespec no_wait{0, 0};
        if (const int sig = ::sigtimedwait(&stops, nullptr, &no_wait); sig > 0 && stopped_by == 0) {
            stopped_by = sig;
            log::info("{}: stopping the VM", signal_name(sig));
            std::thread([sig] {
                std::this_thread::sleep_for(kStopGrace);
                log::error("the VM did not stop within {} s of {}; exiting without it",
                           kStopGrace.count(), signal_name(sig));
                raw_terminal::restore_before_exit();
                std::_Exit(128 + sig);
            }).detach();
            vm.stop(); // the next wait_for() returns its exit
            continue;
        }
        if (metrics && clock::now() >= next_line) {
            write_metrics();
            next_line += api::kMetricsPeriod;
        }
    }
}

RunRequest run_request_from(const ConfigFileRequest& c) {
    const api::ConfigFile file = api::read_config_file(c.config_file, VmConfig{});
    const auto once = [&](const char* section, const char* flag,
                          const std::optional<std::filesystem::path>& from_flag,
                          const std::optional<std::filesystem::path>& from_file) {
        if (from_flag && from_file)
            throw api::ConfigFileError(fmt::format(
                "{}: \"{}\" names {}, and {} {}: give one of them", c.config_file.string(), section,
                from_file->string(), flag, from_flag->string()));
    };
    once("logger", "--log-path", c.process.log_path, file.logger.log_path);
    once("metrics", "--metrics-path", c.process.metrics_path, file.metrics_path);
    RunRequest r;
    r.config = file.config;
    r.api_sock = c.api_sock;
    r.instance_id = c.instance_id;
    r.process = c.process;
    if (c.process.log_level && file.logger.level)
        throw api::ConfigFileError(
            fmt::format("{}: \"logger\" sets the level, and so does --level: give one of them",
                        c.config_file.string()));
    if (!r.process.metrics_path) r.process.metrics_path = file.metrics_path;
    if (file.logger.log_path)
        api::move_log_to(*file.logger.log_path,
                         fmt::format("{} \"logger\"", c.config_file.string()));
    if (file.logger.level) log::set_level(*file.logger.level);
    return r;
}

} // namespace ember
