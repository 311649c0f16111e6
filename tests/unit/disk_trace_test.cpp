// bench-blk --trace: reading tracefs block events and the rhythm they show
// (tools/disk_trace.h).
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tools/disk_trace.h"

using namespace ember::bench;
using Kind = TraceEvent::Kind;

TEST_CASE("block_rq_issue and block_rq_complete lines as tracefs prints them") {
    // Recorded on the development VM (Linux 6.18), bench-blk on /dev/vda.
    const auto issue = parse_trace_line(
        "    ember-blk-io-5482    [001] ..... 64250.581755: block_rq_issue: 254,0 RS 4096 () "
        "35017208 + 8 be,0,4 [ember-blk-io]");
    REQUIRE(issue);
    CHECK(issue->kind == Kind::issue);
    CHECK(issue->seconds == doctest::Approx(64250.581755));
    CHECK(issue->sector == 35017208);
    const auto done = parse_trace_line("          <idle>-0       [001] ..s1. 64755.173605: "
                                       "block_rq_complete: 254,0 RS () 34958776 + 8 be,0,4 [0]");
    REQUIRE(done);
    CHECK(done->kind == Kind::complete);
    CHECK(done->seconds == doctest::Approx(64755.173605));
    CHECK(done->sector == 34958776);
}

TEST_CASE("other events, comments and damaged lines are skipped") {
    CHECK_FALSE(parse_trace_line("# tracer: nop"));
    CHECK_FALSE(parse_trace_line(""));
    CHECK_FALSE(
        parse_trace_line("    ember-blk-io-5482    [001] ...1. 64250.581723: block_rq_insert: "
                         "254,0 RS 4096 () 35705136 + 8 be,0,4 [ember-blk-io]"));
    CHECK_FALSE(parse_trace_line("x [001] ..... 64250.58x755: block_rq_issue: 254,0 RS 4096 () "
                                 "35017208 + 8 be,0,4 [x]"));
    CHECK_FALSE(parse_trace_line("x [001] ..... 64250.581755: block_rq_issue: 254,0 RS 4096 () "
                                 "35017208 8 be,0,4 [x]"));
    CHECK_FALSE(parse_trace_line("x [001] ..... 64250.581755: block_rq_issue: 254,0 RS 4096 () "
                                 "-5 + 8 be,0,4 [x]"));
    CHECK_FALSE(parse_trace_line("block_rq_issue: 254,0 RS 4096 () 1 + 8"));
}

TEST_CASE("a device that answers the whole queue at once: bursts, idle time, turnaround") {
    auto at = [](Kind k, double us, uint64_t sector) { return TraceEvent{k, us * 1e-6, sector}; };
    // Two rounds of four requests. Each round is issued over 3 us and
    // answered in one burst 100 us later; the next round starts 30 us after
    // the burst (the turnaround), so the device has nothing 30 of every 133 us.
    std::vector<TraceEvent> ev;
    for (int round = 0; round < 2; ++round) {
        const double t = round * 133.0;
        for (uint64_t i = 0; i < 4; ++i)
            ev.push_back(at(Kind::issue, t + static_cast<double>(i), 8 * i + 64 * round));
        for (uint64_t i = 0; i < 4; ++i)
            ev.push_back(at(Kind::complete, t + 103, 8 * i + 64 * round));
    }
    ev.push_back(at(Kind::issue, 266, 999)); // the third round begins
    const auto r = disk_rhythm(ev, 4);
    CHECK(r.completions == 8);
    CHECK(r.per_burst == doctest::Approx(4.0));
    CHECK(r.turnaround_us == doctest::Approx(30.0));
    CHECK(r.idle == doctest::Approx(60.0 / 266.0));
    // Issued at +0..+3, answered at +103: 101.5 us on average.
    CHECK(r.ms_per_request == doctest::Approx(0.1015));
    // A burst smaller than `large` gives no turnaround.
    CHECK(disk_rhythm(ev, 5).turnaround_us == -1);
}

TEST_CASE("requests issued before the window: counted as completions, not timed") {
    const std::vector<TraceEvent> ev{
        {Kind::complete, 0.000010, 8}, {Kind::issue, 0.000020, 16}, {Kind::complete, 0.000050, 16}};
    const auto r = disk_rhythm(ev, 1);
    CHECK(r.completions == 2);
    CHECK(r.per_burst == doctest::Approx(1.0));
    CHECK(r.ms_per_request == doctest::Approx(0.030));
    CHECK(r.turnaround_us == doctest::Approx(10.0));
    CHECK(r.idle == doctest::Approx(0.0));
    CHECK(disk_rhythm({}, 1).completions == 0);
}

TEST_CASE("a file on no block device cannot be traced, and says why") {
    std::string why;
    std::vector<std::string> removed;
    CHECK_FALSE(DiskTrace::for_file("/proc/self/status", why, removed));
    CHECK(why.find("no block device") != std::string::npos);
    CHECK_FALSE(DiskTrace::for_file("/nonexistent/ember-trace", why, removed));
    CHECK(why.find("No such file") != std::string::npos);
    CHECK(removed.empty());
}

TEST_CASE("only the instances of bench-blks that are gone are removed") {
    // An ordinary directory stands in for tracefs's instances/: rmdir
    // removes its empty subdirectories as tracefs removes instances.
    const auto dir =
        std::filesystem::temp_directory_path() / fmt::format("ember-instances-{}", ::getpid());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directory(dir);
    const auto child = [] {
        const pid_t pid = ::fork();
        if (pid == 0) ::_exit(0);
        REQUIRE(pid > 0);
        return pid;
    };
    const pid_t gone = child(); // a PID that was a process and is none now
    REQUIRE(::waitpid(gone, nullptr, 0) == gone);
    // Ended but not waited for: kill() still finds it. A bench-blk killed
    // in the background of a shell that exited is one until init reaps it.
    const pid_t zombie = child();
    siginfo_t info{};
    REQUIRE(::waitid(P_PID, static_cast<id_t>(zombie), &info, WEXITED | WNOWAIT) == 0);
    const auto dead = fmt::format("ember-bench-{}", gone);
    const auto undead = fmt::format("ember-bench-{}", zombie);
    const auto alive = fmt::format("ember-bench-{}", ::getpid());
    for (const auto& name : {dead, undead, alive, std::string("ember-bench-1x"),
                             std::string("ember-bench-"), std::string("other-2")})
        std::filesystem::create_directory(dir / name);
    auto removed = remove_stale_instances(dir);
    std::sort(removed.begin(), removed.end());
    auto expected = std::vector<std::string>{dead, undead};
    std::sort(expected.begin(), expected.end());
    CHECK(removed == expected);
    REQUIRE(::waitpid(zombie, nullptr, 0) == zombie);
    CHECK_FALSE(std::filesystem::exists(dir / dead));
    for (const char* kept : {"ember-bench-1x", "ember-bench-", "other-2"})
        CHECK(std::filesystem::exists(dir / kept));
    CHECK(std::filesystem::exists(dir / alive));
    CHECK(remove_stale_instances(dir).empty()); // nothing left to remove
    CHECK(remove_stale_instances(dir / "missing").empty());
    std::filesystem::remove_all(dir);
}
