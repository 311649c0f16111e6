// The ember command: parse the command line, build the VM through libember
// (include/ember/vm.h), run it, and turn the way it stopped into an exit
// status (0 guest power-off/reboot, 1 error or guest panic, 2 bad usage).
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "ember/vm.h"
#include "vmm/api/config_file.h"
#include "vmm/api/metrics_file.h"
#include "vmm/api/output_file.h"
#include "vmm/api/serve.h"
#include "vmm/cli.h"
#include "vmm/cli_embed.h"
#include "vmm/cli_run.h"
#include "vmm/diagnostics.h"
#include "vmm/log.h"
#include "vmm/seccomp.h"
#include "vmm/snapshot/compare.h"
#include "vmm/snapshot/describe.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/thread_confinement.h"
#include "vmm/vm.h"

namespace ember {
const char* version_string();

namespace {

void print_snapshot_info(const std::filesystem::path& dir) {
    SnapshotReader s(dir);
    std::fputs(describe_snapshot(s).c_str(), stdout);
    s.verify_all();
    std::printf("  checksums ok\n");
}

// The process options of a command that runs a VM; nullptr for the others.
const ProcessOptions* process_options(const Command& cmd) {
    return std::visit(
        [](const auto& c) -> const ProcessOptions* {
            if constexpr (requires { c.process; })
                return &c.process;
            else
                return nullptr;
        },
        cmd);
}

} // namespace
} // namespace ember

int main(int argc, char** argv) {
    using namespace ember;
    // Block the checkpoint signal before anything else: a SIGUSR1 that arrives
    // while the VM is being built stays pending for the main loop instead of
    // killing the process (its default action). Threads inherit the mask.
    // SIGUSR2 (state dump) likewise, for the diagnostics thread's sigwait.
    sigset_t usr;
    sigemptyset(&usr);
    sigaddset(&usr, SIGUSR1);
    sigaddset(&usr, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr, nullptr);
    std::vector<std::string> args(argv, argv + argc);
    Command cmd;
    try {
        cmd = parse_command_line(args);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "ember: %s\nRun 'ember --help' for usage.\n", e.what());
        return 2;
    }
    if (auto* h = std::get_if<HelpRequest>(&cmd)) {
        std::fputs(h->text.c_str(), stdout);
        return 0;
    }
    if (auto* l = std::get_if<ListFaultsRequest>(&cmd)) {
        std::fputs(l->text.c_str(), stdout);
        return 0;
    }
    if (auto* c = std::get_if<ConfigFileRequest>(&cmd)) {
        try {
            cmd = run_request_from(*c);
        } catch (const api::ConfigFileError& e) {
            std::fprintf(stderr, "ember: %s\n", e.what());
            return 2;
        } catch (const std::exception& e) {
            log::error("{}", e.what());
            return 1;
        }
    }
    if (std::holds_alternative<VersionRequest>(cmd)) {
        std::printf("%s\n", version_string());
        return 0;
    }
    if (auto* info = std::get_if<SnapshotInfoRequest>(&cmd)) {
        try {
            print_snapshot_info(info->snapshot_dir);
            if (!info->compare_with) return 0;
            const auto diffs = compare_snapshots(SnapshotReader(info->snapshot_dir), SnapshotReader(*info->compare_with));
            for (const auto& d : diffs) std::printf("  differs  %s\n", d.c_str());
            std::printf("  compared with %s: %s\n", info->compare_with->c_str(),
                        diffs.empty() ? "vcpu and device state equal" : "DIFFERENT");
            return diffs.empty() ? 0 : 1;
        } catch (const std::exception& e) {
            log::error("{}", e.what());
            return 1;
        }
    }
    // Every command left runs a VM: from here on only the system calls a VMM
    // needs (vmm/seccomp.h), before any thread starts or any guest byte is read.
    const ProcessOptions* process = process_options(cmd);
    if (process && process->seccomp) {
        try {
            seccomp::install();
            set_thread_confiner(&seccomp::confine_thread);
        } catch (const std::exception& e) {
            log::error("{}", e.what());
            return 1;
        }
    }
    // `ember run` and `ember restore` stop the VM cleanly on SIGTERM, SIGINT
    // and SIGHUP: blocked before the first thread starts, so none of them
    // takes the signal's default action. The control socket takes them
    // through Asio instead (serve.cpp).
    sigset_t stops;
    sigemptyset(&stops);
    if (auto* run = std::get_if<RunRequest>(&cmd);
        (run && !run->api_sock) || std::holds_alternative<RestoreRequest>(cmd))
        stops = block_stop_signals();
    diagnostics::serve_sigusr2();
    try {
        // Before anything is built: every line of this run goes to the log
        // file, and a metrics path that cannot be opened fails first.
        std::optional<api::MetricsFile> metrics;
        if (process) {
            if (process->log_path) api::move_log_to(*process->log_path, "--log-path");
            if (process->log_level) log::set_level(*process->log_level);
            if (process->verbose) log::set_level(log::Level::debug);
            if (process->metrics_path) metrics.emplace(*process->metrics_path);
        }
        if (auto* serve = std::get_if<ApiServeRequest>(&cmd)) {
            return serve_api(serve->api_sock, VmConfig{}, std::nullopt, std::move(metrics),
                             serve->instance_id);
        }
        // Every VM goes through libember, as in any program embedding ember;
        // the control socket (vmm/api) is a client of it too.
        if (auto* run = std::get_if<RunRequest>(&cmd); run && run->api_sock) {
            return serve_api(*run->api_sock, run->config, embed::Vm::create(to_embed(*run)),
                             std::move(metrics), run->instance_id);
        }
        std::optional<embed::Vm> vm;
        if (auto* run = std::get_if<RunRequest>(&cmd)) {
            vm = embed::Vm::create(to_embed(*run));
        } else {
            auto& r = std::get<RestoreRequest>(cmd);
            vm = embed::Vm::restore(r.snapshot_dir, to_embed(r));
            log::info("restored from {}", r.snapshot_dir.string());
        }
        return run_until_exit(*vm, metrics, stops);
    } catch (const std::exception& e) {
        log::error("{}", e.what());
        return 1;
    }
}
