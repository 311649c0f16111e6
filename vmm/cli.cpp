#include "vmm/cli.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>

#include "devices/net/tap.h"
#include "vmm/console.h"
#include "vmm/cpu_affinity.h"
#include "vmm/platform.h"
#include "vmm/snapshot/snapshot.h"

namespace ember {
namespace {

constexpr const char* kVersion = "ember 0.1.0";

void require_file(const std::string& path, const char* option) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        throw UsageError(fmt::format("{} {}: no such file", option, path));
    if (std::filesystem::is_directory(path, ec))
        throw UsageError(fmt::format("{} {}: is a directory, not a file", option, path));
}

// The checkpoint options as typed; checked by parse_checkpoint_options.
struct CheckpointFlags {
    std::string dir, on = "exit", disks = "none";
    bool drain = false;
};

void add_checkpoint_options(CLI::App* app, CheckpointFlags& f) {
    app->add_option("--checkpoint-dir", f.dir, "where SIGUSR1 writes a checkpoint");
    app->add_option("--on-checkpoint", f.on, "after a checkpoint: exit (default) or continue");
    app->add_option("--checkpoint-disks", f.disks,
                    "none (default) or copy: also copy every writable disk image into the checkpoint");
    app->add_flag("--checkpoint-drain", f.drain,
                  "let host I/O in flight finish before saving (drain first, as Firecracker does), "
                  "instead of saving it as in flight");
}

CheckpointOptions parse_checkpoint_options(const CheckpointFlags& f) {
    CheckpointOptions o;
    if (!f.dir.empty()) {
        if (auto why = checkpoint_dir_problem(f.dir))
            throw UsageError(fmt::format("--checkpoint-dir {}: {}", f.dir, *why));
        o.dir = f.dir;
    }
    if (f.on == "continue") {
        o.continue_after = true;
    } else if (f.on != "exit") {
        throw UsageError(fmt::format("--on-checkpoint {}: must be exit or continue", f.on));
    }
    if (f.disks == "copy") {
        o.copy_disks = true;
    } else if (f.disks != "none") {
        throw UsageError(fmt::format("--checkpoint-disks {}: must be none or copy", f.disks));
    }
    o.drain = f.drain;
    return o;
}

constexpr const char* kFaultHelp =
    "crash injection: NAME[:after=N][:action=restart-io|kill|abort|escape] or random:period=MS "
    "(repeatable; see --list-faults)";

std::vector<fault::FaultSpec> parse_faults(const std::vector<std::string>& values) {
    std::vector<fault::FaultSpec> out;
    for (const auto& v : values) {
        try {
            out.push_back(fault::parse_fault_spec(v));
        } catch (const fault::FaultSpecError& e) {
            throw UsageError(e.what());
        }
    }
    return out;
}

std::string list_faults() {
    std::string text = "fault points (ember run|restore --fault NAME[:after=N][:action=...]):\n";
    for (const auto& p : fault::all_points())
        text += fmt::format("  {:<24} {}{}\n", p.name, p.description,
                            p.io_thread() ? "" : " [kill, abort, escape]");
    text += fmt::format("  {:<24} {}\n", "random:period=MS",
                        "restart every block I/O thread every ~MS ms, wherever it is");
    text +=
        "actions: restart-io (default at blk.*: a fresh I/O thread recovers from guest memory and "
        "the in-flight region), kill (SIGKILL, default at the other points), abort, escape (the "
        "thread opens /etc/passwd and an IPv4 socket, as a guest that took it over would: "
        "ember's system-call filter stops it, exit status 148)\n";
    return text;
}

} // namespace

uint64_t parse_size(std::string_view text, std::string_view option) {
    uint64_t value = 0;
    const auto* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data(), end, value);
    if (ec != std::errc{} || p == text.data())
        throw UsageError(fmt::format("{} {}: not a size (use e.g. 512M or 2G)", option, text));
    std::string_view suffix(p, static_cast<size_t>(end - p));
    unsigned shift = 20; // plain numbers are MiB, like Firecracker's mem_size_mib
    if (suffix == "K" || suffix == "k" || suffix == "KiB") shift = 10;
    else if (suffix == "M" || suffix == "m" || suffix == "MiB" || suffix.empty()) shift = 20;
    else if (suffix == "G" || suffix == "g" || suffix == "GiB") shift = 30;
    else if (suffix == "T" || suffix == "t" || suffix == "TiB") shift = 40;
    else throw UsageError(fmt::format("{} {}: unknown size suffix '{}' (use K, M, G or T)", option, text, suffix));
    if (value == 0 || value > (UINT64_MAX >> shift))
        throw UsageError(fmt::format("{} {}: size out of range", option, text));
    return value << shift;
}

std::vector<uint32_t> parse_cpu_numbers(std::string_view text, std::string_view option) {
    std::vector<uint32_t> out;
    size_t start = 0;
    while (true) {
        const size_t comma = text.find(',', start);
        const auto part =
            text.substr(start, comma == std::string_view::npos ? comma : comma - start);
        uint32_t cpu = 0;
        const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), cpu);
        if (part.empty() || ec != std::errc{} || end != part.data() + part.size())
            throw UsageError(fmt::format("{} {}: '{}' is not a host CPU number (give one per vcpu, "
                                         "e.g. 2,3)",
                                         option, text, part));
        out.push_back(cpu);
        if (comma == std::string_view::npos) return out;
        start = comma + 1;
    }
}

Command parse_command_line(const std::vector<std::string>& args) {
    CLI::App app{"ember: a minimal KVM virtual machine monitor", "ember"};
    app.require_subcommand(0, 1);
    bool version = false;
    app.add_flag("--version", version, "print the version and exit");
    std::string api_sock, run_api_sock;
    bool api_verbose = false;
    app.add_option("--api-sock", api_sock,
                   "serve the Firecracker-shaped control API on this Unix socket and wait for configuration");
    std::string config_file;
    app.add_option("--config-file", config_file,
                   "build the VM from a Firecracker JSON configuration file (boot-source, "
                   "machine-config, drives, logger, metrics) and run it");
    std::string instance_id = kDefaultInstanceId;
    auto* id_opt = app.add_option("--id", instance_id,
                                  "the instance's name, which GET / on the control socket reports "
                                  "(Firecracker's flag; 1-64 letters, digits or '-'; default "
                                  "anonymous-instance)");
    std::string level;
    auto* level_opt = app.add_option(
        "--level", level,
        "log level: Error, Warning, Info, Debug, Trace (= Debug) or Off, in any case "
        "(Firecracker's flag; default Info, -v is Debug)");
    bool no_api = false;
    app.add_flag("--no-api", no_api,
                 "with --config-file: serve no control socket (Firecracker's flag; ember serves "
                 "one only with --api-sock)");
    app.add_flag("-v,--verbose", api_verbose, "log debug messages");
    bool no_seccomp = false;
    app.add_flag("--no-seccomp", no_seccomp,
                 "do not install the system-call filter (Firecracker's flag; by default ember may "
                 "make only the system calls a VMM needs)");
    // Firecracker's name. Also taken after `run` and `restore`.
    std::string metrics_path, run_metrics_path, restore_metrics_path;
    constexpr const char* kMetricsHelp =
        "append a JSON line of counters (vcpu exits, disk requests and bytes) to this file or "
        "named pipe every 60 s and when the VM stops";
    app.add_option("--metrics-path", metrics_path, kMetricsHelp);
    std::string log_path, run_log_path, restore_log_path;
    constexpr const char* kLogHelp =
        "write ember's log to this file or named pipe instead of stderr";
    app.add_option("--log-path", log_path, kLogHelp);
    bool list_fault_points = false;
    app.add_flag("--list-faults", list_fault_points, "list the crash-injection fault points and exit");

    auto* run = app.add_subcommand("run", "boot a guest kernel");
    std::string kernel, initrd, cmdline = kDefaultCmdline, mem = "512M", console = "stdio";
    uint32_t cpus = 1;
    std::string vcpu_cpus;
    std::vector<std::string> disks, nets;
    bool virtio_cmdline = false, verbose = false, entropy = false;
    run->add_option("--kernel", kernel, "guest kernel: bzImage or ELF vmlinux")->required();
    run->add_option("--initrd", initrd, "initial ramdisk");
    run->add_option("--cmdline", cmdline, "kernel command line (replaces the default)")
        ->default_str(kDefaultCmdline);
    run->add_option("--cpus", cpus, "number of vcpus (1-254)")->default_val(1);
    auto* vcpu_cpus_opt = run->add_option(
        "--vcpu-cpus", vcpu_cpus,
        "host CPU of each vcpu thread, one per vcpu in vcpu order, e.g. 2,3 (default: not placed)");
    run->add_option("--mem", mem, "guest memory, e.g. 512M or 2G")->default_str("512M");
    std::string huge_pages = "none";
    run->add_option("--huge-pages", huge_pages,
                    "back guest memory with 2 MiB huge pages from the host's pool: 2M or none")
        ->default_str("none");
    run->add_option("--disk", disks,
                    "virtio block device "
                    "PATH[,readonly][,id=NAME][,cache=writeback|none][,engine=uring|sync][,poll=US]"
                    "[,iothread-cpu=N][,bw=BYTES][,bw-burst=BYTES][,iops=N][,iops-burst=N]"
                    " (repeatable, up to 8; bw= and iops= limit the guest per second)");
    run->add_option("--net", nets,
                    "virtio network device on a host TAP interface "
                    "tap=NAME[,mac=AA:BB:CC:DD:EE:FF][,id=NAME][,rx-bw=BYTES][,rx-bw-burst=BYTES]"
                    "[,rx-ops=N][,rx-ops-burst=N][,tx-bw=BYTES][,tx-bw-burst=BYTES][,tx-ops=N]"
                    "[,tx-ops-burst=N] (repeatable, up to 4; without mac= the guest picks a "
                    "random one; rx- and tx- limit what it receives and sends per second, in "
                    "bytes and frames)");
    run->add_option("--console", console, "guest serial console: stdio, none or file:PATH")->default_str("stdio");
    run->add_flag("--virtio-cmdline", virtio_cmdline,
                  "also describe virtio-mmio devices with virtio_mmio.device= (for custom kernels)");
    run->add_flag("--entropy", entropy,
                  "add a virtio entropy device (the guest's /dev/hwrng, filled from the host's "
                  "getrandom)");
    run->add_flag("-v,--verbose", verbose, "log debug messages");
    run->add_option("--api-sock", run_api_sock, "also serve the control API on this Unix socket");
    run->add_option("--metrics-path", run_metrics_path, kMetricsHelp);
    run->add_option("--log-path", run_log_path, kLogHelp);
    CheckpointFlags run_ckpt;
    add_checkpoint_options(run, run_ckpt);
    std::vector<std::string> run_faults, restore_faults;
    run->add_option("--fault", run_faults, kFaultHelp)->allow_extra_args(false);

    auto* restore = app.add_subcommand("restore", "resume a guest from a checkpoint");
    std::string snapshot_dir, restore_console = "stdio";
    CheckpointFlags restore_ckpt;
    std::vector<std::string> overrides, net_overrides;
    bool restore_verbose = false, restore_paused = false;
    restore->add_option("DIR", snapshot_dir, "checkpoint directory")->required();
    restore->add_option("--disk", overrides, "use PATH for the disk with id ID: ID=PATH (repeatable)");
    restore->add_option("--net", net_overrides,
                        "attach the network device with id ID to tap TAP instead: ID=TAP "
                        "(repeatable)");
    restore->add_option("--console", restore_console, "guest serial console: stdio, none or file:PATH");
    add_checkpoint_options(restore, restore_ckpt);
    restore->add_flag("-v,--verbose", restore_verbose, "log debug messages");
    restore->add_flag("--paused", restore_paused,
                      "restore but do not run the vcpus (a checkpoint signal still works; resume via the API)");
    restore->add_option("--fault", restore_faults, kFaultHelp)->allow_extra_args(false);
    restore->add_option("--metrics-path", restore_metrics_path, kMetricsHelp);
    restore->add_option("--log-path", restore_log_path, kLogHelp);

    auto* info = app.add_subcommand("snapshot-info", "describe a checkpoint directory");
    std::string info_dir;
    info->add_option("DIR", info_dir, "checkpoint directory")->required();
    std::string compare_dir;
    info->add_option("--compare", compare_dir,
                     "also compare its vcpu and device state with another checkpoint (exit 1 if they differ)");

    std::vector<std::string> rev(args.rbegin(), args.rend());
    if (!rev.empty()) rev.pop_back(); // program name
    try {
        app.parse(rev);
    } catch (const CLI::CallForHelp&) {
        return HelpRequest{app.help()};
    } catch (const CLI::CallForAllHelp&) {
        return HelpRequest{app.help("", CLI::AppFormatMode::All)};
    } catch (const CLI::ParseError& e) {
        throw UsageError(e.what());
    }
    if (version) return VersionRequest{};
    if (list_fault_points) return ListFaultsRequest{list_faults()};
    auto parse_console = [](const std::string& v) {
        try {
            return parse_console_spec(v);
        } catch (const Error& e) {
            throw UsageError(e.what());
        }
    };
    // The subcommand's --metrics-path or --log-path, else the one before it.
    auto either = [](const std::string& own,
                     const std::string& top) -> std::optional<std::filesystem::path> {
        const std::string& p = own.empty() ? top : own;
        if (p.empty()) return std::nullopt;
        return p;
    };
    auto metrics = [&](const std::string& own) { return either(own, metrics_path); };
    auto logs = [&](const std::string& own) { return either(own, log_path); };
    // Both are about a VM (or the control socket that runs one).
    auto refuse_without_vm = [&](std::string_view why) {
        for (const auto& [flag, value] :
             {std::pair{"--metrics-path", &metrics_path}, std::pair{"--log-path", &log_path}})
            if (!value->empty())
                throw UsageError(fmt::format(
                    "{}: {}; use it with run, restore, --api-sock or --config-file", flag, why));
    };
    std::optional<log::Level> log_level;
    if (level_opt->count() > 0) {
        log_level = log::parse_level(level);
        if (!log_level)
            throw UsageError(fmt::format(
                "--level {}: not one of Error, Warning, Info, Debug, Trace, Off", level));
        if (api_verbose || verbose || restore_verbose)
            throw UsageError("--level and -v: give one of them (-v is --level Debug)");
        if (info->parsed()) throw UsageError("--level: snapshot-info writes no log");
    }
    if (no_seccomp && info->parsed())
        throw UsageError("--no-seccomp: snapshot-info runs no VM and installs no filter");
    if (!config_file.empty() && (run->parsed() || restore->parsed() || info->parsed()))
        throw UsageError("--config-file configures the VM by itself: give it without run, "
                         "restore or snapshot-info");
    if (no_api && config_file.empty())
        throw UsageError("--no-api: only with --config-file (without a VM to run there is "
                         "nothing to do but serve the socket)");
    if (no_api && !api_sock.empty()) throw UsageError("--no-api and --api-sock: give one of them");
    if (id_opt->count() > 0) {
        // Firecracker's rule, so an id it takes works here too.
        const bool valid = !instance_id.empty() && instance_id.size() <= 64 &&
                           std::all_of(instance_id.begin(), instance_id.end(),
                                       [](unsigned char c) { return std::isalnum(c) || c == '-'; });
        if (!valid)
            throw UsageError(fmt::format("--id {}: 1 to 64 letters, digits or '-'", instance_id));
        if (api_sock.empty() && run_api_sock.empty() && config_file.empty())
            throw UsageError("--id: names the instance on the control socket: give it with "
                             "--api-sock or --config-file");
    }
    // `own_*`: the value given after run or restore, if any.
    auto process = [&](bool verbose_here, const std::string& own_metrics,
                       const std::string& own_log) {
        return ProcessOptions{api_verbose || verbose_here, log_level, metrics(own_metrics),
                              logs(own_log), !no_seccomp};
    };
    if (!config_file.empty())
        return ConfigFileRequest{config_file,
                                 api_sock.empty() ? std::nullopt
                                                  : std::optional<std::filesystem::path>(api_sock),
                                 instance_id, process(false, "", "")};
    if (info->parsed()) {
        refuse_without_vm("snapshot-info runs no VM");
        SnapshotInfoRequest r{info_dir, {}};
        if (!compare_dir.empty()) r.compare_with = compare_dir;
        return r;
    }
    if (restore->parsed()) {
        RestoreRequest r;
        r.snapshot_dir = snapshot_dir;
        r.console = parse_console(restore_console);
        r.checkpoint = parse_checkpoint_options(restore_ckpt);
        r.paused = restore_paused;
        r.faults = parse_faults(restore_faults);
        r.process = process(restore_verbose, restore_metrics_path, restore_log_path);
        for (const auto& o : overrides) {
            const auto eq = o.find('=');
            if (eq == std::string::npos || eq == 0 || eq + 1 == o.size())
                throw UsageError(fmt::format("--disk {}: expected ID=PATH", o));
            r.disk_overrides.emplace_back(o.substr(0, eq), o.substr(eq + 1));
        }
        for (const auto& o : net_overrides) {
            const auto eq = o.find('=');
            if (eq == std::string::npos || eq == 0 || eq + 1 == o.size())
                throw UsageError(fmt::format("--net {}: expected ID=TAP", o));
            if (auto why = tap_name_problem(o.substr(eq + 1)))
                throw UsageError(fmt::format("--net {}: {}", o, *why));
            r.net_overrides.emplace_back(o.substr(0, eq), o.substr(eq + 1));
        }
        return r;
    }
    if (!run->parsed()) {
        if (!api_sock.empty())
            return ApiServeRequest{api_sock, instance_id, process(false, "", "")};
        refuse_without_vm("no VM to run");
        throw UsageError("no command given; try 'ember run --kernel PATH' or 'ember --help'");
    }

    RunRequest r;
    if (!run_api_sock.empty()) r.api_sock = run_api_sock;
    r.instance_id = instance_id;
    r.process = process(verbose, run_metrics_path, run_log_path);
    auto& c = r.config;
    require_file(kernel, "--kernel");
    c.kernel = kernel;
    if (!initrd.empty()) {
        require_file(initrd, "--initrd");
        c.initrd = initrd;
    }
    c.cmdline = cmdline;
    if (cpus < 1 || cpus > kMaxCpus) throw UsageError(fmt::format("--cpus {}: must be between 1 and {}", cpus, kMaxCpus));
    c.cpus = cpus;
    if (vcpu_cpus_opt->count() > 0) {
        c.vcpu_cpus = parse_cpu_numbers(vcpu_cpus, "--vcpu-cpus");
        try {
            check_vcpu_cpus(c.vcpu_cpus, c.cpus);
        } catch (const Error& e) {
            throw UsageError(fmt::format("--vcpu-cpus {}: {}", vcpu_cpus, e.what()));
        }
    }
    c.mem_bytes = parse_size(mem, "--mem");
    if (c.mem_bytes < kMinMemBytes)
        throw UsageError(fmt::format("--mem {}: a guest needs at least {} MiB", mem, kMinMemBytes >> 20));
    if (c.mem_bytes % 4096 != 0) throw UsageError(fmt::format("--mem {}: must be a multiple of 4 KiB", mem));
    if (huge_pages == "2M") {
        c.huge_pages = HugePages::two_mib;
        if (c.mem_bytes % kHugePageBytes != 0)
            throw UsageError(
                fmt::format("--mem {}: with --huge-pages 2M it must be a multiple of 2 MiB", mem));
    } else if (huge_pages != "none") {
        throw UsageError(fmt::format("--huge-pages {}: expected 2M or none", huge_pages));
    }
    if (disks.size() > platform::kMaxDisks)
        throw UsageError(fmt::format("--disk: {} disks given, ember supports at most {}",
                                     disks.size(), platform::kMaxDisks));
    for (const auto& d : disks) {
        try {
            c.disks.push_back(parse_disk_spec(d));
        } catch (const DiskSpecError& e) {
            throw UsageError(fmt::format("--disk {}: {}", d, e.what()));
        }
    }
    for (const auto& n : nets) {
        try {
            c.nets.push_back(parse_net_spec(n));
        } catch (const NetSpecError& e) {
            throw UsageError(e.what()); // names the --net value
        }
    }
    try {
        resolve_net_ids(c.nets);
    } catch (const NetSpecError& e) {
        throw UsageError(fmt::format("--net: {}", e.what()));
    }
    c.console = parse_console(console);
    parse_checkpoint_options(run_ckpt).apply_to(c);
    c.virtio_cmdline = virtio_cmdline;
    c.entropy = entropy;
    c.faults = parse_faults(run_faults);
    return r;
}

const char* version_string() { return kVersion; }

} // namespace ember
