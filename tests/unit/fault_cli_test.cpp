// --fault and --list-faults on the command line (vmm/cli.cpp).
#include <doctest/doctest.h>

#include "vmm/cli.h"

using namespace ember;

namespace {
Command parse(std::vector<std::string> args) {
    args.insert(args.begin(), "ember");
    return parse_command_line(args);
}
std::string usage_error(std::vector<std::string> args) {
    try {
        parse(std::move(args));
    } catch (const UsageError& e) {
        return e.what();
    }
    return "";
}
} // namespace

TEST_CASE("CLI: --fault is repeatable on run and restore") {
    auto c = parse({"run", "--kernel", "/proc/self/exe", "--fault", "blk.popped", "--fault",
                    "blk.host_done:after=7:action=kill", "--fault", "random:period=20"});
    const auto& f = std::get<RunRequest>(c).config.faults;
    REQUIRE(f.size() == 3);
    CHECK(f[0].point == fault::Point::blk_popped);
    CHECK(f[0].after == 1);
    CHECK(f[0].action == fault::Action::restart_io);
    CHECK(f[1].point == fault::Point::blk_host_done);
    CHECK(f[1].after == 7);
    CHECK(f[1].action == fault::Action::kill);
    CHECK(f[2].random);
    CHECK(f[2].period_ms == 20);
    CHECK(std::get<RunRequest>(parse({"run", "--kernel", "/proc/self/exe"})).config.faults.empty());

    // The snapshot directory after --fault is not taken as a second value.
    auto r = parse({"restore", "--fault", "checkpoint.memory:action=abort", "/tmp/snap"});
    const auto& rr = std::get<RestoreRequest>(r);
    CHECK(rr.snapshot_dir == "/tmp/snap");
    REQUIRE(rr.faults.size() == 1);
    CHECK(rr.faults[0].point == fault::Point::checkpoint_memory);
    CHECK(rr.faults[0].action == fault::Action::abort);
}

TEST_CASE("CLI: bad --fault values are usage errors naming the value") {
    CHECK(usage_error({"run", "--kernel", "/proc/self/exe", "--fault", "nosuch"}).find("nosuch") !=
          std::string::npos);
    CHECK(usage_error({"run", "--kernel", "/proc/self/exe", "--fault", "blk.popped:after=0"})
              .find("after=0") != std::string::npos);
    CHECK(usage_error({"run", "--kernel", "/proc/self/exe", "--fault", "blk.popped:action=explode"})
              .find("action=explode") != std::string::npos);
    CHECK(usage_error({"run", "--kernel", "/proc/self/exe", "--fault", "random:period=5:action=kill"})
              .find("action=kill") != std::string::npos);
    CHECK(usage_error({"restore", "/tmp/snap", "--fault", "blk.nope"}).find("blk.nope") !=
          std::string::npos);
    CHECK_FALSE(usage_error({"run", "--kernel", "/proc/self/exe", "--fault"}).empty());
}

TEST_CASE("CLI: --list-faults lists every point with a description") {
    auto c = parse({"--list-faults"});
    const auto& text = std::get<ListFaultsRequest>(c).text;
    for (const auto& p : fault::all_points()) {
        CAPTURE(p.name);
        CHECK(text.find(std::string(p.name) + " ") != std::string::npos);
        CHECK(text.find(std::string(p.description)) != std::string::npos);
    }
    CHECK(text.find("random:period=MS") != std::string::npos);
}
