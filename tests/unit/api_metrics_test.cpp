// Metrics (vmm/api/metrics_file.h): the JSON line, the file or named pipe it
// goes to, and PUT /metrics and FlushMetrics against a fake VM.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/fake_vm_controller.h"
#include "vmm/api/api_router.h"
#include "vmm/api/metrics_file.h"

using namespace ember;
using namespace ember::api;
using ember::test::FakeVmController;
using ember::test::TempDir;

namespace {

std::vector<nlohmann::json> read_lines(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::vector<nlohmann::json> out;
    for (std::string line; std::getline(in, line);)
        out.push_back(nlohmann::json::parse(line));
    return out;
}

embed::Metrics sample() {
    embed::Metrics m;
    m.state = embed::State::paused;
    m.vcpus = {{100, 60, 30}, {7, 1, 2}};
    embed::DiskMetrics d;
    d.id = "root";
    d.path = "/images/root.img";
    d.requests = 21;
    d.reads = 10;
    d.writes = 5;
    d.flushes = 2;
    d.discards = 1;
    d.write_zeroes = 1;
    d.bytes_read = 40960;
    d.bytes_written = 20480;
    d.bad_requests = 1;
    d.host_errors = 1;
    d.interrupts = 9;
    d.throttled = 4;
    embed::DiskMetrics data;
    data.id = "data";
    data.path = "/images/data.img";
    data.requests = 3;
    data.writes = 3;
    data.bytes_written = 1536;
    data.interrupts = 2;
    m.disks = {d, data};
    m.entropy = embed::EntropyMetrics{
        .requests = 12, .bytes = 768, .bad_requests = 1, .host_errors = 2, .interrupts = 11};
    return m;
}

} // namespace

TEST_CASE("metrics line: every counter under its name") {
    const auto when =
        std::chrono::system_clock::time_point(std::chrono::milliseconds(1764000000123));
    const auto j = metrics_json(sample(), when);
    CHECK(j["utc_timestamp_ms"] == 1764000000123);
    CHECK(j["vm"]["state"] == "paused");
    REQUIRE(j["vcpus"].size() == 2);
    CHECK(j["vcpus"][0] == nlohmann::json{{"exits", 100}, {"pio_exits", 60}, {"mmio_exits", 30}});
    CHECK(j["vcpus"][1]["exits"] == 7);
    REQUIRE(j["disks"].size() == 2);
    CHECK(j["disks"][0] == nlohmann::json{{"id", "root"},
                                          {"path", "/images/root.img"},
                                          {"requests", 21},
                                          {"reads", 10},
                                          {"writes", 5},
                                          {"flushes", 2},
                                          {"discards", 1},
                                          {"write_zeroes", 1},
                                          {"bytes_read", 40960},
                                          {"bytes_written", 20480},
                                          {"bad_requests", 1},
                                          {"host_errors", 1},
                                          {"interrupts", 9},
                                          {"throttled", 4}});
}

// The e2e tier reads these lines with shell tools (tests/e2e/lib.sh
// metrics_field, tested on this recorded line by e2e-lib): the line must stay
// exactly what they were written for.
TEST_CASE("metrics line: byte for byte the one the e2e tier's parser is tested on") {
    const char* dir = std::getenv("EMBER_E2E_TESTDATA");
    REQUIRE_MESSAGE(dir != nullptr, "EMBER_E2E_TESTDATA is not set (meson test sets it)");
    std::ifstream in(std::filesystem::path(dir) / "metrics-line.jsonl");
    std::string recorded;
    REQUIRE(std::getline(in, recorded));
    const auto when =
        std::chrono::system_clock::time_point(std::chrono::milliseconds(1764000000123));
    CHECK(metrics_json(sample(), when).dump() == recorded);
}

TEST_CASE("metrics line before a VM exists") {
    const auto j = metrics_json(std::nullopt, std::chrono::system_clock::time_point{});
    CHECK(j["vm"]["state"] == "not started");
    CHECK(j["vcpus"] == nlohmann::json::array());
    CHECK(j["disks"] == nlohmann::json::array());
    CHECK(j["utc_timestamp_ms"] == 0);
    CHECK_FALSE(j.contains("entropy"));
}

TEST_CASE("metrics line: the entropy device's counters, only for a VM that has one") {
    auto m = sample();
    CHECK(metrics_json(m, std::chrono::system_clock::time_point{})["entropy"] ==
          nlohmann::json{{"requests", 12},
                         {"bytes", 768},
                         {"bad_requests", 1},
                         {"host_errors", 2},
                         {"interrupts", 11}});
    m.entropy.reset();
    CHECK_FALSE(metrics_json(m, std::chrono::system_clock::time_point{}).contains("entropy"));
}

TEST_CASE("metrics line: each network device's counters under its id, only when there are some") {
    auto m = sample();
    CHECK_FALSE(metrics_json(m, std::chrono::system_clock::time_point{}).contains("net"));
    m.nets.push_back(embed::NetMetrics{.id = "eth0",
                                       .tap = "tap0",
                                       .rx_frames = 1,
                                       .rx_bytes = 2,
                                       .rx_dropped = 3,
                                       .tx_frames = 4,
                                       .tx_bytes = 5,
                                       .tx_errors = 6,
                                       .bad_requests = 7,
                                       .interrupts = 8,
                                       .rx_throttled = 9,
                                       .tx_throttled = 10});
    CHECK(metrics_json(m, std::chrono::system_clock::time_point{})["net"] ==
          nlohmann::json{{"eth0",
                          {{"tap", "tap0"},
                           {"rx_frames", 1},
                           {"rx_bytes", 2},
                           {"rx_dropped", 3},
                           {"tx_frames", 4},
                           {"tx_bytes", 5},
                           {"tx_errors", 6},
                           {"bad_requests", 7},
                           {"interrupts", 8},
                           {"rx_throttled", 9},
                           {"tx_throttled", 10}}}});
}

TEST_CASE("metrics file: created, then appended one line at a time") {
    TempDir tmp;
    const auto path = tmp.path() / "metrics.json";
    {
        MetricsFile f(path);
        CHECK(f.write({{"n", 1}}));
        CHECK(f.write({{"n", 2}}));
    }
    {
        MetricsFile again(path); // appends, never truncates
        CHECK(again.write({{"n", 3}}));
    }
    const auto lines = read_lines(path);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0]["n"] == 1);
    CHECK(lines[2]["n"] == 3);
}

TEST_CASE("metrics file: a path that cannot be written is an error naming it") {
    TempDir tmp;
    CHECK_THROWS_WITH_AS(MetricsFile(tmp.path()),
                         doctest::Contains((tmp.path().string() + ": cannot be opened for writing: "
                                                                  "Is a directory")
                                               .c_str()),
                         Error);
    CHECK_THROWS_WITH_AS(MetricsFile(tmp.path() / "missing" / "m.json"),
                         doctest::Contains("No such file or directory"), Error);
}

TEST_CASE("metrics file: a named pipe nobody reads costs lines, never a blocked writer") {
    TempDir tmp;
    const auto fifo = tmp.path() / "metrics.fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    MetricsFile f(fifo); // no reader: opening must not block or fail
    const nlohmann::json line = {{"pad", std::string(1000, 'x')}};
    int written = 0;
    // A pipe holds 64 KiB by default: the writes stop succeeding long before
    // 1000 lines, and each failed one returns instead of waiting.
    while (written < 1000 && f.write(line))
        ++written;
    CHECK(written > 0);
    CHECK(written < 1000);
    CHECK_FALSE(f.write(line));
    CHECK(f.lines_lost() == 2);
}

TEST_CASE("metrics file: after a line cut short in a full pipe, the next starts on a new line") {
    TempDir tmp;
    const auto fifo = tmp.path() / "metrics.fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    MetricsFile f(fifo);
    const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    REQUIRE(reader >= 0);
    // One page of pipe: a line longer than that (and than PIPE_BUF, so not
    // written atomically) goes in partly, and nobody reads the rest.
    REQUIRE(::fcntl(reader, F_SETPIPE_SZ, 4096) == 4096);
    CHECK_FALSE(f.write({{"pad", std::string(6000, 'x')}}));
    CHECK(f.lines_lost() == 1);
    std::string got(8192, '\0');
    const ssize_t first = ::read(reader, got.data(), got.size());
    CHECK(first == 4096);
    CHECK(f.write({{"n", 2}}));
    const ssize_t second = ::read(reader, got.data(), got.size());
    CHECK(std::string(got.data(), static_cast<size_t>(std::max<ssize_t>(second, 0))) ==
          "\n{\"n\":2}\n");
    CHECK(f.write({{"n", 3}})); // and then no extra newline
    const ssize_t third = ::read(reader, got.data(), got.size());
    CHECK(std::string(got.data(), static_cast<size_t>(std::max<ssize_t>(third, 0))) ==
          "{\"n\":3}\n");
    ::close(reader);
}

TEST_CASE("metrics file: a reader of the named pipe gets whole lines") {
    TempDir tmp;
    const auto fifo = tmp.path() / "metrics.fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    MetricsFile f(fifo);
    std::ifstream reader(fifo); // opens: the writer holds the pipe open
    REQUIRE(f.write(metrics_json(sample(), std::chrono::system_clock::now())));
    std::string line;
    REQUIRE(std::getline(reader, line));
    CHECK(nlohmann::json::parse(line)["disks"][0]["bytes_read"] == 40960);
}

namespace {

struct Rig {
    TempDir tmp;
    FakeVmController vm;
    ApiRouter router{vm, VmConfig{}, InstanceInfo{"vm-7", "0.1.0"}};

    HttpResponse call(const std::string& method, const std::string& path,
                      const std::string& body = "") {
        return router.handle(HttpRequest{method, path, body, true});
    }
    std::string fault(const HttpResponse& r) {
        return nlohmann::json::parse(r.body).value("fault_message", "");
    }
};

} // namespace

TEST_CASE("PUT /metrics and FlushMetrics") {
    Rig r;
    const auto path = r.tmp.path() / "m.json";
    const std::string put = nlohmann::json{{"metrics_path", path}}.dump();
    const std::string flush = R"({"action_type": "FlushMetrics"})";

    SUBCASE("bad bodies are refused, and nothing is created") {
        CHECK_FALSE(nlohmann::json::parse(r.call("GET", "/vm/config").body).contains("metrics"));
        auto res = r.call("PUT", "/metrics", "{}");
        CHECK(res.status == 400);
        CHECK(r.fault(res).find("missing required field 'metrics_path'") != std::string::npos);
        res = r.call("PUT", "/metrics", R"({"metrics_path": ""})");
        CHECK(r.fault(res).find("metrics_path is empty") != std::string::npos);
        res = r.call("PUT", "/metrics", R"({"metrics_path": 3})");
        CHECK(res.status == 400);
        res =
            r.call("PUT", "/metrics", nlohmann::json{{"metrics_path", path}, {"period", 5}}.dump());
        CHECK(r.fault(res).find("unknown field 'period'") != std::string::npos);
        res = r.call("PUT", "/metrics",
                     nlohmann::json{{"metrics_path", r.tmp.path() / "no" / "m.json"}}.dump());
        CHECK(res.status == 400);
        CHECK(r.fault(res).find("PUT /metrics: metrics file ") != std::string::npos);
        CHECK_FALSE(std::filesystem::exists(path));
        res = r.call("GET", "/metrics");
        CHECK(res.status == 405);
        CHECK(res.allow == "PUT");
    }

    SUBCASE("flush writes a line of the VM's counters, or of no VM yet") {
        auto res = r.call("PUT", "/actions", flush);
        CHECK(res.status == 400);
        CHECK(r.fault(res).find("PUT /metrics first") != std::string::npos);
        r.router.write_metrics(); // not configured: nothing, no error
        CHECK(r.call("PUT", "/metrics", put).status == 204);
        CHECK(r.call("PUT", "/actions", flush).status == 204); // before InstanceStart
        r.vm.vm_metrics = sample();
        CHECK(r.call("PUT", "/actions", flush).status == 204);
        r.router.write_metrics(); // what the 60 s timer does
        const auto lines = read_lines(path);
        REQUIRE(lines.size() == 3);
        CHECK(lines[0]["vm"]["state"] == "not started");
        CHECK(lines[1]["disks"][0]["writes"] == 5);
        CHECK(lines[2]["vcpus"][0]["mmio_exits"] == 30);
        CHECK(r.vm.calls.empty()); // reading metrics asks nothing of the VM
        const auto cfg = nlohmann::json::parse(r.call("GET", "/vm/config").body);
        CHECK(cfg["metrics"] == nlohmann::json{{"metrics_path", path.string()}});
    }

    SUBCASE("once per process, as in Firecracker") {
        CHECK(r.call("PUT", "/metrics", put).status == 204);
        const auto res =
            r.call("PUT", "/metrics",
                   nlohmann::json{{"metrics_path", r.tmp.path() / "other.json"}}.dump());
        CHECK(res.status == 400);
        CHECK(r.fault(res).find("metrics already go to " + path.string()) != std::string::npos);
        CHECK_FALSE(std::filesystem::exists(r.tmp.path() / "other.json"));
        CHECK_THROWS_WITH_AS(r.router.set_metrics(MetricsFile(r.tmp.path() / "third.json")),
                             doctest::Contains("--metrics-path: metrics already go to"), Error);
    }
}
