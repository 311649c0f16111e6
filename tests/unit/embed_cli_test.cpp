// The ember command as a libember client (vmm/cli_embed.cpp): every run and
// restore option reaches the public configuration, and from there the
// internal one the VM is built from; and the signals that stop it
// (vmm/cli_run.cpp). No KVM needed.
#include <doctest/doctest.h>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "ember/ember.h"
#include "vmm/api/config_file.h"
#include "vmm/cli.h"
#include "vmm/cli_embed.h"
#include "vmm/cli_run.h"
#include "vmm/embed/config.h"

using namespace ember;
namespace fs = std::filesystem;

namespace {

struct Dir {
    fs::path path;
    Dir() {
        char tmpl[] = "/tmp/ember-embed-cli-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
        write("vmlinuz", 4096);
        write("a.img", 1 << 20);
        write("b.img", 1 << 20);
    }
    ~Dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    void write(const std::string& name, size_t bytes) const {
        std::ofstream f(path / name, std::ios::binary);
        f << std::string(bytes, '\0');
    }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

template <typename T> T parse(std::vector<std::string> args) {
    args.insert(args.begin(), "ember");
    auto cmd = parse_command_line(args);
    REQUIRE(std::holds_alternative<T>(cmd));
    return std::get<T>(cmd);
}

} // namespace

TEST_CASE("ember run through libember: every option reaches the VM's configuration") {
    Dir d;
    const auto run = parse<RunRequest>({"run",
                                        "--kernel",
                                        d / "vmlinuz",
                                        "--cmdline",
                                        "console=ttyS0 quiet",
                                        "--cpus",
                                        "3",
                                        "--mem",
                                        "64M",
                                        "--disk",
                                        d / "a.img" + ",readonly,id=root,cache=none,engine=sync",
                                        "--disk",
                                        d / "b.img",
                                        "--console",
                                        "file:" + d / "console.log",
                                        "--virtio-cmdline",
                                        "--entropy",
                                        "--checkpoint-dir",
                                        d / "ck",
                                        "--on-checkpoint",
                                        "continue",
                                        "--checkpoint-drain",
                                        "--checkpoint-disks",
                                        "copy",
                                        "--fault",
                                        "blk.popped:after=4"});
    const embed::VmConfig pub = to_embed(run);
    CHECK(pub.kernel == d.path / "vmlinuz");
    CHECK(pub.cmdline == "console=ttyS0 quiet");
    CHECK(pub.cpus == 3);
    CHECK(pub.memory_bytes == 64ULL << 20);
    REQUIRE(pub.disks.size() == 2);
    CHECK(pub.disks[0].cache == embed::DiskConfig::Cache::none);
    CHECK(pub.disks[0].engine == embed::DiskConfig::Engine::sync);
    CHECK(pub.disks[1].cache == embed::DiskConfig::Cache::writeback);
    CHECK(pub.disks[1].engine == embed::DiskConfig::Engine::uring);
    CHECK(pub.console.kind == embed::ConsoleConfig::Kind::file);
    REQUIRE(pub.checkpoint_on_sigusr1);
    CHECK(pub.checkpoint_on_sigusr1->then == embed::AfterCheckpoint::keep_running);

    // And on to what the VM is built from: the same as the CLI parsed.
    const ::ember::VmConfig in = embed::to_internal(pub);
    const ::ember::VmConfig& want = run.config;
    CHECK(in.cmdline == want.cmdline);
    CHECK(in.cpus == want.cpus);
    CHECK(in.mem_bytes == want.mem_bytes);
    REQUIRE(in.disks.size() == 2);
    CHECK(in.disks[0].id == "root");
    CHECK(in.disks[0].readonly);
    CHECK(in.disks[0].cache == DiskSpec::Cache::none);
    CHECK(in.disks[0].engine == DiskSpec::Engine::sync);
    CHECK(in.disks[1].id == "b.img");
    CHECK(in.disks[1].cache == DiskSpec::Cache::writeback);
    CHECK(in.console.kind == ConsoleSpec::Kind::file);
    CHECK(in.console.path == want.console.path);
    CHECK(in.virtio_cmdline);
    CHECK(pub.entropy);
    CHECK(in.entropy);
    CHECK_FALSE(pub.huge_pages_2m);
    CHECK(in.huge_pages == HugePages::none);
    REQUIRE(in.checkpoint_dir);
    CHECK(*in.checkpoint_dir == d.path / "ck");
    CHECK(in.continue_after_checkpoint);
    CHECK(in.checkpoint_drain);
    CHECK(in.checkpoint_copy_disks);
    CHECK(in.faults == want.faults);
    CHECK_FALSE(in.faults.empty());
}

TEST_CASE("ember run through libember: defaults, and no --checkpoint-dir leaves SIGUSR1 alone") {
    Dir d;
    const auto run = parse<RunRequest>({"run", "--kernel", d / "vmlinuz"});
    const embed::VmConfig pub = to_embed(run);
    CHECK_FALSE(pub.checkpoint_on_sigusr1);
    CHECK_FALSE(pub.checkpoints.drain);
    CHECK_FALSE(pub.checkpoints.copy_disks);
    CHECK_FALSE(pub.virtio_cmdline);
    CHECK_FALSE(pub.entropy);
    CHECK(pub.faults.empty());
    // The command's stdio console forwards stdin (Ctrl-A x), as it always did.
    CHECK(pub.console.kind == embed::ConsoleConfig::Kind::stdio);
    CHECK(pub.console.interactive);
    CHECK(embed::run_options(pub.console, pub.checkpoint_on_sigusr1).console_input);
    const auto in = embed::to_internal(pub);
    CHECK_FALSE(in.checkpoint_dir);
    CHECK(in.cmdline == kDefaultCmdline);
}

TEST_CASE("ember run through libember: --net rate limits reach the device's configuration") {
    Dir d;
    const auto run = parse<RunRequest>({"run", "--kernel", d / "vmlinuz", "--net",
                                        "tap=tap0,id=eth0,rx-bw=1M,rx-bw-burst=64K,tx-ops=100",
                                        "--net", "tap=tap1"});
    const embed::VmConfig pub = to_embed(run);
    REQUIRE(pub.nets.size() == 2);
    const auto& eth0 = pub.nets[0];
    REQUIRE(eth0.rx_rate_limit.bandwidth);
    CHECK(eth0.rx_rate_limit.bandwidth->size == 1 << 20);
    CHECK(eth0.rx_rate_limit.bandwidth->one_time_burst == 64 << 10);
    CHECK(eth0.rx_rate_limit.bandwidth->refill_time_ms == 1000);
    CHECK_FALSE(eth0.rx_rate_limit.ops);
    REQUIRE(eth0.tx_rate_limit.ops);
    CHECK(eth0.tx_rate_limit.ops->size == 100);
    CHECK_FALSE(eth0.tx_rate_limit.bandwidth);
    CHECK_FALSE(pub.nets[1].rx_rate_limit.bandwidth);
    CHECK_FALSE(pub.nets[1].tx_rate_limit.ops);
    // And on to what the VM is built from: the same as the CLI parsed.
    const auto in = embed::to_internal(pub);
    REQUIRE(in.nets.size() == 2);
    for (size_t i = 0; i < 2; ++i) {
        CHECK(in.nets[i].rx_limit == run.config.nets[i].rx_limit);
        CHECK(in.nets[i].tx_limit == run.config.nets[i].tx_limit);
    }
    CHECK(in.nets[0].rx_limit.enabled());
}

TEST_CASE("ember restore through libember: overrides, checkpoint options, --paused, faults") {
    Dir d;
    const auto r = parse<RestoreRequest>(
        {"restore", d / "ck", "--disk", "root=" + d / "a.img", "--disk", "root=" + d / "b.img",
         "--console", "none", "--checkpoint-dir", d / "ck2", "--checkpoint-disks", "copy",
         "--paused", "--fault", "random:period=50"});
    const embed::RestoreOverrides o = to_embed(r);
    REQUIRE(o.disks.size() == 1);
    CHECK(o.disks.at("root") == d.path / "a.img"); // the first one given, as before
    CHECK(o.console.kind == embed::ConsoleConfig::Kind::none);
    REQUIRE(o.checkpoint_on_sigusr1);
    CHECK(o.checkpoint_on_sigusr1->dir == d.path / "ck2");
    CHECK(o.checkpoint_on_sigusr1->then == embed::AfterCheckpoint::stop);
    CHECK(o.checkpoints.copy_disks);
    CHECK_FALSE(o.checkpoints.drain);
    CHECK(o.paused);
    REQUIRE(o.faults.size() == 1);
    CHECK(embed::to_internal(o.faults) == r.faults);
}

TEST_CASE("libember: a bad fault spec is an ember::Error naming it") {
    CHECK_THROWS_WITH_AS(embed::to_internal(std::vector<std::string>{"blk.nosuch"}),
                         doctest::Contains("blk.nosuch"), Error);
    CHECK(embed::to_internal(std::vector<std::string>{}).empty());
}

TEST_CASE("libember: a checkpoint that stops the VM says so in the exit") {
    const auto ck = embed::to_public({::ember::ExitReason::checkpointed, ""});
    CHECK(ck.reason == embed::ExitReason::stopped);
    CHECK(ck.checkpointed);
    const auto quit = embed::to_public({::ember::ExitReason::user_quit, ""});
    CHECK(quit.reason == embed::ExitReason::stopped);
    CHECK_FALSE(quit.checkpointed);
    CHECK(quit.message == "stopped from the console (Ctrl-A x)");
}

// vmm/cli_run.cpp: which signals stop `ember run` cleanly.
TEST_CASE("ember run takes SIGTERM, SIGINT and SIGHUP, except those it was started with ignored") {
    sigset_t before;
    pthread_sigmask(SIG_SETMASK, nullptr, &before);
    struct sigaction ignore {
    }, old_hup{};
    ignore.sa_handler = SIG_IGN;
    REQUIRE(::sigaction(SIGHUP, &ignore, &old_hup) == 0); // as nohup leaves it
    const sigset_t stops = block_stop_signals();
    sigset_t now;
    pthread_sigmask(SIG_SETMASK, nullptr, &now);
    CHECK(sigismember(&stops, SIGTERM) == 1);
    CHECK(sigismember(&stops, SIGINT) == 1);
    CHECK(sigismember(&stops, SIGHUP) == 0);
    CHECK(sigismember(&now, SIGTERM) == 1); // blocked: taken by sigtimedwait, not by default
    CHECK(sigismember(&now, SIGHUP) == 0);  // still ignored, not blocked
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
    ::sigaction(SIGHUP, &old_hup, nullptr);
}

TEST_CASE("ember --config-file: the file's VM, through libember like ember run's") {
    Dir d;
    const auto write_json = [&](const std::string& text) {
        std::ofstream(d.path / "vm.json") << text;
        return d / "vm.json";
    };
    const auto file = write_json(R"({"boot-source": {"kernel_image_path": ")" + (d / "vmlinuz") +
                                 R"("}, "machine-config": {"vcpu_count": 2, "mem_size_mib": 64},
        "drives": [{"drive_id": "data", "path_on_host": ")" +
                                 (d / "a.img") +
                                 R"(", "is_root_device": false, "is_read_only": true}],
        "metrics": {"metrics_path": ")" +
                                 (d / "m.json") + R"("}})");
    auto r =
        run_request_from(parse<ConfigFileRequest>({"--config-file", file, "--api-sock", d / "s"}));
    CHECK(r.config.kernel == d / "vmlinuz");
    CHECK(r.config.cpus == 2);
    CHECK(r.config.mem_bytes == 64u << 20);
    REQUIRE(r.config.disks.size() == 1);
    CHECK(r.config.disks[0].readonly);
    CHECK(r.api_sock == fs::path(d / "s"));
    CHECK(r.process.metrics_path ==
          fs::path(d / "m.json")); // opened by the command, as --metrics-path
    CHECK_FALSE(r.process.log_path.has_value());
    CHECK(r.process.seccomp);
    CHECK_FALSE(run_request_from(parse<ConfigFileRequest>({"--no-seccomp", "--config-file", file}))
                    .process.seccomp);
    // And on to libember's configuration, as ember run's request goes.
    const embed::VmConfig c = to_embed(r);
    CHECK(c.cpus == 2);
    REQUIRE(c.disks.size() == 1);
    CHECK(c.disks[0].id == "data");
    // A path given twice, by the file and by the flag: refused, naming both.
    CHECK_THROWS_WITH_AS(run_request_from(parse<ConfigFileRequest>(
                             {"--config-file", file, "--metrics-path", d / "x"})),
                         (file + ": \"metrics\" names " + (d / "m.json") + ", and --metrics-path " +
                          (d / "x") + ": give one of them")
                             .c_str(),
                         api::ConfigFileError);
    const auto logged = write_json(R"({"boot-source": {"kernel_image_path": ")" + (d / "vmlinuz") +
                                   R"("}, "logger": {"log_path": ")" + (d / "vm.log") + R"("}})");
    CHECK_THROWS_WITH_AS(run_request_from(parse<ConfigFileRequest>(
                             {"--config-file", logged, "--log-path", d / "y"})),
                         doctest::Contains("\"logger\" names"), api::ConfigFileError);
    CHECK_FALSE(fs::exists(d.path / "y"));
    const auto leveled = write_json(R"({"boot-source": {"kernel_image_path": ")" + (d / "vmlinuz") +
                                    R"("}, "logger": {"level": "Warning"}})");
    CHECK_THROWS_WITH_AS(
        run_request_from(parse<ConfigFileRequest>({"--level", "Info", "--config-file", leveled})),
        doctest::Contains("\"logger\" sets the level, and so does --level"), api::ConfigFileError);
    CHECK_FALSE(fs::exists(d.path / "vm.log"));
}
