// The Firecracker-shaped API paths against a fake VM: every endpoint, good
// and bad bodies, and requests in the wrong state.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <string>

#include "tests/support/fake_vm_controller.h"
#include "vmm/api/api_router.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/vm.h"

using namespace ember;
using namespace ember::api;
using ember::test::FakeVmController;
using ember::test::TempDir;

namespace {

struct Rig {
    TempDir tmp;
    FakeVmController vm;
    ApiRouter router{vm, VmConfig{}, InstanceInfo{"vm-7", "0.1.0"}};
    std::filesystem::path kernel = tmp.file("vmlinuz");
    std::filesystem::path initrd = tmp.file("initrd.img");
    std::filesystem::path disk = tmp.file("root.img", 1 << 20);
    std::filesystem::path data = tmp.file("data.img", 1 << 20);

    HttpResponse call(const std::string& method, const std::string& path,
                      const std::string& body = "") {
        return router.handle(HttpRequest{method, path, body, true});
    }
    // Expects 204 and no body.
    void ok(const std::string& method, const std::string& path, const std::string& body) {
        const auto r = call(method, path, body);
        CAPTURE(path);
        CAPTURE(body);
        CAPTURE(r.body);
        CHECK(r.status == 204);
        CHECK(r.body.empty());
    }
    // Expects `status` with a fault_message containing `text`.
    void fails(const std::string& method, const std::string& path, const std::string& body,
               int status, const std::string& text) {
        const auto r = call(method, path, body);
        CAPTURE(path);
        CAPTURE(body);
        CAPTURE(r.body);
        CHECK(r.status == status);
        const auto j = nlohmann::json::parse(r.body);
        REQUIRE(j.contains("fault_message"));
        CHECK(j["fault_message"].get<std::string>().find(text) != std::string::npos);
    }
    nlohmann::json get(const std::string& path) {
        const auto r = call("GET", path);
        CHECK(r.status == 200);
        return nlohmann::json::parse(r.body);
    }
    void boot_source() {
        ok("PUT", "/boot-source", nlohmann::json{{"kernel_image_path", kernel}}.dump());
    }
    void start() {
        boot_source();
        ok("PUT", "/actions", R"({"action_type": "InstanceStart"})");
    }
};

nlohmann::json drive(const std::string& id, const std::filesystem::path& path, bool root) {
    return {{"drive_id", id},
            {"path_on_host", path},
            {"is_root_device", root},
            {"is_read_only", false}};
}

} // namespace

TEST_CASE("API: GET / describes the instance") {
    Rig r;
    auto info = r.get("/");
    CHECK(info["id"] == "vm-7");
    CHECK(info["state"] == "Not started");
    CHECK(info["vmm_version"] == "0.1.0");
    CHECK(info["app_name"] == "ember");
    r.start();
    CHECK(r.get("/")["state"] == "Running");
    r.ok("PATCH", "/vm", R"({"state": "Paused"})");
    CHECK(r.get("/")["state"] == "Paused");
    r.router.vm_stopped();
    CHECK(r.get("/")["state"] == "Stopped");
    CHECK(r.get("/version")["firecracker_version"] == "0.1.0");
}

TEST_CASE("API: unknown paths are 404, wrong methods 405 with Allow") {
    Rig r;
    r.fails("GET", "/vsock/eth0", "", 404, "no such resource");
    r.fails("GET", "/network-interfaces/", "", 404, "no such resource");
    r.fails("GET", "/drives/", "", 404, "no such resource");
    r.fails("PUT", "/drives/a/b", "{}", 404, "no such resource");
    r.fails("POST", "/actions", "{}", 405, "method not allowed");
    r.fails("GET", "/vm", "", 405, "method not allowed");
    r.fails("DELETE", "/", "", 405, "method not allowed");
    CHECK(r.call("GET", "/actions").allow == "PUT");
    CHECK(r.call("DELETE", "/machine-config").allow == "GET, PUT, PATCH");
    CHECK(r.vm.calls.empty());
}

TEST_CASE("API: boot source, machine config and drives build the VmConfig InstanceStart uses") {
    Rig r;
    r.ok("PUT", "/boot-source",
         nlohmann::json{{"kernel_image_path", r.kernel},
                        {"initrd_path", r.initrd},
                        {"boot_args", "console=ttyS0 quiet"}}
             .dump());
    r.ok("PUT", "/machine-config",
         R"({"vcpu_count": 2, "mem_size_mib": 1024, "smt": false, "track_dirty_pages": false})");
    r.ok("PUT", "/drives/data", drive("data", r.data, false).dump());
    auto root = drive("rootfs", r.disk, true);
    root["is_read_only"] = true;
    root["cache_type"] = "Writeback";
    root["io_engine"] = "Sync";
    r.ok("PUT", "/drives/rootfs", root.dump());
    r.ok("PUT", "/actions", R"({"action_type": "InstanceStart"})");

    REQUIRE(r.vm.started);
    const VmConfig& c = *r.vm.started;
    CHECK_FALSE(c.entropy); // no PUT /entropy
    CHECK(c.kernel == r.kernel);
    CHECK(c.initrd == r.initrd);
    // The root device is /dev/vda, like Firecracker, read-only as asked.
    CHECK(c.cmdline == "console=ttyS0 quiet root=/dev/vda ro");
    CHECK(c.cpus == 2);
    CHECK(c.mem_bytes == (1024ULL << 20));
    REQUIRE(c.disks.size() == 2);
    CHECK(c.disks[0].id == "rootfs");
    CHECK(c.disks[0].path == r.disk.string());
    CHECK(c.disks[0].readonly);
    CHECK(c.disks[0].engine == DiskSpec::Engine::sync);
    CHECK(c.disks[0].cache == DiskSpec::Cache::writeback);
    CHECK(c.disks[1].id == "data");
    CHECK_FALSE(c.disks[1].readonly);
    CHECK(c.disks[1].engine == DiskSpec::Engine::uring);
    CHECK(r.vm.calls == std::vector<std::string>{"start"});
}

TEST_CASE("API: PUT /entropy adds the entropy device; it has no rate limiter") {
    Rig r;
    r.boot_source();
    CHECK_FALSE(r.get("/vm/config").contains("entropy"));
    r.fails("PUT", "/entropy",
            R"({"rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}}})", 400,
            "ember's entropy device has no rate_limiter");
    r.fails("PUT", "/entropy", R"({"rate": 1})", 400, "rate");
    r.fails("PUT", "/entropy", "[]", 400, "PUT /entropy");
    r.fails("GET", "/entropy", "", 405, "GET");
    r.ok("PUT", "/entropy", R"({"rate_limiter": null})");
    r.ok("PUT", "/entropy", "{}"); // again: still one device
    CHECK(r.get("/vm/config")["entropy"] == nlohmann::json::object());
    r.ok("PUT", "/actions", R"({"action_type": "InstanceStart"})");
    REQUIRE(r.vm.started);
    CHECK(r.vm.started->entropy);
    r.fails("PUT", "/entropy", "{}", 400, "cannot add the entropy device: the VM is running");
}

TEST_CASE("API: PUT /network-interfaces adds network devices") {
    Rig r;
    r.boot_source();
    CHECK_FALSE(r.get("/vm/config").contains("network-interfaces"));
    const char* eth0 =
        R"({"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:AC:10:00:02"})";
    r.fails("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth1", "host_dev_name": "tap0"})",
            400, "does not match 'eth0' in the path");
    r.fails("PUT", "/network-interfaces/eth0", R"({"iface_id": "eth0"})", 400, "host_dev_name");
    r.fails("PUT", "/network-interfaces/eth0",
            R"({"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "01:00:5e:00:00:01"})",
            400, "multicast");
    r.fails("PUT", "/network-interfaces/eth0",
            R"({"iface_id": "eth0", "host_dev_name": "a-tap-name-too-long"})", 400, "at most 15");
    r.fails("PUT", "/network-interfaces/eth0",
            R"({"iface_id": "eth0", "host_dev_name": "tap0", "speed": 1})", 400, "speed");
    r.fails("PUT", "/network-interfaces/e%20", R"({"iface_id": "e%20", "host_dev_name": "tap0"})",
            400, "only letters");
    r.fails("GET", "/network-interfaces/eth0", "", 405, "PUT, PATCH");
    r.fails("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0"})", 400,
            "there is no network interface 'eth0' to update");
    r.ok("PUT", "/network-interfaces/eth0", eth0);
    r.ok("PUT", "/network-interfaces/eth1",
         R"({"iface_id": "eth1", "host_dev_name": "tap1", "tx_rate_limiter": null})");
    // One tap per interface.
    r.fails("PUT", "/network-interfaces/eth2", R"({"iface_id": "eth2", "host_dev_name": "tap1"})",
            400, "use tap tap1");
    // A replacement that is refused leaves the interface as it was.
    r.fails("PUT", "/network-interfaces/eth1", R"({"iface_id": "eth1", "host_dev_name": "tap0"})",
            400, "use tap tap0");
    CHECK(r.get("/vm/config")["network-interfaces"][1]["host_dev_name"] == "tap1");
    r.ok("PUT", "/network-interfaces/eth1", R"({"iface_id": "eth1", "host_dev_name": "tap9"})");
    const auto nets = r.get("/vm/config")["network-interfaces"];
    REQUIRE(nets.size() == 2);
    CHECK(nets[0] == nlohmann::json{{"iface_id", "eth0"},
                                    {"host_dev_name", "tap0"},
                                    {"guest_mac", "06:00:ac:10:00:02"}});
    CHECK(nets[1] == nlohmann::json{{"iface_id", "eth1"}, {"host_dev_name", "tap9"}});
    r.ok("PUT", "/network-interfaces/eth2", R"({"iface_id": "eth2", "host_dev_name": "tap2"})");
    r.ok("PUT", "/network-interfaces/eth3", R"({"iface_id": "eth3", "host_dev_name": "tap3"})");
    r.fails("PUT", "/network-interfaces/eth4", R"({"iface_id": "eth4", "host_dev_name": "tap4"})",
            400, "at most 4");
    r.ok("PUT", "/actions", R"({"action_type": "InstanceStart"})");
    REQUIRE(r.vm.started);
    REQUIRE(r.vm.started->nets.size() == 4);
    CHECK(r.vm.started->nets[0].id == "eth0");
    CHECK(r.vm.started->nets[0].tap == "tap0");
    CHECK(format_mac(*r.vm.started->nets[0].mac) == "06:00:ac:10:00:02");
    CHECK_FALSE(r.vm.started->nets[1].mac);
    r.fails("PUT", "/network-interfaces/eth0", eth0, 400, "the VM is running");
}

namespace {
nlohmann::json interface_body(const std::string& id, const std::string& tap) {
    return {{"iface_id", id}, {"host_dev_name", tap}};
}
} // namespace

TEST_CASE("API: network interfaces: rx_rate_limiter and tx_rate_limiter reach the device") {
    Rig r;
    r.boot_source();
    auto limited = [](const char* key, nlohmann::json limiter) {
        auto j = interface_body("eth0", "tap0");
        j[key] = std::move(limiter);
        return j.dump();
    };
    // The drive's rate_limiter object, its errors named by the field.
    r.fails("PUT", "/network-interfaces/eth0", limited("rx_rate_limiter", 5), 400,
            "PUT /network-interfaces/eth0: rx_rate_limiter must be an object");
    r.fails("PUT", "/network-interfaces/eth0", limited("tx_rate_limiter", {{"ops", "many"}}), 400,
            "PUT /network-interfaces/eth0: tx_rate_limiter.ops must be an object");
    r.fails("PUT", "/network-interfaces/eth0",
            limited("rx_rate_limiter", {{"bandwidth", {{"size", 4096}}}}), 400,
            "rx_rate_limiter.bandwidth: missing required field 'refill_time'");
    r.fails("PUT", "/network-interfaces/eth0",
            limited("tx_rate_limiter", {{"ops", {{"size", -1}, {"refill_time", 100}}}}), 400,
            "'size'");
    r.fails("PUT", "/network-interfaces/eth0",
            limited("rx_rate_limiter", {{"frames", {{"size", 10}, {"refill_time", 100}}}}), 400,
            "unknown field 'frames'");
    CHECK_FALSE(r.get("/vm/config").contains("network-interfaces")); // nothing added
    auto eth0 = interface_body("eth0", "tap0");
    eth0["rx_rate_limiter"] = {
        {"bandwidth", {{"size", 1048576}, {"one_time_burst", 4096}, {"refill_time", 1000}}}};
    eth0["tx_rate_limiter"] = {{"ops", {{"size", 100}, {"refill_time", 1000}}}};
    r.ok("PUT", "/network-interfaces/eth0", eth0.dump());
    // As for drives: a bucket of size 0 or refill_time 0 limits nothing.
    auto eth1 = interface_body("eth1", "tap1");
    eth1["rx_rate_limiter"] = {{"bandwidth", {{"size", 0}, {"refill_time", 100}}}};
    r.ok("PUT", "/network-interfaces/eth1", eth1.dump());
    const auto nets = r.get("/vm/config")["network-interfaces"];
    CHECK(nets[0]["rx_rate_limiter"] ==
          nlohmann::json{
              {"bandwidth", {{"size", 1048576}, {"one_time_burst", 4096}, {"refill_time", 1000}}}});
    CHECK(nets[0]["tx_rate_limiter"] ==
          nlohmann::json{{"ops", {{"size", 100}, {"one_time_burst", 0}, {"refill_time", 1000}}}});
    CHECK(nets[1] == interface_body("eth1", "tap1"));
    r.ok("PUT", "/actions", R"({"action_type": "InstanceStart"})");
    REQUIRE(r.vm.started);
    REQUIRE(r.vm.started->nets.size() == 2);
    CHECK(r.vm.started->nets[0].rx_limit ==
          RateLimit{TokenBucketSpec{1048576, 4096, 1000}, std::nullopt});
    CHECK(r.vm.started->nets[0].tx_limit == RateLimit{std::nullopt, TokenBucketSpec{100, 0, 1000}});
    CHECK_FALSE(r.vm.started->nets[1].rx_limit.enabled());
    CHECK_FALSE(r.vm.started->nets[1].tx_limit.enabled());
}

TEST_CASE("API: PATCH /network-interfaces before the start changes the interface to be built") {
    Rig r;
    r.boot_source();
    auto eth0 = interface_body("eth0", "tap0");
    eth0["tx_rate_limiter"] = {{"ops", {{"size", 100}, {"refill_time", 1000}}}};
    r.ok("PUT", "/network-interfaces/eth0", eth0.dump());
    r.fails("PATCH", "/network-interfaces/eth1", interface_body("eth1", "tap1").dump(), 400,
            "host_dev_name cannot be changed with PATCH");
    r.fails("PATCH", "/network-interfaces/eth1", R"({"iface_id": "eth1"})", 400,
            "PATCH /network-interfaces/eth1: there is no network interface 'eth1' to update (add "
            "it with PUT /network-interfaces/eth1)");
    // A bucket left out is kept, a limiter left out (or null) too.
    r.ok("PATCH", "/network-interfaces/eth0",
         R"({"iface_id": "eth0", "rx_rate_limiter": {"ops": {"size": 5, "refill_time": 10}},
             "tx_rate_limiter": {"bandwidth": {"size": 4096, "refill_time": 100}}})");
    r.ok("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0", "rx_rate_limiter": null})");
    const auto net = r.get("/vm/config")["network-interfaces"][0];
    CHECK(net["rx_rate_limiter"]["ops"]["size"] == 5);
    CHECK(net["tx_rate_limiter"]["ops"]["size"] == 100);
    CHECK(net["tx_rate_limiter"]["bandwidth"]["size"] == 4096);
    r.ok("PATCH", "/network-interfaces/eth0",
         R"({"iface_id": "eth0", "rx_rate_limiter": {"ops": {"size": 0, "refill_time": 0}}})");
    CHECK_FALSE(r.get("/vm/config")["network-interfaces"][0].contains("rx_rate_limiter"));
    CHECK(r.vm.net_rate_limits.empty()); // no VM yet to ask
    r.ok("PUT", "/actions", R"({"action_type": "InstanceStart"})");
    REQUIRE(r.vm.started);
    CHECK_FALSE(r.vm.started->nets[0].rx_limit.enabled());
    CHECK(r.vm.started->nets[0].tx_limit ==
          RateLimit{TokenBucketSpec{4096, 0, 100}, TokenBucketSpec{100, 0, 1000}});
}

TEST_CASE("API: PATCH /network-interfaces changes a started VM's rate limits, bucket by bucket") {
    Rig r;
    r.boot_source();
    auto eth0 = interface_body("eth0", "tap0");
    eth0["rx_rate_limiter"] = {{"ops", {{"size", 500}, {"refill_time", 1000}}}};
    r.ok("PUT", "/network-interfaces/eth0", eth0.dump());
    r.ok("PUT", "/actions", R"({"action_type": "InstanceStart"})");
    const auto patch = [](const std::string& id, const char* key, nlohmann::json limiter) {
        return nlohmann::json{{"iface_id", id}, {key, std::move(limiter)}}.dump();
    };
    const nlohmann::json bw = {{"bandwidth", {{"size", 4096}, {"refill_time", 100}}}};
    using Call = FakeVmController::NetRateLimitCall;
    // The receive limit keeps its ops bucket; the transmit one is not asked about.
    r.ok("PATCH", "/network-interfaces/eth0", patch("eth0", "rx_rate_limiter", bw));
    const RateLimit both{TokenBucketSpec{4096, 0, 100}, TokenBucketSpec{500, 0, 1000}};
    REQUIRE(r.vm.net_rate_limits.size() == 1);
    CHECK(r.vm.net_rate_limits[0] == Call{"eth0", both, std::nullopt});
    CHECK(r.get("/vm/config")["network-interfaces"][0]["rx_rate_limiter"]["bandwidth"]["size"] ==
          4096);
    r.ok("PATCH", "/network-interfaces/eth0", patch("eth0", "tx_rate_limiter", bw));
    CHECK(r.vm.net_rate_limits.back() ==
          Call{"eth0", std::nullopt, RateLimit{both.bandwidth, std::nullopt}});
    CHECK(r.get("/vm/config")["network-interfaces"][0]["rx_rate_limiter"] ==
          Vm::rate_limit_to_json(both));
    // Only iface_id: nothing to change, the VM is not asked.
    r.ok("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0"})");
    CHECK(r.vm.net_rate_limits.size() == 2);
    r.fails("PATCH", "/network-interfaces/eth0",
            R"({"iface_id": "eth0", "guest_mac": "06:00:ac:10:00:09"})", 400,
            "guest_mac cannot be changed with PATCH, only rx_rate_limiter and tx_rate_limiter");
    r.fails("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth1"})", 400,
            "iface_id 'eth1' in the body does not match 'eth0' in the path");
    r.fails("PATCH", "/network-interfaces/eth0", R"({"rx_rate_limiter": {}})", 400, "iface_id");
    r.fails("PATCH", "/network-interfaces/eth0",
            patch("eth0", "tx_rate_limiter", {{"ops", {{"size", 10}}}}), 400,
            "PATCH /network-interfaces/eth0: tx_rate_limiter.ops: missing required field "
            "'refill_time'");
    r.fails("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0", "speed": 1})", 400,
            "unknown field 'speed'");
    r.fails("PATCH", "/network-interfaces/e%20", R"({"iface_id": "e%20"})", 400, "only letters");
    // An interface the router was not told about (a VM loaded from a
    // snapshot): whole limiters, or it could not keep what is left out.
    r.fails("PATCH", "/network-interfaces/loaded", patch("loaded", "rx_rate_limiter", bw), 400,
            "give both bandwidth and ops in each rate limiter");
    const nlohmann::json whole = {{"bandwidth", {{"size", 0}, {"refill_time", 0}}},
                                  {"ops", {{"size", 7}, {"refill_time", 10}}}};
    r.ok("PATCH", "/network-interfaces/loaded", patch("loaded", "tx_rate_limiter", whole));
    CHECK(r.vm.net_rate_limits.back() ==
          Call{"loaded", std::nullopt, RateLimit{std::nullopt, TokenBucketSpec{7, 0, 10}}});
    // What the VM refuses (no such device there) is a 400 with its message.
    r.vm.fail_with = "no network device has the id 'loaded' (the network devices: eth0)";
    r.fails("PATCH", "/network-interfaces/loaded", patch("loaded", "tx_rate_limiter", whole), 400,
            "no network device has the id 'loaded'");
    CHECK(r.vm.net_rate_limits.size() == 3);
}

TEST_CASE("API: PATCH /network-interfaces after the guest stopped is refused") {
    Rig r;
    r.boot_source();
    r.ok("PUT", "/network-interfaces/eth0", interface_body("eth0", "tap0").dump());
    r.ok("PUT", "/actions", R"({"action_type": "InstanceStart"})");
    r.router.vm_stopped();
    r.fails("PATCH", "/network-interfaces/eth0", R"({"iface_id": "eth0"})", 400,
            "cannot update network interface 'eth0'");
    CHECK(r.vm.net_rate_limits.empty());
}

TEST_CASE("API: defaults without machine-config, and PARTUUID roots") {
    Rig r;
    CHECK(r.get("/machine-config") == nlohmann::json{{"vcpu_count", 1},
                                                     {"mem_size_mib", 512},
                                                     {"smt", false},
                                                     {"track_dirty_pages", false},
                                                     {"huge_pages", "None"}});
    r.boot_source();
    auto root = drive("root", r.disk, true);
    root["partuuid"] = "0eaa91a0-01";
    r.ok("PUT", "/drives/root", root.dump());
    r.ok("PUT", "/actions", R"({"action_type": "InstanceStart"})");
    REQUIRE(r.vm.started);
    CHECK(r.vm.started->cmdline == std::string(kDefaultCmdline) + " root=PARTUUID=0eaa91a0-01 rw");
    CHECK(r.vm.started->cpus == 1);
    CHECK(r.vm.started->mem_bytes == kDefaultMemBytes);
}

TEST_CASE("API: PUT and PATCH /machine-config, GET reflects them") {
    Rig r;
    r.ok("PUT", "/machine-config", R"({"vcpu_count": 4, "mem_size_mib": 256})");
    CHECK(r.get("/machine-config")["vcpu_count"] == 4);
    r.ok("PATCH", "/machine-config", R"({"mem_size_mib": 2048})");
    auto m = r.get("/machine-config");
    CHECK(m["vcpu_count"] == 4);
    CHECK(m["mem_size_mib"] == 2048);
    // PUT needs both fields; PATCH none.
    r.fails("PUT", "/machine-config", R"({"vcpu_count": 2})", 400,
            "missing required field 'mem_size_mib'");
    r.ok("PATCH", "/machine-config", "{}");
    CHECK(r.get("/machine-config")["mem_size_mib"] == 2048);
    CHECK(r.get("/machine-config")["huge_pages"] == "None");
    // Firecracker's huge_pages "2M": kept by a PATCH that leaves it out, and
    // then a mem_size_mib that is not whole 2 MiB pages is refused.
    r.ok("PATCH", "/machine-config", R"({"huge_pages": "2M"})");
    CHECK(r.get("/machine-config")["huge_pages"] == "2M");
    r.fails("PATCH", "/machine-config", R"({"mem_size_mib": 2047})", 400, "multiple of 2");
    CHECK(r.get("/machine-config")["mem_size_mib"] == 2048);
    r.start();
    REQUIRE(r.vm.started);
    CHECK(r.vm.started->huge_pages == HugePages::two_mib);
    CHECK(r.vm.started->mem_bytes == 2048ULL << 20);
}

TEST_CASE("API: bad machine-config bodies") {
    Rig r;
    const char* cases[][2] = {
        {R"({"vcpu_count": 0, "mem_size_mib": 256})", "at least 1"},
        {R"({"vcpu_count": 255, "mem_size_mib": 256})", "more than the maximum 254"},
        {R"({"vcpu_count": -1, "mem_size_mib": 256})", "must not be negative"},
        {R"({"vcpu_count": 1.5, "mem_size_mib": 256})", "must be a whole number, not number"},
        {R"({"vcpu_count": "2", "mem_size_mib": 256})", "must be a whole number, not string"},
        {R"({"vcpu_count": 1, "mem_size_mib": 16})", "too small"},
        {R"({"vcpu_count": 1, "mem_size_mib": 99999999999999999})", "more than the maximum"},
        {R"({"vcpu_count": 1, "mem_size_mib": 256, "smt": true})", "smt true is not supported"},
        {R"({"vcpu_count": 1, "mem_size_mib": 256, "smt": "no"})", "'smt' must be true or false"},
        {R"({"vcpu_count": 1, "mem_size_mib": 256, "track_dirty_pages": true})",
         "track_dirty_pages true"},
        {R"({"vcpu_count": 1, "mem_size_mib": 256, "cpu_template": "T2"})",
         "cpu_template 'T2' is not supported"},
        {R"({"vcpu_count": 1, "mem_size_mib": 256, "huge_pages": "1G"})",
         "huge_pages '1G' is not supported: None or 2M"},
        {R"({"vcpu_count": 1, "mem_size_mib": 257, "huge_pages": "2M"})",
         "mem_size_mib 257 with huge_pages 2M: must be a multiple of 2"},
        {R"({"vcpu_count": 1, "mem_size_mib": 256, "vcpus": 2})", "unknown field 'vcpus'"},
        {R"({"vcpu_count": 1, "mem_size_mib": 256)", "malformed JSON"},
        {R"([1, 2])", "must be a JSON object, not array"},
        {"", "needs a JSON body"},
    };
    for (auto& [body, text] : cases)
        r.fails("PUT", "/machine-config", body, 400, text);
    // Nothing changed, and a null optional field counts as absent.
    CHECK(r.get("/machine-config")["vcpu_count"] == 1);
    r.ok("PUT", "/machine-config",
         R"({"vcpu_count": 3, "mem_size_mib": 64, "smt": null, "cpu_template": "None"})");
    CHECK(r.get("/machine-config")["vcpu_count"] == 3);
}

TEST_CASE("API: bad boot-source bodies") {
    Rig r;
    r.fails("PUT", "/boot-source", "{}", 400, "missing required field 'kernel_image_path'");
    r.fails("PUT", "/boot-source", R"({"kernel_image_path": 7})", 400,
            "must be a string, not number");
    r.fails("PUT", "/boot-source", R"({"kernel_image_path": "/nonexistent/vmlinuz"})", 400,
            "no such file");
    r.fails("PUT", "/boot-source", nlohmann::json{{"kernel_image_path", r.tmp.path()}}.dump(), 400,
            "is a directory");
    r.fails("PUT", "/boot-source",
            nlohmann::json{{"kernel_image_path", r.kernel}, {"initrd_path", "/nonexistent"}}.dump(),
            400, "initrd_path /nonexistent: no such file");
    r.fails("PUT", "/boot-source",
            nlohmann::json{{"kernel_image_path", r.kernel}, {"bootargs", "x"}}.dump(), 400,
            "unknown field 'bootargs'");
    r.fails("PUT", "/actions", R"({"action_type": "InstanceStart"})", 400,
            "PUT /boot-source first");
    CHECK(r.vm.calls.empty());
}

TEST_CASE("API: drives: bad bodies, updates, one root, at most eight") {
    Rig r;
    r.fails("PUT", "/drives/a", drive("b", r.disk, false).dump(), 400, "does not match 'a'");
    r.fails("PUT", "/drives/root", R"({"drive_id": "root", "path_on_host": "/x"})", 400,
            "missing required field 'is_root_device'");
    r.fails("PUT", "/drives/root", drive("root", "/nonexistent.img", true).dump(), 400,
            "no such file");
    r.fails("PUT", "/drives/this-id-is-far-too-long",
            drive("this-id-is-far-too-long", r.disk, false).dump(), 400, "1 to 20 characters");
    r.fails("PUT", "/drives/a%20b", drive("a%20b", r.disk, false).dump(), 400, "only letters");
    auto d = drive("root", r.disk, true);
    d["cache_type"] = "Bogus";
    r.fails("PUT", "/drives/root", d.dump(), 400, "cache_type 'Bogus'");
    d = drive("root", r.disk, true);
    d["io_engine"] = "Fast";
    r.fails("PUT", "/drives/root", d.dump(), 400, "io_engine 'Fast'");
    d = drive("root", r.disk, true);
    d["socket"] = "/tmp/vhost.sock";
    r.fails("PUT", "/drives/root", d.dump(), 400, "vhost-user");

    r.ok("PUT", "/drives/root", drive("root", r.disk, true).dump());
    r.fails("PUT", "/drives/other", drive("other", r.data, true).dump(), 400,
            "'root' is already the root device");
    // PUT on the same id replaces it: now not root, so another may be.
    r.ok("PUT", "/drives/root", drive("root", r.disk, false).dump());
    r.ok("PUT", "/drives/other", drive("other", r.data, true).dump());
    for (int i = 0; i < 6; ++i) {
        const auto id = "d" + std::to_string(i);
        r.ok("PUT", "/drives/" + id, drive(id, r.data, false).dump());
    }
    r.fails("PUT", "/drives/ninth", drive("ninth", r.data, false).dump(), 400, "at most 8 drives");
    r.ok("PUT", "/drives/d0", drive("d0", r.disk, false).dump()); // updating is still fine
    auto cfg = r.get("/vm/config");
    REQUIRE(cfg["drives"].size() == 8);
    CHECK(cfg["drives"][0]["drive_id"] == "root");
    CHECK(cfg["drives"][2]["path_on_host"] == r.disk.string());
    CHECK_FALSE(cfg.contains("boot-source"));
}

TEST_CASE("API: drives: rate_limiter, as Firecracker takes it, reaches the disk") {
    Rig r;
    r.boot_source();
    auto d = drive("root", r.disk, true);
    auto limited = [&](nlohmann::json limiter) {
        d["rate_limiter"] = std::move(limiter);
        return d.dump();
    };
    r.fails("PUT", "/drives/root", limited(5), 400,
            "PUT /drives/root: rate_limiter must be an object");
    r.fails("PUT", "/drives/root", limited({{"bandwidth", "fast"}}), 400,
            "rate_limiter.bandwidth must be an object");
    r.fails("PUT", "/drives/root", limited({{"bandwidth", {{"size", 4096}}}}), 400,
            "missing required field 'refill_time'");
    r.fails("PUT", "/drives/root", limited({{"ops", {{"size", -1}, {"refill_time", 100}}}}), 400,
            "'size'");
    r.fails("PUT", "/drives/root",
            limited({{"ops", {{"size", 10}, {"refill_time", 100}, {"rate", 1}}}}), 400,
            "unknown field 'rate'");
    r.fails("PUT", "/drives/root", limited({{"iops", {{"size", 10}, {"refill_time", 100}}}}), 400,
            "unknown field 'iops'");
    // Both buckets; the burst is optional.
    r.ok(
        "PUT", "/drives/root",
        limited({{"bandwidth", {{"size", 1048576}, {"one_time_burst", 4096}, {"refill_time", 100}}},
                 {"ops", {{"size", 500}, {"refill_time", 1000}}}}));
    const auto cfg = r.get("/vm/config");
    CHECK(cfg["drives"][0]["rate_limiter"] ==
          nlohmann::json{
              {"bandwidth", {{"size", 1048576}, {"one_time_burst", 4096}, {"refill_time", 100}}},
              {"ops", {{"size", 500}, {"one_time_burst", 0}, {"refill_time", 1000}}}});
    // As in Firecracker, a bucket of size 0 or refill_time 0 limits nothing.
    auto other = drive("other", r.data, false);
    other["rate_limiter"] = {{"bandwidth", {{"size", 0}, {"refill_time", 100}}},
                             {"ops", {{"size", 100}, {"refill_time", 0}}}};
    r.ok("PUT", "/drives/other", other.dump());
    r.ok("PUT", "/actions", R"({"action_type": "InstanceStart"})");
    REQUIRE(r.vm.started.has_value());
    REQUIRE(r.vm.started->disks.size() == 2);
    CHECK(r.vm.started->disks[0].rate_limit ==
          RateLimit{TokenBucketSpec{1048576, 4096, 100}, TokenBucketSpec{500, 0, 1000}});
    CHECK_FALSE(r.vm.started->disks[1].rate_limit.enabled());
    CHECK_FALSE(r.get("/vm/config")["drives"][1].contains("rate_limiter"));
}

TEST_CASE("API: PATCH /drives changes a started VM's rate limit, bucket by bucket") {
    Rig r;
    r.boot_source();
    auto d = drive("root", r.disk, true);
    d["rate_limiter"] = {{"ops", {{"size", 500}, {"refill_time", 1000}}}};
    r.ok("PUT", "/drives/root", d.dump());
    const auto patch = [](nlohmann::json limiter) {
        return nlohmann::json{{"drive_id", "root"}, {"rate_limiter", std::move(limiter)}}.dump();
    };
    const nlohmann::json bw = {{"bandwidth", {{"size", 4096}, {"refill_time", 100}}}};
    r.fails("PATCH", "/drives/root", patch(bw), 400,
            "cannot update drive 'root' (before InstanceStart: PUT /drives)");
    r.ok("PUT", "/actions", R"({"action_type": "InstanceStart"})");
    // A bucket left out is kept; one of size 0 is lifted.
    r.ok("PATCH", "/drives/root", patch(bw));
    const RateLimit both{TokenBucketSpec{4096, 0, 100}, TokenBucketSpec{500, 0, 1000}};
    REQUIRE(r.vm.rate_limits.size() == 1);
    CHECK(r.vm.rate_limits[0] == std::pair<std::string, RateLimit>{"root", both});
    CHECK(r.get("/vm/config")["drives"][0]["rate_limiter"]["bandwidth"]["size"] == 4096);
    r.ok("PATCH", "/drives/root", patch({{"ops", {{"size", 0}, {"refill_time", 0}}}}));
    CHECK(r.vm.rate_limits.back().second == RateLimit{both.bandwidth, std::nullopt});
    CHECK_FALSE(r.get("/vm/config")["drives"][0]["rate_limiter"].contains("ops"));
    // Only drive_id: nothing to change.
    r.ok("PATCH", "/drives/root", R"({"drive_id": "root"})");
    CHECK(r.vm.rate_limits.size() == 2);
    r.fails("PATCH", "/drives/root",
            nlohmann::json{{"drive_id", "root"}, {"path_on_host", r.data}}.dump(), 400,
            "cannot change the file of a running VM's drive");
    r.fails("PATCH", "/drives/root", R"({"drive_id": "other"})", 400, "does not match");
    r.fails("PATCH", "/drives/root", patch({{"ops", {{"size", 10}}}}), 400,
            "rate_limiter.ops: missing required field 'refill_time'");
    // A drive the router was not told about (a VM loaded from a snapshot):
    // both buckets, or it could not keep the one left out.
    r.fails("PATCH", "/drives/loaded",
            nlohmann::json{{"drive_id", "loaded"}, {"rate_limiter", bw}}.dump(), 400,
            "give both bandwidth and ops");
    r.ok("PATCH", "/drives/loaded",
         nlohmann::json{{"drive_id", "loaded"},
                        {"rate_limiter",
                         {{"bandwidth", {{"size", 0}, {"refill_time", 0}}},
                          {"ops", {{"size", 7}, {"refill_time", 10}}}}}}
             .dump());
    CHECK(r.vm.rate_limits.back() ==
          std::pair<std::string, RateLimit>{"loaded", {std::nullopt, TokenBucketSpec{7, 0, 10}}});
    // What the VM refuses (no such disk there) is a 400 with its message.
    r.vm.fail_with = "no disk has the id 'loaded' (the disks: root)";
    r.fails("PATCH", "/drives/loaded",
            nlohmann::json{{"drive_id", "loaded"},
                           {"rate_limiter",
                            {{"bandwidth", {{"size", 0}, {"refill_time", 0}}},
                             {"ops", {{"size", 0}, {"refill_time", 0}}}}}}
                .dump(),
            400, "no disk has the id 'loaded'");
}

TEST_CASE("API: actions") {
    Rig r;
    r.fails("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})", 400, "has not been started");
    r.fails("PUT", "/actions", R"({"action_type": "Reboot"})", 400, "is not one of InstanceStart");
    r.fails("PUT", "/actions", R"({"action_type": "InstanceStart", "x": 1})", 400,
            "unknown field 'x'");
    r.fails("PUT", "/actions", R"({})", 400, "missing required field 'action_type'");
    r.fails("PUT", "/actions", R"({"action_type": "FlushMetrics"})", 400,
            "metrics are not configured: PUT /metrics first");
    r.start();
    r.fails("PUT", "/actions", R"({"action_type": "InstanceStart"})", 400, "the VM is running");
    r.ok("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})");
    CHECK(r.vm.calls == std::vector<std::string>{"start", "ctrl-alt-del"});
    r.ok("PATCH", "/vm", R"({"state": "Paused"})");
    r.fails("PUT", "/actions", R"({"action_type": "SendCtrlAltDel"})", 400, "is paused");
}

TEST_CASE("API: a VM that fails to start stays configurable and can be started again") {
    Rig r;
    r.boot_source();
    r.vm.fail_with = "kernel: not a bzImage or ELF file";
    r.fails("PUT", "/actions", R"({"action_type": "InstanceStart"})", 400, "not a bzImage");
    CHECK(r.get("/")["state"] == "Not started");
    r.ok("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 128})");
    r.ok("PUT", "/actions", R"({"action_type": "InstanceStart"})");
    CHECK(r.get("/")["state"] == "Running");
}

TEST_CASE("API: nothing can be configured after InstanceStart") {
    Rig r;
    r.start();
    r.fails("PUT", "/boot-source", nlohmann::json{{"kernel_image_path", r.kernel}}.dump(), 400,
            "cannot change the boot source: the VM is running");
    r.fails("PUT", "/machine-config", R"({"vcpu_count": 2, "mem_size_mib": 128})", 400,
            "is running");
    r.fails("PATCH", "/machine-config", R"({"vcpu_count": 2})", 400, "is running");
    r.fails("PUT", "/drives/x", drive("x", r.disk, false).dump(), 400, "cannot change drives");
    CHECK(r.get("/machine-config")["vcpu_count"] == 1); // GET still works
}

TEST_CASE("API: pause and resume") {
    Rig r;
    r.fails("PATCH", "/vm", R"({"state": "Paused"})", 400, "has not been started");
    r.start();
    r.fails("PATCH", "/vm", R"({"state": "Resumed"})", 400,
            "cannot resume the VM: the VM is running");
    r.fails("PATCH", "/vm", R"({"state": "Stopped"})", 400, "is not one of Paused, Resumed");
    r.fails("PATCH", "/vm", R"({"state": true})", 400, "must be a string");
    r.ok("PATCH", "/vm", R"({"state": "Paused"})");
    r.fails("PATCH", "/vm", R"({"state": "Paused"})", 400, "cannot pause the VM: the VM is paused");
    r.ok("PATCH", "/vm", R"({"state": "Resumed"})");
    CHECK(r.vm.calls == std::vector<std::string>{"start", "pause", "resume"});
    // A pause the VM refuses leaves the state alone.
    r.vm.fail_with = "vcpu 1 did not park";
    r.fails("PATCH", "/vm", R"({"state": "Paused"})", 400, "did not park");
    CHECK(r.get("/")["state"] == "Running");
    r.router.vm_stopped();
    r.fails("PATCH", "/vm", R"({"state": "Paused"})", 400, "has stopped");
}

TEST_CASE("API: snapshot/create writes a checkpoint directory") {
    Rig r;
    const auto dir = r.tmp.path() / "ckpt";
    const auto body = nlohmann::json{
        {"snapshot_type", "Full"}, {"snapshot_path", dir}, {"mem_file_path", dir / "mem"}};
    r.fails("PUT", "/snapshot/create", body.dump(), 400,
            "cannot create a snapshot: the VM has not been started");
    r.start();
    r.ok("PUT", "/snapshot/create", body.dump()); // running: ember quiesces by itself
    CHECK(r.vm.checkpoint_dir == dir);
    r.ok("PATCH", "/vm", R"({"state": "Paused"})");
    r.ok("PUT", "/snapshot/create", nlohmann::json{{"snapshot_path", dir}}.dump());
    CHECK(r.vm.calls == std::vector<std::string>{"start", "checkpoint", "pause", "checkpoint"});
    r.fails("PUT", "/snapshot/create",
            nlohmann::json{{"snapshot_path", dir}, {"snapshot_type", "Diff"}}.dump(), 400,
            "snapshot_type 'Diff' is not supported");
    r.fails("PUT", "/snapshot/create", nlohmann::json{{"snapshot_path", r.disk}}.dump(), 400,
            "exists and is not a directory");
    r.fails("PUT", "/snapshot/create", R"({"mem_file_path": "/tmp/m"})", 400,
            "missing required field 'snapshot_path'");
    r.vm.fail_with = "checkpoint: No space left on device";
    r.fails("PUT", "/snapshot/create", nlohmann::json{{"snapshot_path", dir}}.dump(), 400,
            "No space left");
    CHECK(r.get("/")["state"] == "Paused");
}

TEST_CASE("API: snapshot/load restores into a fresh instance") {
    Rig r;
    const auto dir = r.tmp.path() / "ckpt";
    std::filesystem::create_directory(dir);
    SUBCASE("paused, with Firecracker's memory backend and ember's drive overrides") {
        const auto body = nlohmann::json{
            {"snapshot_path", dir},
            {"mem_backend", {{"backend_type", "File"}, {"backend_path", dir / "mem"}}},
            {"drive_overrides", {{{"drive_id", "rootfs"}, {"path_on_host", r.data}}}},
        };
        r.ok("PUT", "/snapshot/load", body.dump());
        REQUIRE(r.vm.restored);
        CHECK(r.vm.restored->dir == dir);
        CHECK(r.vm.restored->disk_overrides.at("rootfs") == r.data);
        CHECK(r.get("/")["state"] == "Paused");
        r.ok("PATCH", "/vm", R"({"state": "Resumed"})");
        CHECK(r.vm.calls == std::vector<std::string>{"restore", "resume"});
        r.fails("PUT", "/snapshot/load", nlohmann::json{{"snapshot_path", dir}}.dump(), 400,
                "is running");
    }
    SUBCASE("the loaded VM's configuration, from its manifest, for GET /vm/config and PATCH") {
        VmConfig saved;
        saved.kernel = r.kernel;
        saved.cmdline = "console=ttyS0 root=/dev/vda";
        saved.initrd = "/boot/initrd-that-may-be-gone.img"; // a load does not read it
        saved.cpus = 2;
        saved.mem_bytes = 256 << 20;
        DiskSpec disk;
        disk.path = r.disk.string();
        disk.id = "rootfs";
        disk.rate_limit.ops = TokenBucketSpec{500, 0, 1000};
        saved.disks = {disk};
        NetSpec net{"eth0", "tap0", std::nullopt};
        net.tx_limit.bandwidth = TokenBucketSpec{1 << 20, 0, 1000};
        saved.nets = {net};
        SnapshotWriter w(dir);
        w.add_value("sample", uint64_t{1});
        w.finish(ember::Vm::config_to_json(saved));
        r.ok("PUT", "/snapshot/load",
             nlohmann::json{
                 {"snapshot_path", dir},
                 {"drive_overrides", {{{"drive_id", "rootfs"}, {"path_on_host", r.data}}}}}
                 .dump());
        const auto cfg = r.get("/vm/config");
        CHECK(cfg["machine-config"]["vcpu_count"] == 2);
        CHECK(cfg["machine-config"]["mem_size_mib"] == 256);
        CHECK(cfg["boot-source"]["boot_args"] == "console=ttyS0 root=/dev/vda");
        CHECK(cfg["boot-source"]["initrd_path"] == "/boot/initrd-that-may-be-gone.img");
        REQUIRE(cfg["drives"].size() == 1);
        CHECK(cfg["drives"][0]["drive_id"] == "rootfs");
        CHECK(cfg["drives"][0]["path_on_host"] == r.data.string()); // the override
        CHECK(cfg["drives"][0]["rate_limiter"]["ops"]["size"] == 500);
        // So PATCH /drives keeps the bucket it leaves out, as for any drive.
        r.ok(
            "PATCH", "/drives/rootfs",
            R"({"drive_id": "rootfs", "rate_limiter": {"bandwidth": {"size": 4096, "refill_time": 10}}})");
        CHECK(r.vm.rate_limits.back().second ==
              RateLimit{TokenBucketSpec{4096, 0, 10}, TokenBucketSpec{500, 0, 1000}});
        // The same for a network interface's limits.
        CHECK(cfg["network-interfaces"][0]["tx_rate_limiter"]["bandwidth"]["size"] == 1 << 20);
        r.ok(
            "PATCH", "/network-interfaces/eth0",
            R"({"iface_id": "eth0", "tx_rate_limiter": {"ops": {"size": 10, "refill_time": 10}}})");
        CHECK(r.vm.net_rate_limits.back().tx ==
              RateLimit{TokenBucketSpec{1 << 20, 0, 1000}, TokenBucketSpec{10, 0, 10}});
    }
    SUBCASE("resume_vm") {
        r.ok("PUT", "/snapshot/load",
             nlohmann::json{{"snapshot_path", dir}, {"resume_vm", true}}.dump());
        CHECK(r.vm.calls == std::vector<std::string>{"restore", "resume"});
        CHECK(r.get("/")["state"] == "Running");
    }
    SUBCASE("not after configuring") {
        r.boot_source();
        r.fails("PUT", "/snapshot/load", nlohmann::json{{"snapshot_path", dir}}.dump(), 400,
                "fresh ember process");
        CHECK(r.vm.calls.empty());
    }
    SUBCASE("a failed restore leaves the instance not started") {
        r.vm.fail_with = "checkpoint: manifest CRC mismatch";
        r.fails("PUT", "/snapshot/load", nlohmann::json{{"snapshot_path", dir}}.dump(), 400,
                "CRC mismatch");
        CHECK(r.get("/")["state"] == "Not started");
    }
    SUBCASE("bad bodies") {
        const nlohmann::json cases[] = {
            {{"snapshot_path", r.tmp.path() / "missing"}},
            {{"snapshot_path", dir},
             {"mem_file_path", "/m"},
             {"mem_backend", {{"backend_type", "File"}, {"backend_path", "/m"}}}},
            {{"snapshot_path", dir},
             {"mem_backend", {{"backend_type", "Uffd"}, {"backend_path", "/uffd.sock"}}}},
            {{"snapshot_path", dir}, {"mem_backend", {{"backend_type", "File"}}}},
            {{"snapshot_path", dir}, {"mem_backend", "file"}},
            {{"snapshot_path", dir}, {"enable_diff_snapshots", true}},
            {{"snapshot_path", dir}, {"network_overrides", {{{"iface_id", "eth0"}}}}},
            {{"snapshot_path", dir},
             {"network_overrides",
              {{{"iface_id", "eth0"}, {"host_dev_name", "a-tap-name-too-long"}}}}},
            {{"snapshot_path", dir},
             {"network_overrides",
              {{{"iface_id", "eth0"}, {"host_dev_name", "t0"}},
               {{"iface_id", "eth0"}, {"host_dev_name", "t1"}}}}},
            {{"snapshot_path", dir}, {"network_overrides", "eth0"}},
            {{"snapshot_path", dir}, {"vsock_override", {{"uds_path", "/v"}}}},
            {{"snapshot_path", dir},
             {"drive_overrides", {{{"drive_id", "r"}, {"path_on_host", "/nonexistent"}}}}},
            {{"snapshot_path", dir},
             {"drive_overrides",
              {{{"drive_id", "r"}, {"path_on_host", r.disk}},
               {{"drive_id", "r"}, {"path_on_host", r.data}}}}},
            {{"snapshot_path", dir}, {"resume_vm", "yes"}},
            {{"snapshot_path", dir}, {"restore", true}},
        };
        const char* expected[] = {"is not a checkpoint directory",
                                  "not both",
                                  "'Uffd' is not supported",
                                  "'backend_path'",
                                  "must be an object",
                                  "enable_diff_snapshots true",
                                  "missing required field 'host_dev_name'",
                                  "network_overrides eth0: tap name",
                                  "names interface 'eth0' twice",
                                  "network_overrides must be an array",
                                  "no vsock",
                                  "no such file",
                                  "names drive 'r' twice",
                                  "must be true or false",
                                  "unknown field 'restore'"};
        for (size_t i = 0; i < std::size(cases); ++i)
            r.fails("PUT", "/snapshot/load", cases[i].dump(), 400, expected[i]);
        CHECK(r.vm.calls.empty());
        // An empty network_overrides list is harmless.
        r.ok("PUT", "/snapshot/load",
             nlohmann::json{{"snapshot_path", dir}, {"network_overrides", nlohmann::json::array()}}
                 .dump());
    }
    SUBCASE("network_overrides reach the restore") {
        r.ok("PUT", "/snapshot/load",
             nlohmann::json{
                 {"snapshot_path", dir},
                 {"network_overrides", {{{"iface_id", "eth0"}, {"host_dev_name", "tap7"}}}}}
                 .dump());
        REQUIRE(r.vm.restored);
        CHECK(r.vm.restored->net_overrides == std::map<std::string, std::string>{{"eth0", "tap7"}});
    }
}

TEST_CASE("API: attach_running serves a VM started from the command line") {
    Rig r;
    VmConfig c;
    c.kernel = r.kernel;
    c.cpus = 3;
    c.mem_bytes = 256ULL << 20;
    c.disks.push_back(
        DiskSpec{r.disk.string(), true, "vda", DiskSpec::Cache::none, DiskSpec::Engine::sync});
    r.router.attach_running(c);
    CHECK(r.get("/")["state"] == "Running");
    CHECK(r.get("/machine-config")["vcpu_count"] == 3);
    auto cfg = r.get("/vm/config");
    CHECK(cfg["boot-source"]["kernel_image_path"] == r.kernel.string());
    CHECK(cfg["drives"][0]["cache_type"] == "Direct");
    CHECK(cfg["drives"][0]["io_engine"] == "Sync");
    r.fails("PUT", "/actions", R"({"action_type": "InstanceStart"})", 400, "is running");
    r.ok("PATCH", "/vm", R"({"state": "Paused"})");
    CHECK(r.vm.calls == std::vector<std::string>{"pause"});
}
