// libember's configuration checks and the failures of Vm::create and
// Vm::restore that come before KVM is opened: no /dev/kvm needed.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "ember/ember.h"
#include "tests/support/threads.h"
#include "vmm/cpu_affinity.h"
#include "vmm/embed/config.h"
#include "vmm/snapshot/restore_config.h"
#include "vmm/snapshot/snapshot.h"

using namespace ember;
namespace fs = std::filesystem;

namespace {

// What config_from_json says of a damaged configuration, or "accepted".
std::string config_refusal(const nlohmann::json& j) {
    try {
        ember::Vm::config_from_json(j);
    } catch (const SnapshotError& e) {
        return e.what();
    }
    return "accepted";
}

// A private directory with files that look enough like a kernel, an initrd
// and disks for the checks (they are never booted).
struct Files {
    fs::path dir;
    Files() {
        char tmpl[] = "/tmp/ember-embed-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        write("vmlinuz", 4096);
        write("initrd", 512);
        write("disk-a.img", 1 << 20);
        write("disk-b.img", 2 << 20);
    }
    ~Files() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    void write(const std::string& name, size_t bytes) const {
        std::ofstream f(dir / name, std::ios::binary);
        f << std::string(bytes, 'x');
    }
    embed::VmConfig config() const {
        embed::VmConfig c;
        c.kernel = dir / "vmlinuz";
        c.initrd = dir / "initrd";
        return c;
    }
};

std::string error_of(const embed::VmConfig& c) {
    try {
        embed::to_internal(c);
    } catch (const Error& e) {
        return e.what();
    }
    return "accepted";
}

bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("embed config: a good configuration maps onto the internal one") {
    Files f;
    auto c = f.config();
    c.cmdline = "console=ttyS0 quiet";
    c.cpus = 3;
    c.memory_bytes = 256ULL << 20;
    c.disks.push_back({"root", f.dir / "disk-a.img", true});
    c.disks.push_back({"", f.dir / "disk-b.img", false});
    const VmConfig in = embed::to_internal(c);
    CHECK(in.kernel == f.dir / "vmlinuz");
    REQUIRE(in.initrd);
    CHECK(*in.initrd == f.dir / "initrd");
    CHECK(in.cmdline == "console=ttyS0 quiet");
    CHECK(in.cpus == 3);
    CHECK(in.mem_bytes == 256ULL << 20);
    REQUIRE(in.disks.size() == 2);
    CHECK(in.disks[0].id == "root");
    CHECK(in.disks[0].readonly);
    CHECK(in.disks[1].id == "disk-b.img"); // derived from the file name, as the device does
    CHECK_FALSE(in.disks[1].readonly);
    CHECK(in.console.kind == ConsoleSpec::Kind::none); // the library's default: nothing
    CHECK_FALSE(in.checkpoint_dir);
}

TEST_CASE("embed config: missing or unusable files are named") {
    Files f;
    auto c = f.config();
    c.kernel = f.dir / "no-such-vmlinuz";
    auto msg = error_of(c);
    CHECK(has(msg, "kernel " + (f.dir / "no-such-vmlinuz").string()));
    CHECK(has(msg, "No such file or directory"));

    c = f.config();
    c.kernel = f.dir;
    CHECK(has(error_of(c), "not a regular file"));

    c = f.config();
    c.kernel.clear();
    CHECK(has(error_of(c), "no kernel image given"));

    c = f.config();
    c.initrd = f.dir / "gone.cpio";
    CHECK(has(error_of(c), "initrd " + (f.dir / "gone.cpio").string()));

    c = f.config();
    c.disks.push_back({"d", f.dir / "missing.img", false});
    // The device's own check and message, as `ember run --disk` gives.
    CHECK(has(error_of(c), "disk image " + (f.dir / "missing.img").string() + ": does not exist"));

    c = f.config();
    c.disks.push_back({"d", "", false});
    CHECK(has(error_of(c), "a disk has no path"));
}

TEST_CASE("embed config: sizes and counts are checked") {
    Files f;
    auto c = f.config();
    c.cpus = 0;
    CHECK(has(error_of(c), "0 vcpus asked for: must be between 1 and 254"));
    c.cpus = 255;
    CHECK(has(error_of(c), "255 vcpus"));
    c = f.config();
    c.memory_bytes = 16ULL << 20;
    CHECK(has(error_of(c), "at least 32 MiB"));
    c.memory_bytes = (64ULL << 20) + 100;
    CHECK(has(error_of(c), "multiple of 4 KiB"));
    c.memory_bytes = (64ULL << 20) + 4096;
    CHECK(embed::to_internal(c).huge_pages == HugePages::none);
    c.huge_pages_2m = true;
    CHECK(has(error_of(c), "67112960 bytes of memory asked for with 2 MiB huge pages: must be a "
                           "multiple of 2 MiB"));
    c.memory_bytes = 66ULL << 20;
    CHECK(embed::to_internal(c).huge_pages == HugePages::two_mib);
    c = f.config();
    for (int i = 0; i < 9; ++i)
        c.disks.push_back({"d" + std::to_string(i), f.dir / "disk-a.img", true});
    CHECK(has(error_of(c), "9 disks given; ember supports at most 8"));
    c = f.config();
    c.disks.push_back({"an-id-of-twenty-one-b", f.dir / "disk-a.img", true});
    CHECK(has(error_of(c), "longer than 20 bytes"));
    c = f.config();
    c.disks.push_back({"", f.dir / "disk-a.img", true});
    c.disks.push_back({"disk-a.img", f.dir / "disk-b.img", true}); // clashes with the derived id
    CHECK(has(error_of(c), "already has the id 'disk-a.img'"));
}

TEST_CASE("embed config: console kinds") {
    Files f;
    auto c = f.config();
    c.console.kind = embed::ConsoleConfig::Kind::file;
    CHECK(has(error_of(c), "a file console needs a file path"));
    c.console = embed::ConsoleConfig::to_callback(nullptr);
    CHECK(has(error_of(c), "a callback console needs a callback"));
    c.console = embed::ConsoleConfig::to_file(f.dir / "console.log");
    c.console.interactive = true;
    CHECK(has(error_of(c), "interactive is only for a stdio console"));

    c.console = embed::ConsoleConfig::to_file(f.dir / "console.log");
    const auto file = embed::to_internal(c).console;
    CHECK(file.kind == ConsoleSpec::Kind::file);
    CHECK(file.path == (f.dir / "console.log").string());

    std::string seen;
    const auto spec = embed::to_internal(
        embed::ConsoleConfig::to_callback([&](std::string_view t) { seen += t; }));
    REQUIRE(spec.kind == ConsoleSpec::Kind::callback);
    const uint8_t bytes[] = {'o', 'k', '\n'};
    spec.callback(bytes);
    CHECK(seen == "ok\n");
    // A throwing callback must not unwind into the vcpu thread that calls it.
    const auto throwing = embed::to_internal(
        embed::ConsoleConfig::to_callback([](std::string_view) { throw std::runtime_error("x"); }));
    CHECK_NOTHROW(throwing.callback(bytes));
}

TEST_CASE("embed config: the process-wide takeovers are opt-in") {
    Files f;
    auto c = f.config();
    auto o = embed::run_options(c.console, c.checkpoint_on_sigusr1);
    CHECK_FALSE(o.checkpoint_on_sigusr1);
    CHECK_FALSE(o.console_input);
    o = embed::run_options(embed::ConsoleConfig::to_stdout(false), std::nullopt);
    CHECK_FALSE(o.console_input); // stdout alone does not touch the terminal
    o = embed::run_options(embed::ConsoleConfig::to_stdout(true),
                           embed::SignalCheckpoint{f.dir, {}});
    CHECK(o.console_input);
    CHECK(o.checkpoint_on_sigusr1);

    c.checkpoint_on_sigusr1 =
        embed::SignalCheckpoint{f.dir / "ck", embed::AfterCheckpoint::keep_running};
    const auto in = embed::to_internal(c);
    REQUIRE(in.checkpoint_dir);
    CHECK(*in.checkpoint_dir == f.dir / "ck");
    CHECK(in.continue_after_checkpoint);
    c.checkpoint_on_sigusr1 = embed::SignalCheckpoint{};
    CHECK(has(error_of(c), "no checkpoint directory"));
    // A checkpoint that could never be written is refused before the VM starts.
    c.checkpoint_on_sigusr1 = embed::SignalCheckpoint{c.kernel / "ck"};
    CHECK(has(error_of(c), "is not a directory"));
}

TEST_CASE("embed config: internal exits map onto the public reasons") {
    using IR = ember::ExitReason;
    CHECK(embed::to_public({IR::poweroff, ""}).reason == embed::ExitReason::poweroff);
    CHECK(embed::to_public({IR::reboot, "triple fault"}).message == "triple fault");
    CHECK(embed::to_public({IR::panic, ""}).reason == embed::ExitReason::panic);
    const auto err = embed::to_public({IR::error, "vcpu 0: KVM internal error"});
    CHECK(err.reason == embed::ExitReason::error);
    CHECK(err.message == "vcpu 0: KVM internal error");
    CHECK(embed::to_public({IR::user_quit, ""}).reason == embed::ExitReason::stopped);
    const auto ck = embed::to_public({IR::checkpointed, ""});
    CHECK(ck.reason == embed::ExitReason::stopped);
    CHECK(ck.message == "checkpoint taken");
    CHECK(std::string(embed::to_string(embed::ExitReason::poweroff)) == "poweroff");
    CHECK(std::string(embed::to_string(embed::ExitReason::stopped)) == "stopped");
}

TEST_CASE(
    "embed Vm::create: a missing kernel is an ember::Error naming it, before KVM is touched") {
    Files f;
    auto c = f.config();
    c.kernel = f.dir / "vmlinuz-missing";
    try {
        embed::Vm::create(c);
        FAIL("create() accepted a missing kernel");
    } catch (const Error& e) {
        CHECK(has(e.what(), (f.dir / "vmlinuz-missing").string()));
    }
}

namespace {
// An internal configuration as a checkpoint records it: one vcpu and the
// disk disk-a.img with the id "root".
VmConfig one_disk_config(const Files& f) {
    VmConfig c;
    c.kernel = f.dir / "vmlinuz";
    c.cpus = 1;
    DiskSpec disk;
    disk.path = (f.dir / "disk-a.img").string();
    disk.id = "root";
    c.disks.push_back(disk);
    return c;
}
} // namespace

TEST_CASE("embed config: poll_us is checked, and carried through a checkpoint") {
    Files f;
    auto c = f.config();
    c.disks.push_back({"d", f.dir / "disk-a.img", false});
    c.disks.back().poll_us = 50; // with the page cache
    CHECK(has(error_of(c), "poll= needs cache=none"));
    c.disks.back().cache = embed::DiskConfig::Cache::none;
    c.disks.back().engine = embed::DiskConfig::Engine::sync;
    CHECK(has(error_of(c), "poll= needs engine=uring"));
    c.disks.back().engine = embed::DiskConfig::Engine::uring;
    c.disks.back().poll_us = 10001;
    CHECK(has(error_of(c), "more than 10000 us"));

    VmConfig saved = one_disk_config(f);
    saved.disks[0].cache = DiskSpec::Cache::none;
    saved.disks[0].poll_us = 50;
    auto j = ember::Vm::config_to_json(saved);
    CHECK(ember::Vm::config_from_json(j).disks.at(0).poll_us == 50);
    j["disks"][0].erase("poll_us"); // a checkpoint from before poll=
    CHECK(ember::Vm::config_from_json(j).disks.at(0).poll_us == 0);
    j["disks"][0]["poll_us"] = 50;
    j["disks"][0]["cache"] = "writeback"; // no ember writes this
    CHECK_THROWS_AS(ember::Vm::config_from_json(j), SnapshotError);
}

TEST_CASE("embed config: iothread_cpu is checked, and carried through a checkpoint") {
    Files f;
    const cpu_set_t allowed = ember_cpus();
    const uint32_t first = testing::first_allowed_cpu();
    auto c = f.config();
    c.disks.push_back({"d", f.dir / "disk-a.img", false});
    c.disks.back().iothread_cpu = 99999;
    CHECK(has(error_of(c), "iothread-cpu=99999 is not a CPU ember may run on (allowed: " +
                               cpu_list(allowed) + ")"));
    c.disks.back().iothread_cpu = first;
    const VmConfig in = embed::to_internal(c);
    REQUIRE(in.disks.back().iothread_cpu.has_value());
    CHECK(*in.disks.back().iothread_cpu == first);

    VmConfig saved = one_disk_config(f);
    CHECK_FALSE(ember::Vm::config_to_json(saved)["disks"][0].contains("iothread_cpu"));
    saved.disks[0].iothread_cpu = first;
    auto j = ember::Vm::config_to_json(saved);
    CHECK(ember::Vm::config_from_json(j).disks.at(0).iothread_cpu == first);
    j["disks"][0].erase("iothread_cpu"); // unplaced, or from before iothread-cpu=
    CHECK_FALSE(ember::Vm::config_from_json(j).disks.at(0).iothread_cpu.has_value());
    // A checkpoint restored where that CPU is not available: a clear error,
    // not a guest whose disk thread runs elsewhere than asked.
    j["disks"][0]["iothread_cpu"] = 99999;
    try {
        ember::Vm::config_from_json(j);
        FAIL("a checkpoint naming an unavailable CPU was accepted");
    } catch (const SnapshotError& e) {
        CHECK(has(e.what(), "snapshot configuration: disk"));
        CHECK(has(e.what(), "iothread-cpu=99999 is not a CPU ember may run on"));
    }
    j["disks"][0]["iothread_cpu"] = "two";
    CHECK_THROWS_WITH_AS(
        ember::Vm::config_from_json(j),
        "snapshot configuration, disk 0: 'iothread_cpu' is the string \"two\", of the "
        "wrong type (corrupt)",
        SnapshotError);
}

TEST_CASE("embed config: rate_limit is checked, converted, and carried through a checkpoint") {
    Files f;
    auto c = f.config();
    c.disks.push_back({"d", f.dir / "disk-a.img", false});
    c.disks.back().rate_limit.ops = embed::TokenBucketConfig{.size = 0, .refill_time_ms = 100};
    CHECK(has(error_of(c), "the rate limit's ops bucket: its size must be more than 0"));
    c.disks.back().rate_limit.ops = embed::TokenBucketConfig{.size = 500, .refill_time_ms = 0};
    CHECK(has(error_of(c), "its refill time must be more than 0 ms"));
    c.disks.back().rate_limit.ops = embed::TokenBucketConfig{500, 100, 1000};
    c.disks.back().rate_limit.bandwidth = embed::TokenBucketConfig{1 << 20, 0, 250};
    const VmConfig in = embed::to_internal(c);
    const RateLimit expect{TokenBucketSpec{1 << 20, 0, 250}, TokenBucketSpec{500, 100, 1000}};
    CHECK(in.disks.back().rate_limit == expect);

    VmConfig saved = one_disk_config(f);
    CHECK_FALSE(ember::Vm::config_to_json(saved)["disks"][0].contains("rate_limit"));
    saved.disks[0].rate_limit = expect;
    auto j = ember::Vm::config_to_json(saved);
    // Firecracker's field names, so a person reading the manifest knows them.
    CHECK(j["disks"][0]["rate_limit"]["bandwidth"]["refill_time"] == 250);
    CHECK(j["disks"][0]["rate_limit"]["ops"]["one_time_burst"] == 100);
    CHECK(ember::Vm::config_from_json(j).disks.at(0).rate_limit == expect);
    j["disks"][0]["rate_limit"].erase("bandwidth");
    CHECK(ember::Vm::config_from_json(j).disks.at(0).rate_limit ==
          RateLimit{std::nullopt, expect.ops});
    j["disks"][0].erase("rate_limit"); // no limit, or from before rate limits
    CHECK_FALSE(ember::Vm::config_from_json(j).disks.at(0).rate_limit.enabled());
    // Damaged: named, never a disk without the limit it was saved with.
    j["disks"][0]["rate_limit"] = nlohmann::json{{"ops", {{"size", 5}, {"refill_time", 100}}}};
    CHECK_THROWS_WITH_AS(ember::Vm::config_from_json(j),
                         "snapshot configuration, disk 0, rate_limit ops has no "
                         "'one_time_burst' (corrupt)",
                         SnapshotError);
    j["disks"][0]["rate_limit"] = 7;
    CHECK_THROWS_WITH_AS(ember::Vm::config_from_json(j),
                         "snapshot configuration, disk 0: 'rate_limit' is not an object (corrupt)",
                         SnapshotError);
    j["disks"][0]["rate_limit"] =
        nlohmann::json{{"ops", {{"size", 0}, {"one_time_burst", 0}, {"refill_time", 100}}}};
    try {
        ember::Vm::config_from_json(j);
        FAIL("a checkpoint with an unusable bucket was accepted");
    } catch (const SnapshotError& e) {
        CHECK(has(e.what(), "its size must be more than 0"));
    }
}

TEST_CASE("embed config: a checkpoint's bucket fill is read, and refused when it cannot be") {
    Files f;
    VmConfig saved = one_disk_config(f);
    saved.disks[0].rate_limit = {TokenBucketSpec{1 << 20, 0, 1000}, TokenBucketSpec{100, 10, 1000}};
    auto j = ember::Vm::config_to_json(saved);
    const auto& limit = saved.disks[0].rate_limit;
    // Absent (full buckets; checkpoints from before): nothing to restore.
    CHECK_FALSE(ember::Vm::saved_rate_limit_fill(j, 0, limit).has_value());
    j["disks"][0]["rate_limit_fill"] = {
        {"bandwidth", {{"budget", -8192}, {"one_time_burst", 0}, {"partial_token_ns", 77}}},
        {"ops", {{"budget", 99}, {"one_time_burst", 3}, {"partial_token_ns", 0}}}};
    const auto fill = ember::Vm::saved_rate_limit_fill(j, 0, limit);
    REQUIRE(fill.has_value());
    CHECK(*fill == RateLimitFill{TokenBucketFill{-8192, 0, 77}, TokenBucketFill{99, 3, 0}});
    CHECK_NOTHROW(ember::Vm::config_from_json(j));
    // Each damage named, at config_from_json already (before anything is built).
    const auto refused = [&](const nlohmann::json& bad) {
        auto k = j;
        k["disks"][0]["rate_limit_fill"] = bad;
        return config_refusal(k);
    };
    CHECK(refused(7) ==
          "snapshot configuration, disk 0: 'rate_limit_fill' is not an object (corrupt)");
    auto bad = j["disks"][0]["rate_limit_fill"];
    bad["ops"].erase("partial_token_ns");
    CHECK(refused(bad) == "snapshot configuration, disk 0, rate_limit_fill ops has no "
                          "'partial_token_ns' (corrupt)");
    bad = j["disks"][0]["rate_limit_fill"];
    bad["ops"]["budget"] = "99";
    CHECK(refused(bad) == "snapshot configuration, disk 0, rate_limit_fill ops: 'budget' is "
                          "\"99\", not a whole number of tokens (corrupt)");
    // Past int64: nlohmann would wrap it into a plausible negative number.
    bad["ops"]["budget"] = uint64_t{1} << 63;
    CHECK(has(refused(bad), "'budget' is 9223372036854775808, not a whole number of tokens"));
    bad["ops"]["budget"] = 1.5;
    CHECK(has(refused(bad), "'budget' is 1.5, not a whole number of tokens"));
    bad = j["disks"][0]["rate_limit_fill"];
    bad["ops"]["one_time_burst"] = 11;
    CHECK(has(refused(bad),
              "ops bucket: its burst left 11 is more than its one-time burst 10 (corrupt)"));
    j["disks"][0]["rate_limit"].erase("bandwidth");
    CHECK(has(refused(j["disks"][0]["rate_limit_fill"]),
              "a fill for a bandwidth bucket the limit does not have"));
}

TEST_CASE("embed config: a network device's rate limits are checked, converted, and carried "
          "through a checkpoint") {
    Files f;
    auto c = f.config();
    c.nets.push_back({.id = "eth0", .tap = "tap0", .mac = ""});
    c.nets.back().rx_rate_limit.ops = embed::TokenBucketConfig{.size = 0, .refill_time_ms = 100};
    CHECK(error_of(c) == "network device eth0: the receive rate limit's ops bucket: its size must "
                         "be more than 0");
    c.nets.back().rx_rate_limit.ops.reset();
    c.nets.back().tx_rate_limit.bandwidth =
        embed::TokenBucketConfig{.size = 4096, .refill_time_ms = 0};
    CHECK(error_of(c) == "network device eth0: the transmit rate limit's bandwidth bucket: its "
                         "refill time must be more than 0 ms");
    c.nets.back().rx_rate_limit.bandwidth = embed::TokenBucketConfig{1 << 20, 4096, 1000};
    c.nets.back().tx_rate_limit = {};
    c.nets.back().tx_rate_limit.ops = embed::TokenBucketConfig{100, 0, 1000};
    const VmConfig in = embed::to_internal(c);
    const RateLimit rx{TokenBucketSpec{1 << 20, 4096, 1000}, std::nullopt};
    const RateLimit tx{std::nullopt, TokenBucketSpec{100, 0, 1000}};
    REQUIRE(in.nets.size() == 1);
    CHECK(in.nets[0].rx_limit == rx);
    CHECK(in.nets[0].tx_limit == tx);

    VmConfig saved = one_disk_config(f);
    saved.nets = {NetSpec{"eth0", "tap0", std::nullopt}, NetSpec{"eth1", "tap1", std::nullopt}};
    CHECK_FALSE(ember::Vm::config_to_json(saved)["nets"][0].contains("rx_rate_limit"));
    CHECK_FALSE(ember::Vm::config_to_json(saved)["nets"][0].contains("tx_rate_limit"));
    saved.nets[0].rx_limit = rx;
    saved.nets[1].tx_limit = tx;
    auto j = ember::Vm::config_to_json(saved);
    // A disk's rate_limit object, under each direction's name.
    CHECK(j["nets"][0]["rx_rate_limit"] == ember::Vm::rate_limit_to_json(rx));
    CHECK_FALSE(j["nets"][0].contains("tx_rate_limit"));
    CHECK(j["nets"][1]["tx_rate_limit"]["ops"]["refill_time"] == 1000);
    {
        const auto back = ember::Vm::config_from_json(j).nets;
        CHECK(back.at(0).rx_limit == rx);
        CHECK_FALSE(back.at(0).tx_limit.enabled());
        CHECK_FALSE(back.at(1).rx_limit.enabled());
        CHECK(back.at(1).tx_limit == tx);
    }
    auto k = j;
    k["nets"][1]["tx_rate_limit"] = "100/s";
    CHECK(config_refusal(k) ==
          "snapshot configuration, network device 1: 'tx_rate_limit' is not an "
          "object (corrupt)");
    k = j;
    k["nets"][0]["rx_rate_limit"]["bandwidth"].erase("refill_time");
    CHECK(config_refusal(k) ==
          "snapshot configuration, network device 0, rx_rate_limit bandwidth has no "
          "'refill_time' (corrupt)");
    k = j;
    k["nets"][0]["rx_rate_limit"]["bandwidth"]["size"] = "1M";
    CHECK(config_refusal(k) == "snapshot configuration, network device 0, rx_rate_limit bandwidth: "
                               "'size' is the string \"1M\", of the wrong type (corrupt)");
    k = j;
    k["nets"][1]["tx_rate_limit"]["ops"]["size"] = 0;
    CHECK(config_refusal(k) ==
          "snapshot configuration, network device 1: the transmit rate limit's ops "
          "bucket: its size must be more than 0 (corrupt)");
}

TEST_CASE("embed config: a checkpoint's network device bucket fills are read, and refused when "
          "they cannot be") {
    Files f;
    VmConfig saved = one_disk_config(f);
    NetSpec net{"eth0", "tap0", std::nullopt};
    net.rx_limit = {TokenBucketSpec{1 << 20, 0, 1000}, std::nullopt};
    net.tx_limit = {std::nullopt, TokenBucketSpec{100, 10, 1000}};
    saved.nets = {net};
    auto j = ember::Vm::config_to_json(saved);
    // Absent (full buckets; checkpoints from before): nothing to restore.
    CHECK(ember::Vm::saved_net_rate_limit_fills(j, 0, net) == NetRateLimitFills{});
    j["nets"][0]["rx_rate_limit_fill"] = {
        {"bandwidth", {{"budget", -1500}, {"one_time_burst", 0}, {"partial_token_ns", 9}}}};
    j["nets"][0]["tx_rate_limit_fill"] = {
        {"ops", {{"budget", 42}, {"one_time_burst", 3}, {"partial_token_ns", 0}}}};
    const NetRateLimitFills want{RateLimitFill{TokenBucketFill{-1500, 0, 9}, std::nullopt},
                                 RateLimitFill{std::nullopt, TokenBucketFill{42, 3, 0}}};
    CHECK(ember::Vm::saved_net_rate_limit_fills(j, 0, net) == want);
    CHECK_NOTHROW(ember::Vm::config_from_json(j));
    // Each damage named, at config_from_json already (before anything is built).
    const auto refused = [&](const char* key, const nlohmann::json& bad) {
        auto k = j;
        k["nets"][0][key] = bad;
        return config_refusal(k);
    };
    CHECK(refused("rx_rate_limit_fill", 7) == "snapshot configuration, network device 0: "
                                              "'rx_rate_limit_fill' is not an object (corrupt)");
    auto bad = j["nets"][0]["tx_rate_limit_fill"];
    bad["ops"].erase("partial_token_ns");
    CHECK(refused("tx_rate_limit_fill", bad) ==
          "snapshot configuration, network device 0, tx_rate_limit_fill ops has no "
          "'partial_token_ns' (corrupt)");
    bad = j["nets"][0]["tx_rate_limit_fill"];
    bad["ops"]["budget"] = uint64_t{1} << 63;
    CHECK(has(refused("tx_rate_limit_fill", bad),
              "tx_rate_limit_fill ops: 'budget' is 9223372036854775808, not a whole number of "
              "tokens (corrupt)"));
    bad = j["nets"][0]["tx_rate_limit_fill"];
    bad["ops"]["budget"] = 101;
    CHECK(refused("tx_rate_limit_fill", bad) ==
          "snapshot configuration, network device 0: 'tx_rate_limit_fill' does not fit the "
          "transmit rate limit (100 frames per 1000 ms (one-time burst 10)): ops bucket: its "
          "budget 101 is more than its size 100 (corrupt)");
    // A fill for a direction, or a bucket, that has no limit.
    CHECK(has(refused("tx_rate_limit_fill", j["nets"][0]["rx_rate_limit_fill"]),
              "a fill for a bandwidth bucket the limit does not have"));
    auto unlimited = j;
    unlimited["nets"][0].erase("rx_rate_limit");
    CHECK_THROWS_WITH_AS(ember::Vm::config_from_json(unlimited),
                         doctest::Contains("'rx_rate_limit_fill' does not fit the receive rate "
                                           "limit (no limit)"),
                         SnapshotError);
}

TEST_CASE("embed config: a checkpoint's configuration with a field missing or of the wrong type "
          "names it") {
    Files f;
    const auto good = ember::Vm::config_to_json(one_disk_config(f));
    REQUIRE_NOTHROW(ember::Vm::config_from_json(good));
    auto j = good;
    j["cpus"] = "x";
    CHECK(config_refusal(j) ==
          "snapshot configuration: 'cpus' is the string \"x\", of the wrong type (corrupt)");
    j = good;
    j.erase("mem_bytes");
    CHECK(config_refusal(j) == "snapshot configuration has no 'mem_bytes' (corrupt)");
    j = good;
    j["disks"] = 3;
    CHECK(config_refusal(j) == "snapshot configuration: 'disks' is not a list (corrupt)");
    j = good;
    j["disks"][0]["readonly"] = 1;
    CHECK(
        config_refusal(j) ==
        "snapshot configuration, disk 0: 'readonly' is the number 1, of the wrong type (corrupt)");
    j = good;
    j["disks"][0]["cache"] = "None"; // would have been taken as writeback
    CHECK(config_refusal(j) ==
          "snapshot configuration, disk 0: 'cache' is 'None', not none or writeback (corrupt)");
    j = good;
    j["disks"][0]["engine"] = "io_uring";
    CHECK(config_refusal(j) ==
          "snapshot configuration, disk 0: 'engine' is 'io_uring', not sync or uring (corrupt)");
    for (const char* cache : {"none", "writeback"}) {
        j = good;
        j["disks"][0]["cache"] = cache;
        CHECK(ember::Vm::config_from_json(j).disks.at(0).cache ==
              (cache == std::string("none") ? DiskSpec::Cache::none : DiskSpec::Cache::writeback));
    }
    j = good;
    j["disks"][0]["engine"] = "sync";
    CHECK(ember::Vm::config_from_json(j).disks.at(0).engine == DiskSpec::Engine::sync);
    j = good;
    j["disks"][0] = "disk.img";
    CHECK(config_refusal(j) == "snapshot configuration, disk 0 has no 'path' (corrupt)");
}

TEST_CASE("embed config: vcpu_cpus is checked, and carried through a checkpoint") {
    Files f;
    const cpu_set_t allowed = ember_cpus();
    const uint32_t first = testing::first_allowed_cpu();
    auto c = f.config();
    c.cpus = 2;
    c.vcpu_cpus = {first};
    CHECK(has(error_of(c), "vcpu placement: 1 host CPUs given for 2 vcpus"));
    c.vcpu_cpus = {first, 99999};
    CHECK(has(error_of(c), "vcpu 1 on host CPU 99999, which ember may not run on (allowed: " +
                               cpu_list(allowed) + ")"));
    c.vcpu_cpus = {first, first};
    CHECK(embed::to_internal(c).vcpu_cpus == std::vector<uint32_t>{first, first});

    VmConfig saved = one_disk_config(f);
    CHECK_FALSE(ember::Vm::config_to_json(saved).contains("vcpu_cpus"));
    CHECK_FALSE(ember::Vm::config_to_json(saved).contains("initrd"));
    CHECK_FALSE(ember::Vm::config_from_json(ember::Vm::config_to_json(saved)).initrd);
    saved.initrd = "/boot/initrd.img";
    CHECK(ember::Vm::config_from_json(ember::Vm::config_to_json(saved)).initrd ==
          std::filesystem::path("/boot/initrd.img"));
    saved.initrd.reset();
    // The entropy device: absent means none, so older checkpoints restore
    // with the virtio slots they had.
    CHECK_FALSE(ember::Vm::config_to_json(saved).contains("entropy"));
    CHECK_FALSE(ember::Vm::config_from_json(ember::Vm::config_to_json(saved)).entropy);
    saved.entropy = true;
    CHECK(ember::Vm::config_from_json(ember::Vm::config_to_json(saved)).entropy);
    saved.entropy = false;
    // Network devices: absent means none; ids, taps and MACs come back.
    CHECK_FALSE(ember::Vm::config_to_json(saved).contains("nets"));
    saved.nets = {NetSpec{"eth0", "tap0", MacAddress{6, 0, 0xac, 0x10, 0, 2}},
                  NetSpec{"eth1", "tap1", std::nullopt}};
    {
        const auto back = ember::Vm::config_from_json(ember::Vm::config_to_json(saved)).nets;
        REQUIRE(back.size() == 2);
        CHECK(back[0].id == "eth0");
        CHECK(back[0].tap == "tap0");
        CHECK(back[0].mac == saved.nets[0].mac);
        CHECK(back[1].id == "eth1");
        CHECK_FALSE(back[1].mac);
    }
    // Overrides move a device to another tap; they must name a device, and
    // two devices still cannot share a tap.
    {
        VmConfig moved = saved;
        apply_net_overrides(moved, {{"eth1", "tap9"}});
        CHECK(moved.nets[0].tap == "tap0");
        CHECK(moved.nets[1].tap == "tap9");
        CHECK_THROWS_WITH_AS(
            apply_net_overrides(moved, {{"eth7", "tap9"}}),
            doctest::Contains("no network device with that id (it has eth0, eth1)"), Error);
        CHECK_THROWS_WITH_AS(apply_net_overrides(moved, {{"eth1", "tap0"}}),
                             doctest::Contains("two network devices use tap tap0"), Error);
        CHECK_THROWS_WITH_AS(apply_net_overrides(moved, {{"eth1", "a/b"}}),
                             doctest::Contains("'/'"), Error);
    }
    saved.nets.clear();
    // Huge pages: absent means 4 KiB pages; a restore maps RAM as the VM had it.
    CHECK_FALSE(ember::Vm::config_to_json(saved).contains("huge_pages"));
    saved.huge_pages = HugePages::two_mib;
    CHECK(ember::Vm::config_to_json(saved)["huge_pages"] == "2M");
    CHECK(ember::Vm::config_from_json(ember::Vm::config_to_json(saved)).huge_pages ==
          HugePages::two_mib);
    {
        auto odd = ember::Vm::config_to_json(saved);
        odd["mem_bytes"] = (64ULL << 20) + 4096;
        CHECK_THROWS_AS(ember::Vm::config_from_json(odd), SnapshotError);
        odd = ember::Vm::config_to_json(saved);
        odd["huge_pages"] = "1G";
        CHECK_THROWS_WITH_AS(ember::Vm::config_from_json(odd),
                             "snapshot configuration: 'huge_pages' is '1G', not 2M (corrupt)",
                             SnapshotError);
    }
    saved.huge_pages = HugePages::none;
    saved.cpus = 2;
    saved.vcpu_cpus = {first, first};
    auto j = ember::Vm::config_to_json(saved);
    CHECK(ember::Vm::config_from_json(j).vcpu_cpus == std::vector<uint32_t>{first, first});
    j.erase("vcpu_cpus"); // not placed, or from before --vcpu-cpus
    CHECK(ember::Vm::config_from_json(j).vcpu_cpus.empty());
    j["vcpu_cpus"] = {first, 99999};
    try {
        ember::Vm::config_from_json(j);
        FAIL("a checkpoint placing a vcpu on an unavailable CPU was accepted");
    } catch (const SnapshotError& e) {
        CHECK(has(e.what(), "snapshot configuration: vcpu placement: vcpu 1 on host CPU 99999"));
    }
    j["vcpu_cpus"] = {first};
    CHECK_THROWS_AS(ember::Vm::config_from_json(j), SnapshotError);
}

TEST_CASE("embed Vm::restore: missing checkpoint, unknown disk override, resized disk") {
    Files f;
    try {
        embed::Vm::restore(f.dir / "no-checkpoint");
        FAIL("restore() accepted a missing checkpoint");
    } catch (const Error& e) {
        CHECK(has(e.what(), (f.dir / "no-checkpoint").string()));
        CHECK(has(e.what(), "is not a snapshot"));
    }

    // A checkpoint directory with only its manifest: enough for the checks
    // that come before any section is read.
    const VmConfig saved = one_disk_config(f);
    const DiskSpec& disk = saved.disks[0];
    const fs::path ck = f.dir / "ck";
    {
        SnapshotWriter w(ck);
        w.finish(ember::Vm::config_to_json(saved));
    }
    SnapshotReader snapshot(ck);
    CHECK(::ember::restore_config(snapshot, {}).disks.at(0).path == disk.path);
    CHECK(::ember::restore_config(snapshot, {{"root", f.dir / "disk-a.img"}}).disks.at(0).id ==
          "root");

    embed::RestoreOverrides o;
    o.disks["data"] = f.dir / "disk-b.img";
    try {
        embed::Vm::restore(ck, o);
        FAIL("restore() accepted an override for a disk the checkpoint lacks");
    } catch (const Error& e) {
        CHECK(has(e.what(), "the snapshot has no disk with id 'data'"));
    }
    o.disks.clear();
    o.disks["root"] = f.dir / "disk-b.img"; // 2 MiB, the checkpoint has 1 MiB
    try {
        embed::Vm::restore(ck, o);
        FAIL("restore() accepted a disk of another size");
    } catch (const Error& e) {
        CHECK(has(e.what(), "has 2097152 bytes, but the snapshot was taken with 1048576 bytes"));
    }
}

TEST_CASE("embed Vm::create: an empty configuration is refused") {
    try {
        embed::Vm::create(embed::VmConfig{});
        FAIL("create() accepted a configuration without a kernel");
    } catch (const Error& e) {
        CHECK(has(e.what(), "no kernel image given"));
    }
}
