// Quiesce, save_state/restore_state and restart_io of a virtio-blk device
// with requests in flight (DESIGN.md "Checkpoint and restore"), driven by the
// software guest driver over a slow (random latency) host engine.
#include <doctest/doctest.h>

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "devices/virtio/quiesce.h"
#include "tests/support/checkpoint_rig.h"

using namespace ember;
using namespace ember::testing;
using namespace ember::virtio;
using namespace std::chrono_literals;

namespace {
constexpr uint64_t kDiskSize = 4 << 20;

// Waits until every tracked request came back exactly once (GuestDriver
// throws on a duplicate or unknown head) and checks status and data.
void complete_all(GuestDriver& d, const GuestMemory& mem, const TempFile& f,
                  std::vector<TrackedRequest>& reqs, std::chrono::milliseconds timeout = 10s) {
    std::map<uint16_t, size_t> by_head;
    for (size_t i = 0; i < reqs.size(); ++i)
        by_head[reqs[i].head] = i;
    size_t done = 0;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (done < reqs.size()) {
        for (const auto& e : d.reap()) {
            auto it = by_head.find(static_cast<uint16_t>(e.id));
            REQUIRE(it != by_head.end());
            const auto& r = reqs[it->second];
            by_head.erase(it);
            ++done;
            CHECK(mem.read<uint8_t>(r.status) == blk::kStatusOk);
            CHECK(e.len == (r.write ? 1u : r.len + 1));
            if (!r.write) {
                std::vector<uint8_t> got(r.len);
                mem.read_bytes(r.data, got);
                CHECK(got == r.expect);
            }
        }
        if (done == reqs.size()) break;
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        d.wait_interrupt(20ms);
    }
    for (const auto& r : reqs)
        if (r.write) CHECK(f.contents(r.sector * 512, r.len) == r.expect);
}

// Quiesces once the device has popped `n` requests (all marked in flight;
// the slow engine keeps them there): a fixed sleep is not enough on a loaded
// machine, where the I/O thread may not have run yet. The caller makes the
// `n` available with one avail.idx store (GuestDriver::hold_avail): a device
// still awake from earlier completions may otherwise pop the first few while
// the rest are being added, and those finish before the last are popped.
void quiesce_with_inflight(VirtioMmioTransport& t, uint32_t n) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (;;) {
        t.quiesce();
        if (t.inflight_requests() >= n || std::chrono::steady_clock::now() > deadline) return;
        t.unquiesce();
        std::this_thread::sleep_for(1ms);
    }
}

// Whether the device's rate limit holds `head` back within 5 s (its dump
// names the held head).
bool held_soon(VirtioMmioTransport& t, uint16_t head) {
    const std::string held = "rate limit holds head " + std::to_string(head);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (t.describe().find(held) == std::string::npos) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

// Offsets into the state blob (format in mmio_transport_state.cpp).
constexpr size_t kOffVersion = 4;
constexpr size_t kOffStatus = 19;
constexpr size_t kOffConfigLen = 53;
size_t queue_offset(const std::vector<uint8_t>& blob) {
    uint16_t n = 0;
    std::memcpy(&n, blob.data() + kOffConfigLen, 2);
    return kOffConfigLen + 2 + n;
}
} // namespace

TEST_CASE("quiesce: the quiesce signal is SIGRTMIN+1, next to the vcpu kick") {
    CHECK(quiesce_signal() == SIGRTMIN + 1);
}

// The reason the I/O thread opens its mask only at park points (quiesce.h):
// a thread parked while it holds a lock (malloc's, Asio's, the log's) blocks
// whoever needs that lock during the checkpoint. Here the "work" holds a
// mutex most of the time; the checkpointer must always find it free.
TEST_CASE("quiesce: a masked thread parks only at a park point, never holding a lock") {
    for (const auto mode : {MaskingMode::sigmask, MaskingMode::off}) {
        CAPTURE(mode == MaskingMode::sigmask ? "sigmask" : "off");
        QuiescePoint point(mode);
        std::mutex work_lock;
        std::atomic<bool> stop{false};
        std::thread t = point.spawn([&] {
            point.attach_current_thread();
            while (!stop.load(std::memory_order_relaxed)) {
                {
                    std::lock_guard lock(work_lock);
                    for (int i = 0; i < 20000; ++i)
                        asm volatile("" ::: "memory"); // work, not optimised away
                }
                point.park_point();
            }
            point.detach_current_thread();
        });
        constexpr int kParks = 200;
        int held = 0;
        std::mt19937 rng(5);
        for (int i = 0; i < kParks; ++i) {
            REQUIRE(point.park(5s));
            if (work_lock.try_lock())
                work_lock.unlock();
            else
                ++held;
            point.unpark();
            std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
        }
        stop = true;
        t.join();
        CHECK_FALSE(point.park(100ms)); // exited
        if (mode == MaskingMode::sigmask) {
            CHECK(held == 0);
            // Not exactly one opening per park: a park requested while the
            // mask is still open from the previous one lands in that same
            // window (still at the park point).
            CHECK(point.mask_openings() > 0);
        } else {
            // The control: parked wherever the signal landed, mostly inside
            // the locked work. Proof that the check above can fail.
            CHECK(held > kParks / 4);
        }
    }
}

// An idle I/O thread sits in epoll with the signal blocked and pending; the
// wake eventfd brings it to its park point.
TEST_CASE("quiesce: an idle masked thread wakes on the wake eventfd and parks") {
    QuiescePoint point(MaskingMode::sigmask);
    std::atomic<bool> stop{false};
    std::atomic<int> wakeups{0};
    std::thread t = point.spawn([&] {
        point.attach_current_thread();
        while (!stop.load()) {
            pollfd p{point.wake_fd(), POLLIN, 0};
            if (::poll(&p, 1, 10'000) == 1) {
                uint64_t v = 0;
                [[maybe_unused]] auto n = ::read(point.wake_fd(), &v, sizeof v);
                ++wakeups;
            }
            point.park_point();
        }
        point.detach_current_thread();
    });
    for (int i = 0; i < 20; ++i) {
        // Back in poll(): only the wake eventfd can bring it out in time.
        std::this_thread::sleep_for(5ms);
        const auto t0 = std::chrono::steady_clock::now();
        REQUIRE(point.park(5s));
        CHECK(std::chrono::steady_clock::now() - t0 < 2s); // not the 10 s poll timeout
        CHECK(point.parked());
        point.unpark();
    }
    CHECK(wakeups.load() >= 20);
    stop = true;
    point.park(5s); // wakes it so that it sees stop
    point.unpark();
    t.join();
}

TEST_CASE("quiesce: a device that is not running quiesces, saves and restores trivially") {
    TempFile f(kDiskSize);
    auto mem = GuestMemory::flat(16 << 20);
    auto t = make_block_transport(mem, f.path(), {});
    t->quiesce();
    CHECK(t->quiesced());
    CHECK(t->inflight_requests() == 0);
    CHECK(t->inflight_region(0) == nullptr);
    const auto blob = t->save_state();
    t->unquiesce();
    auto t2 = make_block_transport(mem, f.path(), {});
    t2->restore_state(blob);
    CHECK(t2->status() == 0);
    CHECK(t2->interrupt_status() == 0);
}

TEST_CASE("quiesce: parks mid-flight without draining host I/O; unquiesce completes it") {
    TempFile f(kDiskSize);
    f.write(0, pattern(0, 256 * 1024, 9));
    auto mem = GuestMemory::flat(64 << 20);
    VirtioBlock* blk = nullptr;
    auto t = make_block_transport(mem, f.path(), {DelayEngine::factory(100ms, 120ms)}, &blk);
    GuestDriver d(mem, *t);
    d.init();
    CHECK_THROWS_AS(t->save_state(), Error); // running: quiesce first

    std::vector<TrackedRequest> reqs;
    d.hold_avail(true); // all 16 become available at once (see quiesce_with_inflight)
    for (uint32_t i = 0; i < 16; ++i)
        reqs.push_back(submit_tracked(d, f, i % 2 == 1, 8 * i, 4096, i));
    d.hold_avail(false);
    d.kick();
    quiesce_with_inflight(*t, 16); // all popped and submitted; none done (>= 100 ms)
    t->unquiesce();
    const auto t0 = std::chrono::steady_clock::now();
    t->quiesce();
    const auto pause = std::chrono::steady_clock::now() - t0;
    CHECK(pause < 50ms); // not waiting for host I/O
    CHECK(t->inflight_requests() == 16);
    const uint16_t used_before = d.used_idx();
    CHECK(used_before == 0);
    // Host I/O finishes while parked; nothing becomes visible to the guest.
    std::this_thread::sleep_for(150ms);
    CHECK(d.used_idx() == used_before);
    CHECK(t->inflight_requests() == 16);
    CHECK(t->inflight_region(0)->header().used_idx == 0);
    const auto blob = t->save_state(); // allowed while quiesced
    CHECK(blob.size() > 100);
    t->quiesce(); // idempotent
    t->unquiesce();
    CHECK_FALSE(t->quiesced());
    complete_all(d, mem, f, reqs);
    CHECK(t->inflight_requests() == 0);
    CHECK(blk->stats().requests == 16);
}

// The device keeps asking for kicks while host I/O is in flight: a request
// the driver adds then goes to the host at once instead of waiting for the
// next completion (a slow disk completes much of the queue at once, which
// left bench-blk's host queue a third empty).
TEST_CASE("a request added while host I/O is in flight goes to the host at its kick") {
    for (const bool event_idx : {true, false}) {
        CAPTURE(event_idx);
        TempFile f(kDiskSize);
        auto mem = GuestMemory::flat(16 << 20);
        auto t = make_block_transport(mem, f.path(), {DelayEngine::factory(1500ms, 1500ms)});
        GuestDriver d(mem, *t);
        d.init(event_idx ? ~0ull : ~kFeatureRingEventIdx);
        std::vector<TrackedRequest> reqs;
        reqs.push_back(submit_tracked(d, f, false, 0, 4096, 1));
        d.kick();
        quiesce_with_inflight(*t, 1);
        t->unquiesce();
        if (event_idx) {
            // The device marks a request in flight before it looks at the
            // ring again: wait until it asked for the next kick (avail_event
            // = 1; before, a device that waits for the completion left it
            // behind the driver's index).
            const GuestAddress avail_event{d.queue().used_ring.value + 4 + 8u * d.queue().size};
            const auto deadline = std::chrono::steady_clock::now() + 1000ms;
            while (mem.load_acquire<uint16_t>(avail_event) != 1 &&
                   std::chrono::steady_clock::now() < deadline)
                std::this_thread::sleep_for(1ms);
            REQUIRE(mem.load_acquire<uint16_t>(avail_event) == 1);
        }
        const auto t0 = std::chrono::steady_clock::now();
        reqs.push_back(submit_tracked(d, f, true, 8, 4096, 2));
        CHECK(d.kick()); // the device asked for it
        quiesce_with_inflight(*t, 2);
        CHECK(t->inflight_requests() == 2);
        CHECK(std::chrono::steady_clock::now() - t0 < 1000ms); // not after the first completed
        CHECK(d.used_idx() == 0);
        t->unquiesce();
        complete_all(d, mem, f, reqs);
    }
}

TEST_CASE("checkpoint round trip: save mid-flight, new device restores, every head once") {
    for (const bool event_idx : {true, false}) {
        CAPTURE(event_idx);
        TempFile f(kDiskSize);
        f.write(0, pattern(0, 512 * 1024, 3));
        auto mem = GuestMemory::flat(64 << 20);
        auto t = make_block_transport(mem, f.path(), {DelayEngine::factory(20ms, 60ms, 5)});
        GuestDriver d(mem, *t);
        d.init(event_idx ? ~0ull : ~kFeatureRingEventIdx);

        // Some requests already completed before the checkpoint...
        std::vector<TrackedRequest> early;
        for (uint32_t i = 0; i < 4; ++i)
            early.push_back(submit_tracked(d, f, true, 900 + 8 * i, 4096, 77 + i));
        d.kick();
        complete_all(d, mem, f, early);
        // ...and 24 in flight, reads and writes, one indirect.
        std::vector<TrackedRequest> reqs;
        d.hold_avail(true);
        for (uint32_t i = 0; i < 24; ++i)
            reqs.push_back(submit_tracked(d, f, i % 3 == 0, 16 * i, 4096 + 512 * (i % 4), 40 + i));
        d.hold_avail(false);
        d.kick();
        quiesce_with_inflight(*t, 24);
        REQUIRE(t->inflight_requests() == 24);
        const auto region_before = std::vector<uint8_t>(t->inflight_region(0)->bytes().begin(),
                                                        t->inflight_region(0)->bytes().end());
        const auto blob = t->save_state();
        // The old device goes away while parked: it makes nothing more visible.
        t.reset();
        CHECK(d.used_idx() == 4);

        auto log = std::make_shared<std::vector<uint64_t>>();
        VirtioBlock* blk2 = nullptr;
        auto t2 = make_block_transport(mem, f.path(), {DelayEngine::factory(1ms, 5ms, 6, log)},
                                       &blk2);
        t2->restore_state(blob);
        d.rebind(*t2);
        CHECK((t2->status() & kStatusDriverOk) != 0);
        CHECK(blk2->running());
        // One interrupt per queue after restore.
        CHECK((t2->interrupt_status() & kInterruptUsedBuffer) != 0);
        CHECK(irqfd_readable(*t2));
        complete_all(d, mem, f, reqs);
        // Resubmitted in counter order = the order the old device popped them.
        REQUIRE(log->size() >= 24);
        for (size_t i = 0; i < 24; ++i)
            CHECK((*log)[i] == reqs[i].head);
        // The region carried over byte for byte before recovery touched it.
        CHECK(region_before.size() == inflight_region_bytes(256));
        // And the device keeps working.
        std::vector<TrackedRequest> more;
        for (uint32_t i = 0; i < 8; ++i)
            more.push_back(submit_tracked(d, f, i % 2 == 0, 2000 + 8 * i, 4096, 500 + i));
        d.kick();
        complete_all(d, mem, f, more);
        CHECK(d.outstanding() == 0);
    }
}

TEST_CASE("checkpoint: a request the rate limit holds back is saved in flight and resubmitted") {
    TempFile f(kDiskSize);
    auto mem = GuestMemory::flat(64 << 20);
    VirtioBlock* blk = nullptr;
    auto t = make_block_transport(mem, f.path(), {}, &blk);
    // One request a minute: the second waits far longer than this test.
    blk->set_rate_limit({std::nullopt, TokenBucketSpec{1, 0, 60000}});
    GuestDriver d(mem, *t);
    d.init();
    std::vector<TrackedRequest> reqs;
    d.hold_avail(true);
    for (uint32_t i = 0; i < 3; ++i)
        reqs.push_back(submit_tracked(d, f, true, 64 * i, 4096, 90 + i));
    d.hold_avail(false);
    d.kick();
    // The first completes; the second is popped, marked and held; the third
    // waits in the avail ring.
    std::vector<TrackedRequest> first(reqs.begin(), reqs.begin() + 1);
    complete_all(d, mem, f, first);
    CHECK(held_soon(*t, reqs[1].head));
    t->quiesce();
    CHECK(t->inflight_requests() == 1);
    const auto blob = t->save_state();
    t.reset(); // the held request never reached the host here
    CHECK(f.contents(64 * 512, 4096) != reqs[1].expect);

    // Restored with a limit from the command line (a fresh bucket of 1):
    // the held request is resubmitted first and not charged again, so the
    // third, popped after it, takes the token and is not held; each
    // completes once.
    DeviceOptions limited;
    limited.spec_suffix = ",iops=1";
    VirtioBlock* blk2 = nullptr;
    auto t2 = make_block_transport(mem, f.path(), limited, &blk2);
    t2->restore_state(blob);
    d.rebind(*t2);
    std::vector<TrackedRequest> rest(reqs.begin() + 1, reqs.end());
    complete_all(d, mem, f, rest);
    CHECK(d.outstanding() == 0);
    CHECK(blk2->stats().throttled == 0);
    for (const auto& r : reqs)
        CHECK(f.contents(r.sector * 512, r.len) == r.expect);
}

TEST_CASE("checkpoint: the buckets' fill is saved, a held request charged, and a restore goes on "
          "from it") {
    TempFile f(kDiskSize);
    auto mem = GuestMemory::flat(64 << 20);
    VirtioBlock* blk = nullptr;
    auto t = make_block_transport(mem, f.path(), {}, &blk);
    // Two requests an hour: the third is held far longer than this test.
    const RateLimit limit{std::nullopt, TokenBucketSpec{2, 0, 3'600'000}};
    blk->set_rate_limit(limit);
    GuestDriver d(mem, *t);
    d.init();
    std::vector<TrackedRequest> reqs;
    d.hold_avail(true);
    for (uint32_t i = 0; i < 3; ++i)
        reqs.push_back(submit_tracked(d, f, true, 64 * i, 4096, 30 + i));
    d.hold_avail(false);
    d.kick();
    std::vector<TrackedRequest> first(reqs.begin(), reqs.begin() + 2);
    complete_all(d, mem, f, first);
    REQUIRE(held_soon(*t, reqs[2].head));
    t->quiesce();
    // Two requests taken and the held one owed: a restore resubmits it
    // without asking, so the saved bucket is one in debt.
    const auto fill = blk->rate_limit_fill(std::chrono::steady_clock::now());
    REQUIRE(fill.has_value());
    CHECK_FALSE(fill->bandwidth.has_value());
    REQUIRE(fill->ops.has_value());
    CHECK(fill->ops->budget == -1);
    const auto blob = t->save_state();
    t.reset();

    VirtioBlock* blk2 = nullptr;
    auto t2 = make_block_transport(mem, f.path(), {}, &blk2);
    blk2->set_rate_limit(limit); // as the checkpoint's configuration gives it
    blk2->restore_rate_limit_fill(*fill);
    t2->restore_state(blob);
    d.rebind(*t2);
    std::vector<TrackedRequest> resubmitted(reqs.begin() + 2, reqs.end());
    complete_all(d, mem, f, resubmitted);
    CHECK(blk2->stats().throttled == 0);
    // The next request finds the bucket as the checkpoint left it, in debt:
    // held (a restore with full buckets would let two more through).
    std::vector<TrackedRequest> next{submit_tracked(d, f, true, 512, 4096, 60)};
    d.kick();
    CHECK(held_soon(*t2, next[0].head));
    CHECK(blk2->stats().throttled == 1);
    CHECK(d.reap().empty());
    // Lifted, it goes at once.
    blk2->set_rate_limit({});
    complete_all(d, mem, f, next);
    CHECK(d.outstanding() == 0);
}

TEST_CASE("checkpoint: a deferred restore stays as saved until start_restored (restore --paused)") {
    TempFile f(kDiskSize);
    f.write(0, pattern(0, 512 * 1024, 5));
    auto mem = GuestMemory::flat(64 << 20);
    auto t = make_block_transport(mem, f.path(), {DelayEngine::factory(20ms, 60ms, 9)});
    GuestDriver d(mem, *t);
    d.init();
    // Completions first, so the region's batch chain (last_batch_head) is
    // not in its initial state: restore must keep it as saved, too.
    std::vector<TrackedRequest> early;
    for (uint32_t i = 0; i < 3; ++i)
        early.push_back(submit_tracked(d, f, true, 900 + 8 * i, 4096, 90 + i));
    d.kick();
    complete_all(d, mem, f, early);
    std::vector<TrackedRequest> reqs;
    d.hold_avail(true);
    for (uint32_t i = 0; i < 12; ++i)
        reqs.push_back(submit_tracked(d, f, i % 2 == 0, 16 * i, 4096, 60 + i));
    d.hold_avail(false);
    d.kick();
    quiesce_with_inflight(*t, 12);
    REQUIRE(t->inflight_requests() == 12);
    const auto blob = t->save_state();
    t.reset();

    VirtioBlock* blk2 = nullptr;
    auto t2 = make_block_transport(mem, f.path(), {DelayEngine::factory(1ms, 5ms, 10)}, &blk2);
    t2->restore_state(blob, VirtioMmioTransport::RestoreStart::deferred);
    d.rebind(*t2);
    CHECK_FALSE(blk2->running());
    CHECK(t2->inflight_requests() == 12);
    std::this_thread::sleep_for(30ms);
    CHECK(d.used_idx() == 3); // nothing resubmitted, nothing completed
    // Saved again at once, it is the same state, byte for byte.
    t2->quiesce();
    CHECK(t2->save_state() == blob);
    t2->unquiesce();

    t2->start_restored();
    CHECK(blk2->running());
    CHECK(irqfd_readable(*t2));
    complete_all(d, mem, f, reqs);
    t2->start_restored(); // once only
    CHECK(t2->inflight_requests() == 0);
}

TEST_CASE("checkpoint: restore_state refuses corrupt or mismatched state, device left reset") {
    TempFile f(kDiskSize);
    auto mem = GuestMemory::flat(64 << 20);
    auto t = make_block_transport(mem, f.path(), {DelayEngine::factory(50ms, 60ms)});
    GuestDriver d(mem, *t);
    d.init();
    std::vector<TrackedRequest> reqs;
    d.hold_avail(true);
    for (uint32_t i = 0; i < 3; ++i)
        reqs.push_back(submit_tracked(d, f, false, 8 * i, 4096, i));
    d.hold_avail(false);
    d.kick();
    quiesce_with_inflight(*t, 3);
    REQUIRE(t->inflight_requests() == 3);
    const auto good = t->save_state();
    t->unquiesce();
    const size_t q = queue_offset(good);
    const size_t region = q + 37;

    auto expect_refused = [&](std::vector<uint8_t> blob, const char* needle,
                              const std::string& path) {
        auto t2 = make_block_transport(mem, path, {});
        try {
            t2->restore_state(blob);
            FAIL("restore_state accepted bad state");
        } catch (const DeviceStateError& e) {
            CAPTURE(e.what());
            CHECK(std::string(e.what()).find(needle) != std::string::npos);
        }
        CHECK(t2->status() == 0);
        CHECK(t2->inflight_region(0) == nullptr);
    };
    auto patched = [&](size_t at, auto value) {
        auto b = good;
        std::memcpy(b.data() + at, &value, sizeof value);
        return b;
    };
    SUBCASE("wrong version") { expect_refused(patched(kOffVersion, uint8_t{9}), "version 9", f.path()); }
    SUBCASE("not a device state") { expect_refused(patched(0, uint8_t{'X'}), "not a virtio", f.path()); }
    SUBCASE("truncated") {
        auto b = good;
        b.resize(b.size() - 10);
        expect_refused(b, "truncated", f.path());
    }
    SUBCASE("trailing bytes") {
        auto b = good;
        b.push_back(0);
        expect_refused(b, "unexpected bytes", f.path());
    }
    SUBCASE("impossible status") { expect_refused(patched(kOffStatus, uint32_t{0x1000}), "impossible", f.path()); }
    SUBCASE("queue size larger than the device allows") {
        expect_refused(patched(q, uint16_t{512}), "at most 256", f.path());
    }
    SUBCASE("ring outside guest RAM") {
        expect_refused(patched(q + 3, uint64_t{1} << 40), "not inside guest RAM", f.path());
    }
    SUBCASE("used.idx in guest memory does not match") {
        expect_refused(patched(q + 29, uint16_t{77}), "does not match", f.path());
    }
    SUBCASE("corrupt region: inflight value 5") {
        // The first in-flight entry is some head h: find it and corrupt it.
        auto b = good;
        bool done = false;
        for (size_t h = 0; h < 256 && !done; ++h)
            if (b[region + 16 + 16 * h] == 1) {
                b[region + 16 + 16 * h] = 5;
                done = true;
            }
        REQUIRE(done);
        expect_refused(b, "inflight value 5", f.path());
    }
    SUBCASE("a disk of another size") {
        TempFile other(kDiskSize * 2);
        expect_refused(good, "configuration differs", other.path());
    }
    SUBCASE("a read-only disk") { expect_refused(good, "features", f.path() + ",readonly"); }
    SUBCASE("a device that is already running") {
        CHECK_THROWS_AS(t->restore_state(good), DeviceStateError);
    }
    complete_all(d, mem, f, reqs);
}

TEST_CASE("restart_io: a fresh I/O thread recovers from guest memory and the region alone") {
    for (int engine = 0; engine < 2; ++engine) {
        CAPTURE(engine);
        TempFile f(kDiskSize);
        f.write(0, pattern(0, 256 * 1024, 4));
        auto mem = GuestMemory::flat(64 << 20);
        DeviceOptions o;
        if (engine == 0) o.engine = DelayEngine::factory(10ms, 30ms, 8);
        else o.spec_suffix = ",engine=sync";
        VirtioBlock* blk = nullptr;
        auto t = make_block_transport(mem, f.path(), o, &blk);
        GuestDriver d(mem, *t);
        d.init();
        for (int round = 0; round < 5; ++round) {
            std::vector<TrackedRequest> reqs;
            for (uint32_t i = 0; i < 20; ++i)
                reqs.push_back(
                    submit_tracked(d, f, (i + round) % 2 == 0, 8 * (i + 20 * round), 4096, i));
            d.kick();
            std::this_thread::sleep_for(3ms);
            t->restart_io();
            CHECK(blk->running());
            complete_all(d, mem, f, reqs);
        }
        CHECK(d.outstanding() == 0);
        CHECK((t->status() & kStatusNeedsReset) == 0);
    }
}

TEST_CASE("restart_io: a request the rate limit held is charged, since it goes again unasked") {
    TempFile f(kDiskSize);
    auto mem = GuestMemory::flat(64 << 20);
    VirtioBlock* blk = nullptr;
    auto t = make_block_transport(mem, f.path(), {}, &blk);
    blk->set_rate_limit({std::nullopt, TokenBucketSpec{2, 0, 3'600'000}}); // two an hour
    GuestDriver d(mem, *t);
    d.init();
    std::vector<TrackedRequest> reqs;
    d.hold_avail(true);
    for (uint32_t i = 0; i < 3; ++i)
        reqs.push_back(submit_tracked(d, f, true, 64 * i, 4096, 20 + i));
    d.hold_avail(false);
    d.kick();
    std::vector<TrackedRequest> first(reqs.begin(), reqs.begin() + 2);
    complete_all(d, mem, f, first);
    REQUIRE(held_soon(*t, reqs[2].head));
    t->restart_io();
    std::vector<TrackedRequest> resubmitted(reqs.begin() + 2, reqs.end());
    complete_all(d, mem, f, resubmitted);
    // Three requests went through a bucket of two: one in debt.
    t->quiesce();
    const auto fill = blk->rate_limit_fill(std::chrono::steady_clock::now());
    t->unquiesce();
    REQUIRE(fill.has_value());
    REQUIRE(fill->ops.has_value());
    CHECK(fill->ops->budget == -1);
    CHECK(d.outstanding() == 0);
}

TEST_CASE("inflight: a head offered again while in flight breaks the ring (NEEDS_RESET)") {
    TempFile f(kDiskSize);
    auto mem = GuestMemory::flat(64 << 20);
    auto t = make_block_transport(mem, f.path(), {DelayEngine::factory(200ms, 200ms)});
    GuestDriver d(mem, *t);
    d.init();
    const auto r = submit_tracked(d, f, false, 0, 4096, 1);
    d.kick();
    std::this_thread::sleep_for(20ms);
    // A misbehaving driver: the same head once more, raw.
    const uint16_t slot = static_cast<uint16_t>(1 & (d.queue().size - 1));
    mem.write<uint16_t>(GuestAddress{d.queue().avail_ring.value + 4 + 2ull * slot}, r.head);
    d.set_avail_idx_raw(2);
    d.write32(mmio::kQueueNotify, 0);
    for (int i = 0; i < 100 && (t->status() & kStatusNeedsReset) == 0; ++i)
        std::this_thread::sleep_for(5ms);
    CHECK((t->status() & kStatusNeedsReset) != 0);
}
