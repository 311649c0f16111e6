// `ember --config-file`: Firecracker's JSON configuration file read through
// the control socket's request handling (vmm/api/config_file.h).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

#include "tests/support/fake_vm_controller.h"
#include "vmm/api/config_file.h"

using namespace ember;
using namespace ember::api;
using ember::test::TempDir;

namespace {

struct Files {
    TempDir tmp;
    std::filesystem::path kernel = tmp.file("vmlinux.bin");
    std::filesystem::path initrd = tmp.file("initrd.img");
    std::filesystem::path rootfs = tmp.file("rootfs.ext4", 1 << 20);
    std::filesystem::path data = tmp.file("data.img", 1 << 20);

    // Firecracker's getting-started configuration, nulls and all.
    nlohmann::json firecracker_example() const {
        return nlohmann::json::parse(R"({
  "boot-source": {
    "kernel_image_path": ")" + kernel.string() +
                                     R"(",
    "boot_args": "console=ttyS0 reboot=k panic=1 pci=off",
    "initrd_path": null
  },
  "drives": [
    {
      "drive_id": "rootfs",
      "partuuid": null,
      "is_root_device": true,
      "cache_type": "Unsafe",
      "is_read_only": false,
      "path_on_host": ")" + rootfs.string() +
                                     R"(",
      "io_engine": "Sync",
      "rate_limiter": null,
      "socket": null
    }
  ],
  "machine-config": {
    "vcpu_count": 2,
    "mem_size_mib": 1024,
    "smt": false,
    "track_dirty_pages": false,
    "huge_pages": "None"
  },
  "cpu-config": null,
  "balloon": null,
  "network-interfaces": [],
  "vsock": null,
  "logger": null,
  "metrics": null,
  "mmds-config": null,
  "entropy": null
})");
    }

    std::filesystem::path write(const nlohmann::json& j,
                                const std::string& name = "vm.json") const {
        return write_text(j.dump(2), name);
    }
    std::filesystem::path write_text(const std::string& text,
                                     const std::string& name = "vm.json") const {
        const auto p = tmp.path() / name;
        std::ofstream(p) << text;
        return p;
    }
    // The message read_config_file throws for `j`, or "accepted".
    std::string error(const nlohmann::json& j) const {
        try {
            read_config_file(write(j), VmConfig{});
        } catch (const ConfigFileError& e) {
            return e.what();
        }
        return "accepted";
    }
};

bool has(const std::string& text, const std::string& part) {
    CAPTURE(text);
    return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("config file: Firecracker's example configuration builds the VM it describes") {
    Files f;
    auto j = f.firecracker_example();
    j["drives"].push_back({{"drive_id", "data"},
                           {"path_on_host", f.data.string()},
                           {"is_root_device", false},
                           {"is_read_only", true},
                           {"rate_limiter", {{"ops", {{"size", 100}, {"refill_time", 1000}}}}}});
    const ConfigFile c = read_config_file(f.write(j), VmConfig{});
    CHECK(c.config.kernel == f.kernel);
    CHECK_FALSE(c.config.initrd.has_value());
    // The root device is /dev/vda and its root= is added, as PUT /drives does.
    CHECK(c.config.cmdline == "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw");
    CHECK(c.config.cpus == 2);
    CHECK(c.config.mem_bytes == uint64_t{1024} << 20);
    REQUIRE(c.config.disks.size() == 2);
    CHECK(c.config.disks[0].id == "rootfs");
    CHECK(c.config.disks[0].path == f.rootfs.string());
    CHECK(c.config.disks[0].engine == DiskSpec::Engine::sync);
    CHECK_FALSE(c.config.disks[0].readonly);
    CHECK(c.config.disks[1].id == "data");
    CHECK(c.config.disks[1].readonly);
    CHECK(c.config.disks[1].rate_limit == RateLimit{std::nullopt, TokenBucketSpec{100, 0, 1000}});
    CHECK_FALSE(c.logger.log_path.has_value());
    CHECK_FALSE(c.metrics_path.has_value());
    CHECK_FALSE(c.config.entropy); // "entropy": null
}

TEST_CASE("config file: \"entropy\" adds the entropy device, which has no rate limiter") {
    Files f;
    auto j = f.firecracker_example();
    j["entropy"] = nlohmann::json::object();
    CHECK(read_config_file(f.write(j), VmConfig{}).config.entropy);
    j["entropy"] = {{"rate_limiter", nullptr}};
    CHECK(read_config_file(f.write(j), VmConfig{}).config.entropy);
    const std::string file = (f.tmp.path() / "vm.json").string();
    j["entropy"] = {{"rate_limiter", {{"bandwidth", {{"size", 1000}, {"refill_time", 100}}}}}};
    CHECK(has(f.error(j), file + ": \"entropy\": PUT /entropy: ember's entropy device has no "
                                 "rate_limiter"));
    j["entropy"] = {{"rate_limitr", nullptr}};
    CHECK(has(f.error(j), "rate_limitr"));
    j["entropy"] = "yes";
    CHECK(has(f.error(j), file + ": \"entropy\": "));
}

TEST_CASE("config file: \"network-interfaces\" adds network devices in file order") {
    Files f;
    auto j = f.firecracker_example();
    CHECK(read_config_file(f.write(j), VmConfig{}).config.nets.empty()); // []
    j["network-interfaces"] = {{{"iface_id", "eth0"},
                                {"host_dev_name", "tap0"},
                                {"guest_mac", "06:00:AC:10:00:02"},
                                {"rx_rate_limiter", nullptr},
                                {"tx_rate_limiter", nullptr}},
                               {{"iface_id", "eth1"}, {"host_dev_name", "tap1"}}};
    const auto c = read_config_file(f.write(j), VmConfig{}).config;
    REQUIRE(c.nets.size() == 2);
    CHECK(c.nets[0].id == "eth0");
    CHECK(c.nets[0].tap == "tap0");
    REQUIRE(c.nets[0].mac);
    CHECK(format_mac(*c.nets[0].mac) == "06:00:ac:10:00:02");
    CHECK(c.nets[1].id == "eth1");
    CHECK_FALSE(c.nets[1].mac);
    j["network-interfaces"] = "eth0";
    CHECK(has(f.error(j), "\"network-interfaces\": expected a list, found a string"));
}

TEST_CASE("config file: a network interface's rx_rate_limiter and tx_rate_limiter, as PUT takes "
          "them") {
    Files f;
    auto j = f.firecracker_example();
    j["network-interfaces"] = {
        {{"iface_id", "eth0"},
         {"host_dev_name", "tap0"},
         {"rx_rate_limiter",
          {{"bandwidth", {{"size", 1048576}, {"one_time_burst", 65536}, {"refill_time", 1000}}}}},
         {"tx_rate_limiter", {{"ops", {{"size", 100}, {"refill_time", 1000}}}}}}};
    const auto c = read_config_file(f.write(j), VmConfig{}).config;
    REQUIRE(c.nets.size() == 1);
    CHECK(c.nets[0].rx_limit == RateLimit{TokenBucketSpec{1048576, 65536, 1000}, std::nullopt});
    CHECK(c.nets[0].tx_limit == RateLimit{std::nullopt, TokenBucketSpec{100, 0, 1000}});
    j["network-interfaces"][0]["tx_rate_limiter"] = {{"ops", {{"size", 100}}}};
    CHECK(has(f.error(j), "\"network-interfaces[0]\": PUT /network-interfaces/eth0: "
                          "tx_rate_limiter.ops: missing required field 'refill_time'"));
}

TEST_CASE("config file: only boot-source is needed; logger and metrics are handed back") {
    Files f;
    nlohmann::json j{
        {"boot-source",
         {{"kernel_image_path", f.kernel.string()}, {"initrd_path", f.initrd.string()}}},
        {"logger", {{"log_path", (f.tmp.path() / "vm.log").string()}, {"level", "debug"}}},
        {"metrics", {{"metrics_path", (f.tmp.path() / "m.json").string()}}}};
    const ConfigFile c = read_config_file(f.write(j), VmConfig{});
    CHECK(c.config.initrd == f.initrd);
    CHECK(c.config.cmdline == kDefaultCmdline); // no boot_args: ember's default
    CHECK(c.config.cpus == 1);
    CHECK(c.config.disks.empty());
    CHECK(c.logger.log_path == f.tmp.path() / "vm.log");
    CHECK(c.logger.level == log::Level::debug);
    CHECK(c.metrics_path == f.tmp.path() / "m.json");
    // Reading the file moved no log and created no metrics file: the
    // command does that, after checking --log-path and --metrics-path.
    CHECK_FALSE(std::filesystem::exists(f.tmp.path() / "m.json"));
    CHECK_FALSE(std::filesystem::exists(f.tmp.path() / "vm.log"));
}

TEST_CASE("config file: each problem names the file and the section") {
    Files f;
    const auto file = (f.tmp.path() / "vm.json").string();
    const auto good = f.firecracker_example();
    // The file itself.
    const auto missing = (f.tmp.path() / "none.json").string() + ": No such file or directory";
    CHECK_THROWS_WITH_AS(read_config_file(f.tmp.path() / "none.json", VmConfig{}), missing.c_str(),
                         ConfigFileError);
    const auto directory = f.tmp.path().string() + ": not a regular file";
    CHECK_THROWS_WITH_AS(read_config_file(f.tmp.path(), VmConfig{}), directory.c_str(),
                         ConfigFileError);
    CHECK_THROWS_AS(read_config_file(f.write_text("{\"boot-source\": "), VmConfig{}),
                    ConfigFileError);
    try {
        read_config_file(f.write_text("{\"boot-source\": "), VmConfig{});
    } catch (const ConfigFileError& e) {
        CHECK(has(e.what(), file + ": not JSON: "));
        CHECK(has(e.what(), "line 1"));
    }
    CHECK(f.error(nlohmann::json::array()) ==
          file + ": expected a JSON object of sections (\"boot-source\", \"machine-config\", "
                 "\"drives\", ...), found an array");
    CHECK(f.error(nlohmann::json::object()) ==
          file + ": no \"boot-source\": a VM needs at least its kernel_image_path");
    // Sections: the control socket's own messages, after file and section.
    auto j = good;
    j["boot-source"]["kernel_image_path"] = "/nonexistent/vmlinux";
    CHECK(has(f.error(j), file + ": \"boot-source\": PUT /boot-source: kernel_image_path "
                                 "/nonexistent/vmlinux"));
    j = good;
    j["machine-config"]["vcpu_count"] = 0;
    CHECK(has(f.error(j), file + ": \"machine-config\": "));
    j = good;
    j["machine-config"]["smt"] = true;
    CHECK(has(f.error(j), "ember gives each vcpu its own core"));
    j = good;
    j["drives"][0]["path_on_host"] = "/nonexistent/disk";
    CHECK(has(f.error(j),
              file + ": \"drives[0]\": PUT /drives/rootfs: path_on_host /nonexistent/disk"));
    j = good;
    j["drives"][0]["cache_typ"] = "Unsafe"; // a typo is not ignored
    CHECK(has(f.error(j), "cache_typ"));
    j = good;
    j["drives"] = {{{"path_on_host", f.data.string()}}};
    CHECK(f.error(j) == file + ": \"drives[0]\": every drive needs a \"drive_id\" string");
    j["drives"] = {{{"drive_id", "a/b"}}};
    CHECK(has(f.error(j), file + ": \"drives[0]\": drive id 'a/b': only letters"));
    j = good;
    j["drives"].push_back(good["drives"][0]);
    CHECK(f.error(j) == file + ": \"drives[1]\": drive_id 'rootfs' is given twice");
    j = good;
    j["drives"] = "rootfs";
    CHECK(f.error(j) == file + ": \"drives\": expected a list, found a string");
    // Devices ember does not have: fine when they configure nothing.
    j = good;
    j["network-interfaces"] = {
        {{"iface_id", "eth0"}, {"host_dev_name", "tap0"}, {"guest_mac", "x"}}};
    CHECK(has(f.error(j), file + ": \"network-interfaces[0]\": PUT /network-interfaces/eth0: MAC "
                                 "address \"x\""));
    j["network-interfaces"] = {{{"host_dev_name", "tap0"}}};
    CHECK(f.error(j) ==
          file + ": \"network-interfaces[0]\": every interface needs an \"iface_id\" string");
    j["network-interfaces"] = {{{"iface_id", "eth0"}, {"host_dev_name", "tap0"}},
                               {{"iface_id", "eth0"}, {"host_dev_name", "tap1"}}};
    CHECK(f.error(j) == file + ": \"network-interfaces[1]\": iface_id 'eth0' is given twice");
    j = good;
    j["vsock"] = {{"guest_cid", 3}, {"uds_path", "/tmp/v.sock"}};
    CHECK(f.error(j) == file + ": \"vsock\": ember has no vsock device (null or [] is accepted)");
    j = good;
    j["drivez"] = nlohmann::json::array();
    CHECK(f.error(j) == file + ": \"drivez\": not a section ember knows (boot-source, "
                               "machine-config, drives, network-interfaces, entropy, logger, "
                               "metrics)");
    j = good;
    j["logger"] = {{"level", "Loud"}};
    CHECK(has(f.error(j), file + ": \"logger\": "));
    j = good;
    j["metrics"] = {{"path", "/tmp/m"}};
    CHECK(has(f.error(j), file + ": \"metrics\": "));
}
