#include <doctest/doctest.h>

#include "tests/support/threads.h"
#include "vmm/cli.h"
#include "vmm/cpu_affinity.h"

using namespace ember;

namespace {
Command parse(std::vector<std::string> args) {
    args.insert(args.begin(), "ember");
    return parse_command_line(args);
}
} // namespace

TEST_CASE("CLI: run with every option") {
    auto c = parse({"run", "--kernel", "/proc/self/exe", "--cmdline", "console=ttyS0 quiet",
                    "--cpus", "2", "--mem", "1G", "--disk", "/tmp/a.img,readonly", "--disk",
                    "/tmp/b.img", "--console", "file:/tmp/c.log", "--virtio-cmdline", "--entropy"});
    auto& r = std::get<RunRequest>(c);
    CHECK(r.config.kernel == "/proc/self/exe");
    CHECK(r.config.cmdline == "console=ttyS0 quiet");
    CHECK(r.config.cpus == 2);
    CHECK(r.config.mem_bytes == (1ULL << 30));
    REQUIRE(r.config.disks.size() == 2);
    CHECK(r.config.disks[0].path == "/tmp/a.img");
    CHECK(r.config.disks[0].readonly);
    CHECK_FALSE(r.config.disks[1].readonly);
    CHECK(r.config.console.kind == ConsoleSpec::Kind::file);
    CHECK(r.config.console.path == "/tmp/c.log");
    CHECK(r.config.virtio_cmdline);
    CHECK(r.config.entropy);
    CHECK(r.config.huge_pages == HugePages::none);
    auto huge = parse({"run", "--kernel", "/proc/self/exe", "--mem", "66M", "--huge-pages", "2M"});
    CHECK(std::get<RunRequest>(huge).config.huge_pages == HugePages::two_mib);
    auto off = parse({"run", "--kernel", "/proc/self/exe", "--mem", "65M", "--huge-pages", "none"});
    CHECK(std::get<RunRequest>(off).config.huge_pages == HugePages::none);
}

TEST_CASE("CLI: --net") {
    auto c = parse({"run", "--kernel", "/proc/self/exe", "--net", "tap=tap0,mac=06:00:AC:10:00:02",
                    "--net", "tap=tap1,id=up"});
    auto& r = std::get<RunRequest>(c);
    REQUIRE(r.config.nets.size() == 2);
    CHECK(r.config.nets[0].id == "net0");
    CHECK(r.config.nets[0].tap == "tap0");
    CHECK(format_mac(*r.config.nets[0].mac) == "06:00:ac:10:00:02");
    CHECK(r.config.nets[1].id == "up");
    CHECK_FALSE(r.config.nets[1].mac);
    auto fails = [](std::vector<std::string> net, std::string_view text) {
        std::vector<std::string> args{"run", "--kernel", "/proc/self/exe"};
        for (auto& n : net) {
            args.push_back("--net");
            args.push_back(n);
        }
        CAPTURE(text);
        CHECK_THROWS_WITH_AS(
            parse(args),
            doctest::Contains(doctest::String(text.data(), static_cast<unsigned>(text.size()))),
            UsageError);
    };
    fails({"mac=06:00:ac:10:00:02"}, "--net mac=06:00:ac:10:00:02: tap=NAME is required");
    fails({"tap="}, "the tap name is empty");
    fails({"tap=t,mac=zz"}, "MAC address \"zz\"");
    fails({"tap=t,mac=03:00:ac:10:00:02"}, "multicast");
    fails({"tap=ember-tap-name-too-long"}, "at most 15");
    fails({"tap=t0", "tap=t1", "tap=t2", "tap=t3", "tap=t4"},
          "5 network devices given; ember supports at most 4");
    fails({"tap=t0", "tap=t0"}, "two network devices use tap t0");
    // Rate limits: per second, bytes with K/M/G/T, frames as a number.
    auto limited = parse({"run", "--kernel", "/proc/self/exe", "--net",
                          "tap=tap0,rx-bw=1M,tx-ops=100,tx-ops-burst=500"});
    const auto& n = std::get<RunRequest>(limited).config.nets.at(0);
    CHECK(n.rx_limit == RateLimit{TokenBucketSpec{1 << 20, 0, 1000}, std::nullopt});
    CHECK(n.tx_limit == RateLimit{std::nullopt, TokenBucketSpec{100, 500, 1000}});
    fails({"tap=t,rx-bw=0"}, "--net tap=t,rx-bw=0: rx-bw \"0\" is not a number of bytes from 1 to");
    fails({"tap=t,tx-ops=x"},
          "--net tap=t,tx-ops=x: tx-ops \"x\" is not a number of frames from 1");
    fails({"tap=t,tx-ops=1K"}, "tx-ops \"1K\" is not a number of frames");
    fails({"tap=t,rx-bw-burst=1M"}, "--net tap=t,rx-bw-burst=1M: rx-bw-burst= needs rx-bw=");
    fails({"tap=t,rx-iops=5"}, "unknown option \"rx-iops\"");
}

TEST_CASE("CLI: restore --net ID=TAP") {
    auto c = parse({"restore", "/tmp/ckpt", "--net", "eth0=tap7", "--net", "eth1=tap8"});
    auto& r = std::get<RestoreRequest>(c);
    CHECK(r.net_overrides ==
          std::vector<std::pair<std::string, std::string>>{{"eth0", "tap7"}, {"eth1", "tap8"}});
    CHECK_THROWS_WITH_AS(parse({"restore", "/tmp/ckpt", "--net", "tap7"}),
                         doctest::Contains("--net tap7: expected ID=TAP"), UsageError);
    CHECK_THROWS_WITH_AS(parse({"restore", "/tmp/ckpt", "--net", "eth0=a-tap-name-too-long"}),
                         doctest::Contains("at most 15"), UsageError);
}

TEST_CASE("CLI: defaults") {
    auto c = parse({"run", "--kernel", "/proc/self/exe"});
    auto& r = std::get<RunRequest>(c);
    CHECK(r.config.cpus == 1);
    CHECK(r.config.mem_bytes == kDefaultMemBytes);
    CHECK(r.config.cmdline == kDefaultCmdline);
    CHECK(r.config.console.kind == ConsoleSpec::Kind::stdio);
    CHECK_FALSE(r.config.entropy);
    CHECK_FALSE(r.config.initrd.has_value());
}

TEST_CASE("CLI: help and version") {
    CHECK(std::holds_alternative<HelpRequest>(parse({"--help"})));
    CHECK(std::get<HelpRequest>(parse({"--help"})).text.find("run") != std::string::npos);
    CHECK(std::holds_alternative<HelpRequest>(parse({"run", "--help"})));
    CHECK(std::holds_alternative<VersionRequest>(parse({"--version"})));
}

TEST_CASE("CLI: bad usage names the offending value") {
    CHECK_THROWS_AS(parse({}), UsageError);
    CHECK_THROWS_AS(parse({"run"}), UsageError); // --kernel is required
    CHECK_THROWS_WITH_AS(parse({"run", "--kernel", "/nonexistent/vmlinuz"}),
                         doctest::Contains("/nonexistent/vmlinuz"), UsageError);
    CHECK_THROWS_WITH_AS(parse({"run", "--kernel", "/tmp"}), doctest::Contains("directory"), UsageError);
    CHECK_THROWS_WITH_AS(parse({"run", "--kernel", "/proc/self/exe", "--initrd", "/nonexistent/initrd"}),
                         doctest::Contains("/nonexistent/initrd"), UsageError);
    CHECK_THROWS_WITH_AS(parse({"run", "--kernel", "/proc/self/exe", "--cpus", "0"}), doctest::Contains("--cpus 0"),
                         UsageError);
    CHECK_THROWS_AS(parse({"run", "--kernel", "/proc/self/exe", "--cpus", "255"}), UsageError);
    CHECK_THROWS_AS(parse({"run", "--kernel", "/proc/self/exe", "--cpus", "two"}), UsageError);
    CHECK_THROWS_WITH_AS(parse({"run", "--kernel", "/proc/self/exe", "--mem", "12X"}), doctest::Contains("12X"),
                         UsageError);
    CHECK_THROWS_WITH_AS(parse({"run", "--kernel", "/proc/self/exe", "--mem", "16M"}),
                         doctest::Contains("at least"), UsageError);
    CHECK_THROWS_WITH_AS(parse({"run", "--kernel", "/proc/self/exe", "--console", "tty"}), doctest::Contains("tty"),
                         UsageError);
    CHECK_THROWS_WITH_AS(parse({"run", "--kernel", "/proc/self/exe", "--huge-pages", "1G"}),
                         doctest::Contains("--huge-pages 1G: expected 2M or none"), UsageError);
    CHECK_THROWS_WITH_AS(
        parse({"run", "--kernel", "/proc/self/exe", "--mem", "65M", "--huge-pages", "2M"}),
        doctest::Contains("--mem 65M: with --huge-pages 2M it must be a multiple of 2 MiB"),
        UsageError);
    CHECK_THROWS_WITH_AS(
        parse({"run", "--kernel", "/proc/self/exe", "--checkpoint-dir", "/proc/self/exe/ckpt"}),
        doctest::Contains("--checkpoint-dir /proc/self/exe/ckpt: "), UsageError);
    CHECK_THROWS_WITH_AS(parse({"run", "--kernel", "/proc/self/exe", "--bogus"}), doctest::Contains("--bogus"),
                         UsageError);
    CHECK_THROWS_AS(parse({"fly"}), UsageError);
    CHECK_THROWS_WITH_AS(parse({"run", "--kernel", "/proc/self/exe", "--disk", "/tmp/a.img,cache=fast"}),
                         doctest::Contains("cache=fast"), UsageError);
    std::vector<std::string> nine{"run", "--kernel", "/proc/self/exe"};
    for (int i = 0; i < 9; ++i) {
        nine.push_back("--disk");
        nine.push_back("/tmp/d" + std::to_string(i));
    }
    CHECK_THROWS_WITH_AS(parse(nine), doctest::Contains("at most 8"), UsageError);
}

TEST_CASE("CLI: --vcpu-cpus places each vcpu on a host CPU ember may run on") {
    const cpu_set_t allowed = ember_cpus();
    const uint32_t first = testing::first_allowed_cpu();
    const std::string one = std::to_string(first);
    auto c =
        parse({"run", "--kernel", "/proc/self/exe", "--cpus", "2", "--vcpu-cpus", one + "," + one});
    CHECK(std::get<RunRequest>(c).config.vcpu_cpus == std::vector<uint32_t>{first, first});
    CHECK(std::get<RunRequest>(parse({"run", "--kernel", "/proc/self/exe"}))
              .config.vcpu_cpus.empty());

    auto usage = [](std::vector<std::string> extra) -> std::string {
        std::vector<std::string> args{"run", "--kernel", "/proc/self/exe"};
        args.insert(args.end(), extra.begin(), extra.end());
        try {
            parse(args);
        } catch (const UsageError& e) {
            return e.what();
        }
        return "(accepted)";
    };
    auto has = [](const std::string& s, std::string_view part) {
        return s.find(part) != std::string::npos;
    };
    CHECK(has(usage({"--vcpu-cpus", "x"}), "--vcpu-cpus x: 'x' is not a host CPU number"));
    CHECK(has(usage({"--vcpu-cpus", ""}), "'' is not a host CPU number"));
    CHECK(has(usage({"--vcpu-cpus", one + ","}), "'' is not a host CPU number"));
    CHECK(has(usage({"--vcpu-cpus", "-1"}), "'-1' is not a host CPU number"));
    CHECK(has(usage({"--vcpu-cpus", one + "," + one}), "2 host CPUs given for 1 vcpus"));
    CHECK(has(usage({"--cpus", "2", "--vcpu-cpus", one}), "1 host CPUs given for 2 vcpus"));
    const std::string far = usage({"--cpus", "2", "--vcpu-cpus", one + ",99999"});
    CHECK(has(far, "vcpu 1 on host CPU 99999, which ember may not run on"));
    CHECK(has(far, "(allowed: " + cpu_list(allowed) + ")"));
}

TEST_CASE("sizes: suffixes and limits") {
    CHECK(parse_size("512M", "--mem") == (512ULL << 20));
    CHECK(parse_size("2G", "--mem") == (2ULL << 30));
    CHECK(parse_size("64K", "--mem") == (64ULL << 10));
    CHECK(parse_size("256", "--mem") == (256ULL << 20));
    CHECK_THROWS_AS(parse_size("", "--mem"), UsageError);
    CHECK_THROWS_AS(parse_size("0", "--mem"), UsageError);
    CHECK_THROWS_AS(parse_size("-1G", "--mem"), UsageError);
    CHECK_THROWS_AS(parse_size("99999999999T", "--mem"), UsageError);
}

TEST_CASE("CLI: checkpoint options, restore and snapshot-info") {
    auto c = parse({"run", "--kernel", "/proc/self/exe", "--checkpoint-dir", "/tmp/ck", "--on-checkpoint", "continue"});
    auto& r = std::get<RunRequest>(c);
    REQUIRE(r.config.checkpoint_dir.has_value());
    CHECK(*r.config.checkpoint_dir == "/tmp/ck");
    CHECK(r.config.continue_after_checkpoint);
    CHECK_FALSE(r.config.checkpoint_drain);
    CHECK_FALSE(r.config.checkpoint_copy_disks);
    CHECK_THROWS_WITH_AS(parse({"run", "--kernel", "/proc/self/exe", "--on-checkpoint", "later"}),
                         doctest::Contains("later"), UsageError);
    auto d = parse({"run", "--kernel", "/proc/self/exe", "--checkpoint-drain", "--checkpoint-disks", "copy"});
    CHECK(std::get<RunRequest>(d).config.checkpoint_drain);
    CHECK(std::get<RunRequest>(d).config.checkpoint_copy_disks);
    CHECK_THROWS_WITH_AS(parse({"run", "--kernel", "/proc/self/exe", "--checkpoint-disks", "all"}),
                         doctest::Contains("--checkpoint-disks all"), UsageError);

    auto rc = parse({"restore", "/tmp/ck", "--disk", "root=/tmp/new.img", "--paused", "--console", "none"});
    auto& rr = std::get<RestoreRequest>(rc);
    CHECK(rr.snapshot_dir == "/tmp/ck");
    REQUIRE(rr.disk_overrides.size() == 1);
    CHECK(rr.disk_overrides[0].first == "root");
    CHECK(rr.disk_overrides[0].second == "/tmp/new.img");
    CHECK(rr.paused);
    CHECK(rr.console.kind == ConsoleSpec::Kind::none);
    CHECK_FALSE(rr.checkpoint.continue_after);
    CHECK_FALSE(rr.checkpoint.drain);
    auto rc2 = parse({"restore", "/tmp/ck", "--checkpoint-dir", "/tmp/ck2", "--checkpoint-drain", "--checkpoint-disks",
                      "copy", "--on-checkpoint", "continue"});
    const auto& o = std::get<RestoreRequest>(rc2).checkpoint;
    CHECK((o.dir && *o.dir == "/tmp/ck2" && o.drain && o.copy_disks && o.continue_after));
    CHECK_THROWS_WITH_AS(parse({"restore", "/tmp/ck", "--disk", "nopath"}), doctest::Contains("ID=PATH"), UsageError);
    CHECK_THROWS_AS(parse({"restore"}), UsageError);

    auto ic = parse({"snapshot-info", "/tmp/ck", "--compare", "/tmp/ck2"});
    auto& ir = std::get<SnapshotInfoRequest>(ic);
    CHECK(ir.snapshot_dir == "/tmp/ck");
    REQUIRE(ir.compare_with.has_value());
    CHECK(*ir.compare_with == "/tmp/ck2");
}

// --metrics-path and --log-path are taken alike: after run or restore, or
// before the command; and only where a VM (or the control socket) is.
template <typename Get> void check_path_flag(const std::string& flag, Get get) {
    CAPTURE(flag);
    auto run = parse({"run", "--kernel", "/proc/self/exe", flag, "/tmp/own"});
    CHECK(get(std::get<RunRequest>(run)) == std::filesystem::path("/tmp/own"));
    CHECK_FALSE(get(std::get<RunRequest>(parse({"run", "--kernel", "/proc/self/exe"}))));
    auto before = parse({flag, "/tmp/before", "run", "--kernel", "/proc/self/exe"});
    CHECK(get(std::get<RunRequest>(before)) == std::filesystem::path("/tmp/before"));
    auto restore = parse({"restore", "/tmp/ck", flag, "/tmp/r"});
    CHECK(get(std::get<RestoreRequest>(restore)) == std::filesystem::path("/tmp/r"));
    auto serve = parse({"--api-sock", "/tmp/api.sock", flag, "/tmp/s"});
    CHECK(get(std::get<ApiServeRequest>(serve)) == std::filesystem::path("/tmp/s"));
    CHECK_FALSE(get(std::get<ApiServeRequest>(parse({"--api-sock", "/tmp/api.sock"}))));
    auto config = parse({"--config-file", "/tmp/vm.json", flag, "/tmp/c"});
    CHECK(get(std::get<ConfigFileRequest>(config)) == std::filesystem::path("/tmp/c"));
    CHECK_THROWS_WITH_AS(parse({flag, "/tmp/x"}),
                         doctest::Contains((flag + ": no VM to run").c_str()), UsageError);
    CHECK_THROWS_WITH_AS(parse({flag, "/tmp/x", "snapshot-info", "/tmp/ck"}),
                         doctest::Contains((flag + ": snapshot-info runs no VM").c_str()),
                         UsageError);
}

TEST_CASE("CLI: -v, after the command or before it") {
    CHECK(std::get<RunRequest>(parse({"-v", "run", "--kernel", "/proc/self/exe"})).process.verbose);
    CHECK(std::get<RunRequest>(parse({"run", "--kernel", "/proc/self/exe", "-v"})).process.verbose);
    CHECK(std::get<RestoreRequest>(parse({"-v", "restore", "/tmp/ck"})).process.verbose);
    CHECK(std::get<RestoreRequest>(parse({"restore", "/tmp/ck", "-v"})).process.verbose);
    CHECK_FALSE(std::get<RestoreRequest>(parse({"restore", "/tmp/ck"})).process.verbose);
    CHECK(std::get<ApiServeRequest>(parse({"-v", "--api-sock", "/tmp/s"})).process.verbose);
}

TEST_CASE("CLI: --metrics-path and --log-path, after the command or before it") {
    check_path_flag("--metrics-path", [](const auto& r) { return r.process.metrics_path; });
    check_path_flag("--log-path", [](const auto& r) { return r.process.log_path; });
}

TEST_CASE("CLI: --config-file runs a VM by itself, with or without the control socket") {
    const auto plain = std::get<ConfigFileRequest>(parse({"--config-file", "/tmp/vm.json"}));
    CHECK(plain.config_file == "/tmp/vm.json");
    CHECK_FALSE(plain.api_sock.has_value());
    CHECK_FALSE(plain.process.verbose);
    // Firecracker's --no-api: ember serves no socket unless asked anyway.
    const auto no_api =
        std::get<ConfigFileRequest>(parse({"--no-api", "--config-file", "/tmp/vm.json", "-v"}));
    CHECK_FALSE(no_api.api_sock.has_value());
    CHECK(no_api.process.verbose);
    const auto served = std::get<ConfigFileRequest>(
        parse({"--config-file", "/tmp/vm.json", "--api-sock", "/tmp/api.sock"}));
    CHECK(served.api_sock == std::filesystem::path("/tmp/api.sock"));
    CHECK_THROWS_WITH_AS(
        parse({"--config-file", "/tmp/vm.json", "run", "--kernel", "/proc/self/exe"}),
        doctest::Contains("--config-file configures the VM by itself"), UsageError);
    CHECK_THROWS_WITH_AS(parse({"--config-file", "/tmp/vm.json", "restore", "/tmp/ck"}),
                         doctest::Contains("without run, restore or snapshot-info"), UsageError);
    CHECK_THROWS_WITH_AS(parse({"--no-api"}),
                         doctest::Contains("--no-api: only with --config-file"), UsageError);
    CHECK_THROWS_WITH_AS(
        parse({"--no-api", "--config-file", "/tmp/vm.json", "--api-sock", "/tmp/s"}),
        doctest::Contains("--no-api and --api-sock: give one of them"), UsageError);
    CHECK_THROWS_AS(parse({"--config-file"}), UsageError);
}

TEST_CASE("CLI: --id names the instance where the control socket or a config file is") {
    CHECK(std::get<ApiServeRequest>(parse({"--api-sock", "/tmp/s"})).instance_id ==
          "anonymous-instance");
    CHECK(std::get<ApiServeRequest>(parse({"--id", "vm-42", "--api-sock", "/tmp/s"})).instance_id ==
          "vm-42");
    CHECK(std::get<ConfigFileRequest>(parse({"--config-file", "/tmp/vm.json", "--id", "Web-1"}))
              .instance_id == "Web-1");
    const auto run = std::get<RunRequest>(
        parse({"--id", "r1", "run", "--kernel", "/proc/self/exe", "--api-sock", "/tmp/s"}));
    CHECK(run.instance_id == "r1");
    CHECK(std::get<RunRequest>(parse({"run", "--kernel", "/proc/self/exe"})).instance_id ==
          "anonymous-instance");
    CHECK(std::get<ApiServeRequest>(parse({"--id", std::string(64, 'a'), "--api-sock", "/tmp/s"}))
              .instance_id.size() == 64);
    // Firecracker's rule: letters, digits and '-', 1 to 64 of them.
    for (const std::string& bad :
         std::vector<std::string>{"", "a_b", "a b", "vm/1", std::string(65, 'a')}) {
        CAPTURE(bad);
        CHECK_THROWS_WITH_AS(parse({"--id", bad, "--api-sock", "/tmp/s"}),
                             doctest::Contains("1 to 64 letters, digits or '-'"), UsageError);
    }
    // Nothing would report it.
    CHECK_THROWS_WITH_AS(parse({"--id", "x", "run", "--kernel", "/proc/self/exe"}),
                         doctest::Contains("give it with --api-sock or --config-file"), UsageError);
}

TEST_CASE("CLI: --level sets the log level as Firecracker's flag does") {
    CHECK_FALSE(
        std::get<RunRequest>(parse({"run", "--kernel", "/proc/self/exe"})).process.log_level);
    CHECK(std::get<RunRequest>(parse({"--level", "Warning", "run", "--kernel", "/proc/self/exe"}))
              .process.log_level == log::Level::warn);
    CHECK(std::get<RestoreRequest>(parse({"--level", "off", "restore", "/tmp/ck"}))
              .process.log_level == log::Level::off);
    CHECK(std::get<ApiServeRequest>(parse({"--level", "TRACE", "--api-sock", "/tmp/s"}))
              .process.log_level == log::Level::debug);
    CHECK(std::get<ConfigFileRequest>(parse({"--level", "Error", "--config-file", "/tmp/vm.json"}))
              .process.log_level == log::Level::error);
    CHECK_THROWS_WITH_AS(parse({"--level", "loud", "--api-sock", "/tmp/s"}),
                         doctest::Contains("--level loud: not one of Error, Warning, Info, Debug"),
                         UsageError);
    CHECK_THROWS_WITH_AS(parse({"--level", "Info", "run", "--kernel", "/proc/self/exe", "-v"}),
                         doctest::Contains("--level and -v: give one of them"), UsageError);
    CHECK_THROWS_WITH_AS(parse({"--level", "Info", "snapshot-info", "/tmp/ck"}),
                         doctest::Contains("snapshot-info writes no log"), UsageError);
}

TEST_CASE(
    "CLI: the system-call filter is on unless --no-seccomp, for every command that runs a VM") {
    CHECK(std::get<RunRequest>(parse({"run", "--kernel", "/proc/self/exe"})).process.seccomp);
    CHECK(std::get<RestoreRequest>(parse({"restore", "/tmp/ck"})).process.seccomp);
    CHECK(std::get<ApiServeRequest>(parse({"--api-sock", "/tmp/s"})).process.seccomp);
    CHECK(std::get<ConfigFileRequest>(parse({"--config-file", "/tmp/vm.json"})).process.seccomp);
    CHECK_FALSE(std::get<RunRequest>(parse({"--no-seccomp", "run", "--kernel", "/proc/self/exe"}))
                    .process.seccomp);
    CHECK_FALSE(
        std::get<RestoreRequest>(parse({"--no-seccomp", "restore", "/tmp/ck"})).process.seccomp);
    CHECK_FALSE(
        std::get<ApiServeRequest>(parse({"--no-seccomp", "--api-sock", "/tmp/s"})).process.seccomp);
    CHECK_FALSE(
        std::get<ConfigFileRequest>(parse({"--no-seccomp", "--config-file", "/tmp/vm.json"}))
            .process.seccomp);
    CHECK_THROWS_WITH_AS(parse({"--no-seccomp", "snapshot-info", "/tmp/ck"}),
                         doctest::Contains("--no-seccomp: snapshot-info runs no VM"), UsageError);
}
