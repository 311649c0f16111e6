// PUT /logger: ember's log moved to a file or named pipe, and its level,
// against a fake VM. The log is process-wide: each test puts it back on
// stderr at info level.
#include <doctest/doctest.h>

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/support/fake_vm_controller.h"
#include "vmm/api/api_router.h"
#include "vmm/api/output_file.h"
#include "vmm/api/request_bodies.h"
#include "vmm/log.h"

using namespace ember;
using namespace ember::api;
using ember::test::FakeVmController;
using ember::test::TempDir;

namespace {

std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// Back to stderr and info whatever the test did.
struct LogRestore {
    ~LogRestore() {
        log::set_output(STDERR_FILENO, "");
        log::set_level(log::Level::info);
    }
};

struct Rig {
    LogRestore restore;
    TempDir tmp;
    FakeVmController vm;
    ApiRouter router{vm, VmConfig{}, InstanceInfo{"vm-7", "0.1.0"}};

    HttpResponse put(const std::string& body) {
        return router.handle(HttpRequest{"PUT", "/logger", body, true});
    }
    static std::string fault(const HttpResponse& r) {
        return nlohmann::json::parse(r.body).value("fault_message", "");
    }
};

} // namespace

TEST_CASE("GET /vm/config has no logger while the log is on stderr") {
    Rig r;
    const auto cfg = r.router.handle(HttpRequest{"GET", "/vm/config", "", true});
    CHECK_FALSE(nlohmann::json::parse(cfg.body).contains("logger"));
}

TEST_CASE("PUT /logger bodies: Firecracker's levels in any case, nothing ember cannot do") {
    CHECK(parse_logger_config(R"({"level": "Error"})").level == log::Level::error);
    CHECK(parse_logger_config(R"({"level": "warning"})").level == log::Level::warn);
    CHECK(parse_logger_config(R"({"level": "WARN"})").level == log::Level::warn);
    CHECK(parse_logger_config(R"({"level": "Info"})").level == log::Level::info);
    CHECK(parse_logger_config(R"({"level": "Debug"})").level == log::Level::debug);
    CHECK(parse_logger_config(R"({"level": "Trace"})").level == log::Level::debug);
    CHECK(parse_logger_config(R"({"level": "Off"})").level == log::Level::off);
    const auto full = parse_logger_config(
        R"({"log_path": "/tmp/fc.log", "level": "Info", "show_level": true, "show_log_origin": false, "module": ""})");
    CHECK(full.log_path == std::filesystem::path("/tmp/fc.log"));
    CHECK_FALSE(parse_logger_config("{}").log_path);
    CHECK_FALSE(parse_logger_config("{}").level);
    CHECK_THROWS_WITH_AS(parse_logger_config(R"({"level": "Loud"})"),
                         doctest::Contains("level 'Loud' is not one of Error, Warning, Info, "
                                           "Debug, Trace, Off"),
                         Error);
    CHECK_THROWS_WITH_AS(parse_logger_config(R"({"module": "api_server"})"),
                         doctest::Contains("module 'api_server' is not supported"), Error);
    CHECK_THROWS_WITH_AS(parse_logger_config(R"({"log_path": ""})"),
                         doctest::Contains("log_path is empty"), Error);
    CHECK_THROWS_WITH_AS(parse_logger_config(R"({"show_level": "yes"})"),
                         doctest::Contains("show_level"), Error);
    CHECK_THROWS_WITH_AS(parse_logger_config(R"({"log_file": "/tmp/x"})"),
                         doctest::Contains("unknown field 'log_file'"), Error);
}

TEST_CASE("PUT /logger moves the log to a file, and sets the level") {
    Rig r;
    const auto path = r.tmp.path() / "ember.log";
    CHECK(r.put(nlohmann::json{{"log_path", path}, {"level", "Debug"}}.dump()).status == 204);
    log::debug("a debug line");
    log::warn("a warning");
    const auto text = slurp(path);
    // Said on the old output (stderr), where a reader would look for it.
    CHECK(text.find("log continues in") == std::string::npos);
    CHECK(text.find("ember: debug: a debug line\n") != std::string::npos);
    CHECK(text.find("ember: warning: a warning\n") != std::string::npos);
    // The router logs each request after answering it: this one too.
    CHECK(text.find("ember: debug: API PUT /logger: 204") != std::string::npos);
    const auto cfg = r.router.handle(HttpRequest{"GET", "/vm/config", "", true});
    CHECK(nlohmann::json::parse(cfg.body)["logger"] == nlohmann::json{{"log_path", path.string()}});

    SUBCASE("the level changes later; the file does not") {
        CHECK(r.put(R"({"level": "Warning"})").status == 204);
        log::info("not written");
        log::error("written");
        const auto res = r.put(nlohmann::json{{"log_path", r.tmp.path() / "b.log"}}.dump());
        CHECK(res.status == 400);
        CHECK(Rig::fault(res).find("the log already goes to " + path.string()) !=
              std::string::npos);
        CHECK_FALSE(std::filesystem::exists(r.tmp.path() / "b.log"));
        const auto after = slurp(path);
        CHECK(after.find("not written") == std::string::npos);
        CHECK(after.find("ember: error: written\n") != std::string::npos);
    }
    SUBCASE("Off writes nothing, errors included") {
        CHECK(r.put(R"({"level": "Off"})").status == 204);
        log::error("silenced");
        CHECK(slurp(path).find("silenced") == std::string::npos);
    }
}

TEST_CASE("the log moves once per process: --log-path, then PUT /logger") {
    Rig r;
    const auto path = r.tmp.path() / "cli.log";
    move_log_to(path, "--log-path");
    CHECK(log::output_name() == path.string());
    const auto res = r.put(nlohmann::json{{"log_path", r.tmp.path() / "api.log"}}.dump());
    CHECK(res.status == 400);
    CHECK(Rig::fault(res) == "PUT /logger: the log already goes to " + path.string() +
                                 "; it can be set once per process");
    CHECK_FALSE(std::filesystem::exists(r.tmp.path() / "api.log"));
    CHECK(r.put(R"({"level": "Debug"})").status == 204); // the level still may change
    CHECK(log::enabled(log::Level::debug));
    CHECK_THROWS_WITH_AS(move_log_to(r.tmp.path() / "again.log", "--log-path"),
                         doctest::Contains("--log-path: the log already goes to"), Error);
}

TEST_CASE("PUT /logger with a path that cannot be written is a 400; the log stays where it was") {
    Rig r;
    const auto res = r.put(nlohmann::json{{"log_path", r.tmp.path() / "no" / "x.log"}}.dump());
    CHECK(res.status == 400);
    CHECK(Rig::fault(res).find("PUT /logger: log file " + (r.tmp.path() / "no" / "x.log").string() +
                               ": cannot be opened for writing: No such file or directory") !=
          std::string::npos);
    // Not configured by the failure: a good path is still taken.
    CHECK(r.put(nlohmann::json{{"log_path", r.tmp.path() / "ok.log"}}.dump()).status == 204);
}
