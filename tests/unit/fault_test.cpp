// Fault points (vmm/fault): spec parsing, arming and hit counting, the kill
// and abort actions (in a forked child), and restart-io end to end through a
// virtio-blk device, its transport and the I/O supervisor.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <map>

#include "tests/support/checkpoint_rig.h"
#include "tests/support/stderr_capture.h"
#include "vmm/fault/fault_points.h"
#include "vmm/fault/io_supervisor.h"

using namespace ember;
using namespace ember::testing;
using namespace std::chrono_literals;
using fault::Action;
using fault::Point;

namespace {
std::string parse_error(std::string_view text) {
    try {
        fault::parse_fault_spec(text);
    } catch (const fault::FaultSpecError& e) {
        return e.what();
    }
    return "";
}

// Runs `body` in a child; returns the signal that ended it (0: exited).
int child_signal(const std::function<void()>& body) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // doctest's crash handler would report the child's SIGABRT as a
        // failed test and print a second summary; the parent judges instead.
        ::signal(SIGABRT, SIG_DFL);
        body();
        ::_exit(0);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

struct Disarm {
    ~Disarm() {
        fault::disarm_all();
        fault::set_negative_control(fault::NegativeControl::none);
    }
};
} // namespace

TEST_CASE("fault spec: names, defaults, after, actions") {
    CHECK(fault::all_points().size() == fault::kPointCount);
    for (const auto& p : fault::all_points()) {
        CHECK(fault::find_point(p.name) == p.point);
        CHECK(&fault::info(p.point) == &p);
        CHECK_FALSE(p.description.empty());
    }
    auto s = fault::parse_fault_spec("blk.popped");
    CHECK_FALSE(s.random);
    CHECK(s.point == Point::blk_popped);
    CHECK(s.after == 1);
    CHECK(s.action == Action::restart_io);
    s = fault::parse_fault_spec("blk.used_idx_published:after=17:action=kill");
    CHECK(s.point == Point::blk_used_idx_published);
    CHECK(s.after == 17);
    CHECK(s.action == Action::kill);
    CHECK(fault::parse_fault_spec("blk.notified:action=abort:after=2").action == Action::abort);
    // The main-thread points default to kill: there is no I/O thread to restart.
    CHECK(fault::parse_fault_spec("checkpoint.memory").action == Action::kill);
    CHECK(fault::parse_fault_spec("checkpoint.devices:action=abort").action == Action::abort);
    // escape: at any point, on whichever thread runs it.
    CHECK(fault::parse_fault_spec("blk.popped:action=escape").action == Action::escape);
    CHECK(fault::parse_fault_spec("checkpoint.memory:action=escape").action == Action::escape);
    // On a vcpu thread, at each MMIO exit: kill by default, never restart-io.
    CHECK(fault::parse_fault_spec("vcpu.mmio").action == Action::kill);
    CHECK(fault::parse_fault_spec("vcpu.mmio:after=3:action=escape").after == 3);
    CHECK(fault::to_string(fault::parse_fault_spec("blk.submitted:action=escape")) ==
          "blk.submitted:after=1:action=escape");
    s = fault::parse_fault_spec("random:period=25");
    CHECK(s.random);
    CHECK(s.period_ms == 25);
    CHECK(s.action == Action::restart_io);
    CHECK(fault::parse_fault_spec("random:period=5:action=restart-io").period_ms == 5);
    CHECK(fault::to_string(fault::parse_fault_spec("blk.host_done:after=3")) ==
          "blk.host_done:after=3:action=restart-io");
    CHECK(fault::parse_fault_spec(fault::to_string(s)) == s);
}

TEST_CASE("fault spec: bad values are refused, naming the value") {
    CHECK(parse_error("nosuch").find("unknown fault point 'nosuch'") != std::string::npos);
    CHECK(parse_error("blk.popped:after=0").find("after=0") != std::string::npos);
    CHECK(parse_error("blk.popped:after=-1").find("after=-1") != std::string::npos);
    CHECK(parse_error("blk.popped:after=").find("not KEY=VALUE") != std::string::npos);
    CHECK(parse_error("blk.popped:action=reboot").find("action=reboot") != std::string::npos);
    CHECK(parse_error("blk.popped:period=3").find("unknown key 'period'") != std::string::npos);
    CHECK(parse_error("random").find("needs period") != std::string::npos);
    CHECK(parse_error("random:period=0").find("period=0") != std::string::npos);
    CHECK(parse_error("random:period=5:action=kill").find("action=kill") != std::string::npos);
    CHECK(parse_error("random:period=5:action=escape").find("only restart") != std::string::npos);
    CHECK(parse_error("blk.popped:action=reboot").find("restart-io, kill, abort or escape") !=
          std::string::npos);
    CHECK(parse_error("random:period=5:after=2").find("unknown key 'after'") != std::string::npos);
    CHECK(parse_error("checkpoint.memory:action=restart-io").find("main thread") !=
          std::string::npos);
    CHECK(parse_error("vcpu.mmio:action=restart-io")
              .find("vcpu.mmio runs on a vcpu thread, not an I/O thread") != std::string::npos);
    CHECK(parse_error("").find("unknown fault point") != std::string::npos);
}

TEST_CASE("fault points: disarmed nothing happens; armed, exactly the N-th hit fires once") {
    Disarm d;
    for (int i = 0; i < 10; ++i)
        CHECK_NOTHROW(fault::hit(Point::blk_submitted));
    const uint64_t before = fault::fired(Point::blk_submitted);
    fault::arm({false, Point::blk_submitted, 3, Action::restart_io, 0});
    CHECK_NOTHROW(fault::hit(Point::blk_popped)); // another point: not counted
    CHECK_NOTHROW(fault::hit(Point::blk_submitted));
    CHECK_NOTHROW(fault::hit(Point::blk_submitted));
    CHECK_THROWS_AS(fault::hit(Point::blk_submitted), fault::IoRestart);
    CHECK_NOTHROW(fault::hit(Point::blk_submitted)); // fired: disarmed
    CHECK(fault::fired(Point::blk_submitted) == before + 1);
    // Re-arming starts counting again.
    fault::arm({false, Point::blk_submitted, 1, Action::restart_io, 0});
    try {
        fault::hit(Point::blk_submitted);
        FAIL("no IoRestart");
    } catch (const fault::IoRestart& r) {
        CHECK(r.point == Point::blk_submitted);
    }
    fault::arm({false, Point::blk_popped, 1, Action::restart_io, 0});
    fault::disarm(Point::blk_popped);
    CHECK_NOTHROW(fault::hit(Point::blk_popped));
    CHECK_THROWS_AS(fault::arm({false, Point::checkpoint_memory, 1, Action::restart_io, 0}),
                    fault::FaultSpecError);
}

TEST_CASE("fault points: kill is SIGKILL and abort is SIGABRT, at the point") {
    CHECK(child_signal([] {
              fault::arm({false, Point::checkpoint_devices, 2, Action::kill, 0});
              fault::hit(Point::checkpoint_devices);
              ::write(1, "", 0);
              fault::hit(Point::checkpoint_devices);
              ::_exit(3); // not reached
          }) == SIGKILL);
    CHECK(child_signal([] {
              fault::arm({false, Point::blk_notified, 1, Action::abort, 0});
              fault::hit(Point::blk_notified);
              ::_exit(3);
          }) == SIGABRT);
    // Armed elsewhere: a child passing the point lives.
    CHECK(child_signal([] {
              fault::arm({false, Point::blk_notified, 1, Action::kill, 0});
              fault::hit(Point::blk_popped);
          }) == 0);
}

TEST_CASE("fault points: escape without a system-call filter goes through, says so, and goes on") {
    Disarm d;
    ember::testing::StderrCapture err;
    fault::arm({false, Point::blk_host_done, 2, Action::escape, 0});
    CHECK_NOTHROW(fault::hit(Point::blk_host_done));
    CHECK_NOTHROW(fault::hit(Point::blk_host_done)); // fires, returns
    CHECK_NOTHROW(fault::hit(Point::blk_host_done)); // disarmed
    const auto text = err.text();
    INFO(text);
    CHECK(text.find("fault blk.host_done fired at hit 2: this thread tries to escape (opens "
                    "/etc/passwd and an IPv4 socket)") != std::string::npos);
    CHECK(text.find("fault blk.host_done: nothing stopped the escape (no system-call filter): "
                    "opening /etc/passwd went through") != std::string::npos);
}

namespace {
// Submits `n` tracked requests, waits until each came back once, checks them.
void run_and_check(GuestDriver& d, const GuestMemory& mem, const TempFile& f, uint32_t n,
                   uint32_t first_sector) {
    std::vector<TrackedRequest> reqs;
    std::map<uint16_t, size_t> by_head;
    for (uint32_t i = 0; i < n; ++i) {
        reqs.push_back(submit_tracked(d, f, i % 2 == 0, first_sector + 8 * i, 4096, i + 1));
        by_head[reqs.back().head] = i;
        // In small groups over time: several submissions and batches.
        if (i % 4 == 3) {
            d.kick();
            std::this_thread::sleep_for(1ms);
        }
    }
    d.kick();
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!by_head.empty()) {
        for (const auto& e : d.reap()) {
            auto it = by_head.find(static_cast<uint16_t>(e.id));
            REQUIRE(it != by_head.end());
            const auto& r = reqs[it->second];
            CHECK(mem.read<uint8_t>(r.status) == virtio::blk::kStatusOk);
            if (!r.write) {
                std::vector<uint8_t> got(r.len);
                mem.read_bytes(r.data, got);
                CHECK(got == r.expect);
            }
            by_head.erase(it);
        }
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        if (!by_head.empty()) d.wait_interrupt(20ms);
    }
    for (const auto& r : reqs)
        if (r.write) CHECK(f.contents(r.sector * 512, r.len) == r.expect);
}
} // namespace

TEST_CASE("restart-io: each block point hands over to the supervisor, which recovers") {
    Disarm guard;
    for (const auto& p : fault::all_points()) {
        if (!p.io_thread()) continue;
        CAPTURE(p.name);
        TempFile f(4 << 20);
        f.write(0, pattern(0, 1 << 20, 3));
        auto mem = GuestMemory::flat(64 << 20);
        VirtioBlock* blk = nullptr;
        auto t = make_block_transport(mem, f.path(), {DelayEngine::factory(1ms, 5ms, 2)}, &blk);
        VirtioMmioTransport* devices[] = {t.get()};
        IoSupervisor sup(devices, {});
        GuestDriver d(mem, *t);
        d.init();
        fault::arm({false, p.point, 2, Action::restart_io, 0});
        run_and_check(d, mem, f, 24, 0);
        REQUIRE(sup.wait_restarts(1, 5s));
        const auto restarts = sup.restarts();
        REQUIRE(restarts.size() == 1);
        CHECK(restarts[0].ok);
        CHECK_FALSE(restarts[0].random);
        CHECK(restarts[0].recovery.resubmitted + restarts[0].recovery.completed <=
              restarts[0].recovery.inflight);
        // The device keeps working afterwards.
        run_and_check(d, mem, f, 8, 1024);
        CHECK((t->status() & virtio::kStatusNeedsReset) == 0);
        sup.stop();
    }
}

TEST_CASE("restart-io: without a supervisor the lost I/O thread makes the device ask for a reset") {
    Disarm guard;
    TempFile f(4 << 20);
    auto mem = GuestMemory::flat(64 << 20);
    auto t = make_block_transport(mem, f.path(), {DelayEngine::factory(1ms, 2ms, 2)});
    GuestDriver d(mem, *t);
    d.init();
    fault::arm({false, Point::blk_popped, 1, Action::restart_io, 0});
    submit_tracked(d, f, false, 0, 4096, 1);
    d.kick();
    for (int i = 0; i < 200 && (t->status() & virtio::kStatusNeedsReset) == 0; ++i)
        std::this_thread::sleep_for(5ms);
    CHECK((t->status() & virtio::kStatusNeedsReset) != 0);
    CHECK(fault::fired(Point::blk_popped) >= 1);
}

TEST_CASE("random restarts: the supervisor restarts a running device, nothing lost") {
    Disarm guard;
    TempFile f(4 << 20);
    f.write(0, pattern(0, 1 << 20, 5));
    auto mem = GuestMemory::flat(64 << 20);
    auto t = make_block_transport(mem, f.path(), {DelayEngine::factory(1ms, 4ms, 7)});
    VirtioMmioTransport* devices[] = {t.get()};
    IoSupervisor sup(devices, {.random_period_ms = 3, .seed = 11});
    GuestDriver d(mem, *t);
    d.init();
    for (uint32_t round = 0; round < 6; ++round)
        run_and_check(d, mem, f, 30, round * 256);
    sup.stop();
    const auto restarts = sup.restarts();
    CHECK(restarts.size() >= 3);
    for (const auto& r : restarts) {
        CHECK(r.random);
        CHECK(r.ok);
    }
}
