#include <doctest/doctest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <fstream>

#include "vmm/kvm.h"
#include "vmm/snapshot/compare.h"
#include "vmm/snapshot/describe.h"
#include "vmm/snapshot/snapshot.h"

using namespace ember;
namespace fs = std::filesystem;

namespace {
struct TempDir {
    fs::path path = fs::temp_directory_path() / fmt::format("ember-snap-{}-{}", ::getpid(), next()++);
    ~TempDir() { fs::remove_all(path); }
    static int& next() {
        static int n = 0;
        return n;
    }
};

void flip_byte(const fs::path& p, uint64_t offset) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x40);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
}

struct Sample {
    uint64_t a;
    uint32_t b;
};
} // namespace

TEST_CASE("snapshot: sections and sparse memory round-trip") {
    TempDir d;
    const GuestMemory::Range layout[] = {{0, 1 << 20}, {4 << 20, 1 << 20}};
    GuestMemory mem{layout};
    mem.write<uint64_t>(GuestAddress{0x1000}, 0x1122334455667788ULL);
    mem.write<uint32_t>(GuestAddress{(4 << 20) + 0x2008}, 0xabcdef01);
    {
        SnapshotWriter w(d.path);
        CHECK(w.add_memory(mem) == 2 * 4096); // only the two pages that hold data
        w.add_value("sample", Sample{7, 9});
        w.finish({{"cpus", 2}});
    }
    SnapshotReader r(d.path);
    CHECK(r.config().at("cpus") == 2);
    CHECK(r.read_value<Sample>("sample").a == 7);
    GuestMemory fresh{layout};
    r.read_memory(fresh);
    CHECK(fresh.read<uint64_t>(GuestAddress{0x1000}) == 0x1122334455667788ULL);
    CHECK(fresh.read<uint32_t>(GuestAddress{(4 << 20) + 0x2008}) == 0xabcdef01);
    CHECK_NOTHROW(r.verify_all());
}

TEST_CASE("checkpoint_dir_problem: a directory, or missing ones below a writable one, will do") {
    TempDir d;
    // Not there yet: its parent, the temp directory, will do.
    CHECK_FALSE(checkpoint_dir_problem(d.path).has_value());
    fs::create_directories(d.path);
    CHECK_FALSE(checkpoint_dir_problem(d.path).has_value());
    CHECK_FALSE(checkpoint_dir_problem(d.path / "new" / "deeper").has_value());
    CHECK_FALSE(fs::exists(d.path / "new")); // checked, not created
    std::ofstream(d.path / "file") << "x";
    const auto file = checkpoint_dir_problem(d.path / "file");
    REQUIRE(file.has_value());
    CHECK(file->find("is not a directory") != std::string::npos);
    // A file where a directory of the path should be.
    const auto below = checkpoint_dir_problem(d.path / "file" / "ckpt");
    REQUIRE(below.has_value());
    CHECK(below->find((d.path / "file").string() + " exists and is not a directory") !=
          std::string::npos);
    CHECK(checkpoint_dir_problem("").has_value());
}

TEST_CASE("snapshot: corruption, truncation, a missing manifest and a wrong version are clear errors") {
    TempDir d;
    auto mem = GuestMemory::flat(1 << 20);
    mem.write<uint8_t>(GuestAddress{0x3000}, 1);
    {
        SnapshotWriter w(d.path);
        w.add_memory(mem);
        w.add_value("sample", Sample{1, 2});
        w.finish({{"cpus", 1}});
    }
    SUBCASE("flipped byte in a section") {
        flip_byte(d.path / "sample.bin", 3);
        SnapshotReader r(d.path);
        CHECK_THROWS_WITH_AS(r.read("sample"), doctest::Contains("checksum mismatch"), SnapshotError);
    }
    SUBCASE("flipped byte in memory") {
        flip_byte(d.path / "memory.bin", 0x3000);
        SnapshotReader r(d.path);
        auto fresh = GuestMemory::flat(1 << 20);
        CHECK_THROWS_WITH_AS(r.read_memory(fresh), doctest::Contains("checksum"), SnapshotError);
    }
    SUBCASE("truncated section") {
        fs::resize_file(d.path / "sample.bin", 4);
        SnapshotReader r(d.path);
        CHECK_THROWS_WITH_AS(r.read("sample"), doctest::Contains("bytes"), SnapshotError);
    }
    SUBCASE("missing section file") {
        fs::remove(d.path / "sample.bin");
        SnapshotReader r(d.path);
        CHECK_THROWS_AS(r.read("sample"), SnapshotError);
        CHECK_THROWS_WITH_AS(r.read("nosuch"), doctest::Contains("no section"), SnapshotError);
    }
    SUBCASE("memory of another size") {
        SnapshotReader r(d.path);
        auto other = GuestMemory::flat(2 << 20);
        CHECK_THROWS_WITH_AS(r.read_memory(other), doctest::Contains("MiB"), SnapshotError);
    }
    SUBCASE("no manifest: an interrupted checkpoint") {
        fs::remove(d.path / "manifest.json");
        CHECK_THROWS_WITH_AS(SnapshotReader{d.path}, doctest::Contains("interrupted"), SnapshotError);
    }
    SUBCASE("garbage manifest") {
        std::ofstream(d.path / "manifest.json") << "{not json";
        CHECK_THROWS_WITH_AS(SnapshotReader{d.path}, doctest::Contains("corrupt"), SnapshotError);
    }
    SUBCASE("manifest fields of the wrong type, or missing") {
        const auto manifest = [&](const std::string& text) {
            std::ofstream(d.path / "manifest.json") << text;
        };
        const auto error = [&]() -> std::string {
            try {
                SnapshotReader r(d.path);
            } catch (const SnapshotError& e) {
                return e.what();
            }
            return "accepted";
        };
        const std::string m = (d.path / "manifest.json").string();
        manifest(R"({"magic":5})");
        CHECK(error() == m + " is not an ember snapshot manifest");
        manifest(R"([1, 2])");
        CHECK(error() == m + " is not an ember snapshot manifest");
        manifest(R"({"magic":"ember-snapshot","format_version":"1"})");
        CHECK(error() == m + " has no format_version number (corrupt)");
        manifest(R"({"magic":"ember-snapshot","format_version":1,"config":[],"sections":[]})");
        CHECK(error() == m + " lacks its config or section list");
        manifest(
            R"({"magic":"ember-snapshot","format_version":1,"config":{},"sections":[{"name":7}]})");
        CHECK(error() == m + ": section 0 has no string name (corrupt)");
        manifest(R"({"magic":"ember-snapshot","format_version":1,"config":{},"sections":[)"
                 R"({"name":"a","file":"a.bin","bytes":1,"crc32c":2},"b"]})");
        CHECK(error() == m + ": section 1 has no string name (corrupt)");
        manifest(R"({"magic":"ember-snapshot","format_version":1,"config":{},"sections":[)"
                 R"({"name":"a","file":"a.bin","bytes":-1,"crc32c":2}]})");
        CHECK(error() == m + ": section 0 has no unsigned number bytes (corrupt)");
        manifest(R"({"magic":"ember-snapshot","format_version":1,"config":{},"sections":[)"
                 R"({"name":"memory","file":"memory.bin","bytes":1,"crc32c":2}]})");
        CHECK(error() == m + ": section 0 has no unsigned number ram_bytes (corrupt)");
        // What the checks leave is a snapshot the readers can use.
        manifest(R"({"magic":"ember-snapshot","format_version":1,"config":{},"sections":[)"
                 R"({"name":"a","file":"a.bin","bytes":1,"crc32c":2}]})");
        CHECK(error() == "accepted");
    }
    SUBCASE("future format version") {
        std::ofstream(d.path / "manifest.json")
            << R"({"magic":"ember-snapshot","format_version":99,"config":{},"sections":[]})";
        CHECK_THROWS_WITH_AS(SnapshotReader{d.path}, doctest::Contains("version 99"), SnapshotError);
    }
}

// snapshot-info --compare: what a restore followed at once by a checkpoint
// may change (the e2e test restores paused and checkpoints again).
TEST_CASE("describe_snapshot: the configuration as saved; a field missing or of the wrong type is "
          "named") {
    TempDir d;
    auto mem = GuestMemory::flat(1 << 20);
    nlohmann::json config{
        {"kernel", "/k/vmlinuz"},
        {"cmdline", "console=ttyS0"},
        {"cpus", 2},
        {"mem_bytes", 256 << 20},
        {"vcpu_cpus", {1, 0}},
        {"disks",
         {{{"path", "/d/a.img"},
           {"id", "vda"},
           {"size", 4096},
           {"readonly", true},
           {"cache", "none"},
           {"engine", "uring"}},
          {{"path", "/d/b.img"},
           {"id", "vdb"},
           {"size", 512},
           {"readonly", false},
           {"cache", "writeback"},
           {"engine", "sync"},
           {"iothread_cpu", 1},
           {"rate_limit",
            {{"ops", {{"size", 500}, {"one_time_burst", 50}, {"refill_time", 1000}}},
             {"bandwidth", {{"size", 1048576}, {"one_time_burst", 0}, {"refill_time", 100}}}}}}}}};
    const auto write = [&](const nlohmann::json& c) {
        SnapshotWriter w(d.path);
        w.add_value("sample", Sample{1, 2});
        w.finish(c);
    };
    write(config);
    const auto text = describe_snapshot(SnapshotReader(d.path));
    CHECK(text.starts_with(fmt::format("snapshot {} (format 1)\n", d.path.string())));
    CHECK(text.find(
              "  kernel   /k/vmlinuz\n  cmdline  console=ttyS0\n  cpus     2, on host CPUs 1,0\n"
              "  memory   256 MiB\n") != std::string::npos);
    CHECK(text.find("  disk     id=vda /d/a.img (4096 bytes, read-only)\n") != std::string::npos);
    // Without a saved fill (checkpoints from before): full buckets.
    CHECK(text.find("  disk     id=vdb /d/b.img (512 bytes, I/O thread on host CPU 1, rate limit "
                    "1048576 bytes per 100 ms, 500 requests per 1000 ms (one-time burst 50); at "
                    "the checkpoint 1048576 of 1048576 bytes left, 500 of 500 requests left "
                    "(burst 50 left))\n") != std::string::npos);
    CHECK(text.find("  section  sample                     16 bytes  crc32c ") !=
          std::string::npos);
    const auto error = [&](const nlohmann::json& c) -> std::string {
        write(c);
        try {
            describe_snapshot(SnapshotReader(d.path));
        } catch (const SnapshotError& e) {
            return e.what();
        }
        return "described";
    };
    auto c = config;
    c.erase("cpus"); // printed as 0 before: a checkpoint that looked fine
    CHECK(error(c) == "snapshot configuration has no 'cpus' (corrupt)");
    c = config;
    c["vcpu_cpus"] = "1,0";
    CHECK(error(c) ==
          "snapshot configuration: 'vcpu_cpus' is the string \"1,0\", of the wrong type (corrupt)");
    c = config;
    c["disks"][1]["size"] = "512";
    CHECK(error(c) == "snapshot configuration, disk 1: 'size' is the string \"512\", of the wrong "
                      "type (corrupt)");
    // The initrd, when the guest booted with one; no line without.
    CHECK(text.find("  initrd") == std::string::npos);
    c = config;
    c["initrd"] = "/k/initrd.img";
    write(c);
    CHECK(
        describe_snapshot(SnapshotReader(d.path))
            .find("  kernel   /k/vmlinuz\n  initrd   /k/initrd.img\n  cmdline  console=ttyS0\n") !=
        std::string::npos);
    c["initrd"] = 7;
    CHECK(error(c) ==
          "snapshot configuration: 'initrd' is the number 7, of the wrong type (corrupt)");
    // Huge pages, when the VM had them.
    CHECK(text.find("huge pages") == std::string::npos);
    c = config;
    c["huge_pages"] = "2M";
    write(c);
    CHECK(describe_snapshot(SnapshotReader(d.path)).find(" MiB, 2 MiB huge pages\n") !=
          std::string::npos);
    // The entropy device, when the VM had one; no line without.
    CHECK(text.find("  entropy") == std::string::npos);
    c = config;
    c["entropy"] = true;
    write(c);
    CHECK(describe_snapshot(SnapshotReader(d.path))
              .find("  entropy  virtio-rng (host getrandom)\n") != std::string::npos);
    c["entropy"] = 1;
    CHECK(error(c) ==
          "snapshot configuration: 'entropy' is the number 1, of the wrong type (corrupt)");
    // Network devices, one line each; none without.
    CHECK(text.find("  net ") == std::string::npos);
    c = config;
    c["nets"] = {{{"id", "eth0"}, {"tap", "tap0"}, {"mac", "06:00:ac:10:00:02"}},
                 {{"id", "eth1"}, {"tap", "tap1"}}};
    write(c);
    CHECK(describe_snapshot(SnapshotReader(d.path))
              .find("  net      id=eth0 tap tap0 (MAC 06:00:ac:10:00:02)\n  net      id=eth1 tap "
                    "tap1 (MAC chosen by the guest)\n") != std::string::npos);
    c["nets"][0]["mac"] = "ff:ff:ff:ff:ff:ff";
    CHECK(error(c).find("snapshot configuration, network device 0: MAC address") == 0);
    c["nets"][0]["mac"] = "06:00:ac:10:00:02";
    c["nets"][1]["tap"] = "tap0";
    CHECK(error(c).find("two network devices use tap tap0") != std::string::npos);
    // A network device's rate limits, and what their buckets held.
    c["nets"][1]["tap"] = "tap1";
    c["nets"][0]["rx_rate_limit"] = {
        {"bandwidth", {{"size", 1048576}, {"one_time_burst", 0}, {"refill_time", 1000}}}};
    c["nets"][0]["tx_rate_limit"] = {
        {"ops", {{"size", 100}, {"one_time_burst", 0}, {"refill_time", 1000}}}};
    c["nets"][0]["tx_rate_limit_fill"] = {
        {"ops", {{"budget", -1}, {"one_time_burst", 0}, {"partial_token_ns", 0}}}};
    write(c);
    CHECK(describe_snapshot(SnapshotReader(d.path))
              .find("  net      id=eth0 tap tap0 (MAC 06:00:ac:10:00:02, receive rate limit "
                    "1048576 bytes per 1000 ms; at the checkpoint 1048576 of 1048576 bytes left, "
                    "transmit rate limit 100 frames per 1000 ms; at the checkpoint -1 of 100 "
                    "frames left)\n  net      id=eth1 tap tap1 (MAC chosen by the guest)\n") !=
          std::string::npos);
    c["nets"][0]["tx_rate_limit_fill"]["ops"]["budget"] = 101;
    CHECK(error(c) == "snapshot configuration, network device 0: 'tx_rate_limit_fill' does not "
                      "fit the transmit rate limit (100 frames per 1000 ms): ops bucket: its "
                      "budget 101 is more than its size 100 (corrupt)");
    c["nets"][0]["rx_rate_limit"] = "1M";
    CHECK(error(c) == "snapshot configuration, network device 0: 'rx_rate_limit' is not an object "
                      "(corrupt)");
    c["nets"] = "eth0";
    CHECK(error(c) == "snapshot configuration: 'nets' is not a list (corrupt)");
    // Described anywhere: no check of the disks' files or of this host's CPUs.
    c = config;
    c["vcpu_cpus"] = {99999, 99998};
    CHECK(error(c) == "described");
    // What the buckets held at the checkpoint.
    c = config;
    c["disks"][1]["rate_limit_fill"] = {
        {"bandwidth", {{"budget", -4096}, {"one_time_burst", 0}, {"partial_token_ns", 5}}},
        {"ops", {{"budget", 12}, {"one_time_burst", 0}, {"partial_token_ns", 0}}}};
    write(c);
    CHECK(describe_snapshot(SnapshotReader(d.path))
              .find("at the checkpoint -4096 of 1048576 bytes left, 12 of 500 requests left "
                    "(burst 0 left))\n") != std::string::npos);
    c["disks"][1]["rate_limit_fill"]["ops"]["budget"] = 501;
    CHECK(error(c) == "snapshot configuration, disk 1: 'rate_limit_fill' does not fit the disk's "
                      "rate limit (1048576 bytes per 100 ms, 500 requests per 1000 ms (one-time "
                      "burst 50)): ops bucket: its budget 501 is more than its size 500 (corrupt)");
}

TEST_CASE("compare_vcpu_state: the LAPIC timer count and PPR are derived; TPR and ISR are not") {
    auto a = std::make_unique<VcpuState>();
    std::memset(a.get(), 0, sizeof(VcpuState));
    auto set32 = [](VcpuState& s, size_t off, uint32_t v) { std::memcpy(s.lapic.regs + off, &v, 4); };
    set32(*a, 0x80, 0x10);        // TPR
    set32(*a, 0x170, 0x1000);     // ISR: vector 0xec in service
    set32(*a, 0xa0, 0xe0);        // PPR as KVM reports it while running
    set32(*a, 0x390, 12345);      // TMCCT
    auto b = std::make_unique<VcpuState>(*a);
    set32(*b, 0xa0, 0x10);        // PPR right after KVM_SET_LAPIC
    set32(*b, 0x390, 999);
    std::vector<std::string> out;
    compare_vcpu_state("vcpu0", *a, *b, out);
    CHECK(out.empty());
    set32(*b, 0x170, 0);          // nothing in service: a real difference
    compare_vcpu_state("vcpu0", *a, *b, out);
    REQUIRE(out.size() == 1);
    CHECK(out[0] == "vcpu0: lapic differs");
    out.clear();
    set32(*b, 0x170, 0x1000);
    set32(*b, 0x80, 0x20);        // TPR
    compare_vcpu_state("vcpu0", *a, *b, out);
    CHECK(out.size() == 1);
}
