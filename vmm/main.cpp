// The ember command: parse the command line, build the VM, run it, and turn
// the way it stopped into an exit status (0 guest power-off/reboot, 1 error or
// guest panic, 2 bad usage).
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "vmm/api/serve.h"
#include "vmm/cli.h"
#include "vmm/log.h"
#include "vmm/snapshot/compare.h"
#include "vmm/snapshot/restore_config.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/vm.h"

namespace ember {
const char* version_string();

namespace {

std::unique_ptr<Vm> restore_vm(const RestoreRequest& r) {
    SnapshotReader snapshot(r.snapshot_dir);
    VmConfig config = restore_config(snapshot, DiskOverrides(r.disk_overrides.begin(), r.disk_overrides.end()));
    config.console = r.console;
    r.checkpoint.apply_to(config);
    config.start_paused = r.paused;
    config.faults = r.faults;
    auto vm = std::make_unique<Vm>(config, snapshot);
    log::info("restored from {}", r.snapshot_dir.string());
    return vm;
}

void print_snapshot_info(const std::filesystem::path& dir) {
    SnapshotReader s(dir);
    const auto& c = s.config();
    std::printf("snapshot %s (format %d)\n", dir.c_str(), s.manifest().value("format_version", 0));
    std::printf("  kernel   %s\n  cmdline  %s\n  cpus     %u\n  memory   %llu MiB\n",
                c.value("kernel", "").c_str(), c.value("cmdline", "").c_str(), c.value("cpus", 0u),
                static_cast<unsigned long long>(c.value("mem_bytes", uint64_t{0}) >> 20));
    for (const auto& d : c.value("disks", nlohmann::json::array()))
        std::printf("  disk     id=%s %s (%llu bytes%s)\n", d.value("id", "").c_str(), d.value("path", "").c_str(),
                    static_cast<unsigned long long>(d.value("size", uint64_t{0})),
                    d.value("readonly", false) ? ", read-only" : "");
    for (const auto& sec : s.manifest()["sections"])
        std::printf("  section  %-16s %12llu bytes  crc32c %08x\n", sec.value("name", "").c_str(),
                    static_cast<unsigned long long>(sec.value("bytes", uint64_t{0})), sec.value("crc32c", 0u));
    s.verify_all();
    std::printf("  checksums ok\n");
}

} // namespace
} // namespace ember

int main(int argc, char** argv) {
    using namespace ember;
    // Block the checkpoint signal before anything else: a SIGUSR1 that arrives
    // while the VM is being built stays pending for the main loop instead of
    // killing the process (its default action). Threads inherit the mask.
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, nullptr);
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
    try {
        std::unique_ptr<Vm> vm;
        if (auto* serve = std::get_if<ApiServeRequest>(&cmd)) {
            if (serve->verbose) log::set_level(log::Level::debug);
            return serve_api(serve->api_sock, VmConfig{}, nullptr);
        }
        if (auto* run = std::get_if<RunRequest>(&cmd)) {
            if (run->verbose) log::set_level(log::Level::debug);
            vm = std::make_unique<Vm>(run->config);
            if (run->api_sock) return serve_api(*run->api_sock, run->config, std::move(vm));
        } else {
            auto& r = std::get<RestoreRequest>(cmd);
            if (r.verbose) log::set_level(log::Level::debug);
            vm = restore_vm(r);
        }
        const VmExit e = vm->run();
        if (e.reason == ExitReason::error) {
            log::error("{}", e.message);
        } else if (e.message.empty()) {
            log::info("{}", describe(e.reason));
        } else {
            log::info("{} ({})", describe(e.reason), e.message);
        }
        return exit_status(e.reason);
    } catch (const std::exception& e) {
        log::error("{}", e.what());
        return 1;
    }
}
