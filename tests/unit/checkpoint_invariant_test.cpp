// The checkpoint invariant of DESIGN.md "The two seeds, made exact", checked
// at >= 1000 quiesces fired at random instants while the software driver
// keeps many requests in flight against a backend with random latency; and
// the negative control: the same test with the signal masking switched off
// must find violations, proof that the check can fail.
//
// At each checkpoint (device quiesced, "vcpu" = driver thread paused):
//   1. header used_idx == used->idx
//   2. avail entries consumed == used_idx + count(inflight)
//   3. per head h, conservation between two checkpoints:
//        inflight_before[h] + popped_since[h] == published_since[h] + inflight_now[h]
//      (with no head reuse this is DESIGN.md's "in the used ring between old
//      and new used_idx XOR inflight[h] == 1"; the driver reuses heads, so
//      the counted form is the exact one)
//   4. every entry published after the driver's last InterruptAck has the
//      InterruptStatus "used buffer" bit set and the irqfd signalled.
//      Checked without EVENT_IDX, where every batch must interrupt.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <random>

#include "tests/support/checkpoint_rig.h"

using namespace ember;
using namespace ember::testing;
using namespace ember::virtio;
using namespace std::chrono_literals;

namespace {

constexpr uint64_t kDiskSize = 4 << 20;

// The guest: keeps `depth` requests in flight, acks interrupts like Linux's
// vm_interrupt, logs every head it made available and every head it reaped.
class Guest final {
  public:
    Guest(const GuestMemory& mem, VirtioMmioTransport& t, const TempFile& f, unsigned depth)
        : mem_(mem), t_(t), f_(f), d_(mem, t), depth_(depth) {}

    void init(uint64_t features) {
        d_.init(features);
        for (unsigned i = 0; i < depth_; ++i) {
            Slot s;
            s.header = d_.alloc(16);
            s.data = d_.alloc(4096, 4096);
            s.status = d_.alloc(1);
            slots_.push_back(s);
            free_.push_back(i);
        }
        slot_of_head_.assign(d_.queue().size, -1);
    }

    void start() {
        thread_ = std::thread([this] { run(); });
    }
    void stop() {
        stop_.store(true);
        resume();
        thread_.join();
    }
    // Like a vcpu pause: returns true once the thread is parked between
    // steps; false (and the request withdrawn) after `timeout`. With masking
    // off the I/O thread may park holding the allocator's lock, and this
    // thread then waits for it inside malloc until the device is unquiesced.
    bool pause(std::chrono::milliseconds timeout = 2s) {
        pause_.store(true, std::memory_order_release);
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!paused_.load(std::memory_order_acquire) && !failed_.load()) {
            if (std::chrono::steady_clock::now() > deadline) {
                resume();
                return false;
            }
            std::this_thread::yield();
        }
        return true;
    }
    void resume() { pause_.store(false, std::memory_order_release); }

    // Readable while paused.
    const std::vector<uint16_t>& avail_log() const { return avail_log_; }
    const std::vector<uint16_t>& used_log() const { return used_log_; }
    uint16_t used_at_ack() const { return used_at_ack_; }
    uint64_t completed() const { return used_log_.size(); }
    const GuestDriver& driver() const { return d_; }
    std::string failure() const { return failure_; }
    bool failed() const { return failed_.load(); }

  private:
    struct Slot {
        GuestAddress header, data, status;
    };

    void run() {
        std::mt19937_64 rng(11);
        try {
            while (!stop_.load()) {
                if (pause_.load(std::memory_order_acquire)) {
                    paused_.store(true, std::memory_order_release);
                    while (pause_.load(std::memory_order_acquire))
                        std::this_thread::yield();
                    paused_.store(false, std::memory_order_release);
                    continue;
                }
                bool added = false;
                while (!free_.empty()) {
                    const int si = free_.back();
                    free_.pop_back();
                    const auto& s = slots_[static_cast<size_t>(si)];
                    const bool write = rng() % 2 == 0;
                    const uint64_t sector = (rng() % (kDiskSize / 4096)) * 8;
                    mem_.write(s.header,
                               blk::RequestHeader{write ? blk::kTypeOut : blk::kTypeIn, 0, sector});
                    Chain c;
                    c.buffers = {{s.header, 16, false}, {s.data, 4096, !write}, {s.status, 1, true}};
                    const uint16_t head = d_.submit(c);
                    slot_of_head_[head] = si;
                    avail_log_.push_back(head);
                    added = true;
                }
                if (added) d_.kick();
                pollfd p{t_.interrupt_event().fd(), POLLIN, 0};
                if (::poll(&p, 1, 1) == 1) {
                    t_.interrupt_event().drain();
                    const uint32_t st = d_.read32(mmio::kInterruptStatus);
                    d_.write32(mmio::kInterruptAck, st);
                    // Acquire (inside used_idx()): after the ack. Anything
                    // published later must raise the bit again.
                    used_at_ack_ = d_.used_idx();
                }
                for (const auto& e : d_.reap()) {
                    const int si = slot_of_head_[e.id];
                    if (mem_.read<uint8_t>(slots_[static_cast<size_t>(si)].status) != 0)
                        throw DriverError("a request failed");
                    slot_of_head_[e.id] = -1;
                    free_.push_back(si);
                    used_log_.push_back(static_cast<uint16_t>(e.id));
                }
            }
        } catch (const std::exception& e) {
            failure_ = e.what();
            failed_.store(true);
            paused_.store(true);
        }
    }

    const GuestMemory& mem_;
    VirtioMmioTransport& t_;
    const TempFile& f_;
    GuestDriver d_;
    unsigned depth_;
    std::vector<Slot> slots_;
    std::vector<int> free_;
    std::vector<int> slot_of_head_;
    std::vector<uint16_t> avail_log_;
    std::vector<uint16_t> used_log_;
    uint16_t used_at_ack_{0};
    std::atomic<bool> stop_{false}, pause_{false}, paused_{false}, failed_{false};
    std::string failure_;
    std::thread thread_;
};

struct Violations {
    uint64_t header_used{0}, consumed{0}, conservation{0}, interrupt{0}, bad_value{0};
    uint64_t total() const { return header_used + consumed + conservation + interrupt + bad_value; }
};

struct Outcome {
    uint64_t checkpoints{0};
    uint64_t skipped{0}; // the guest did not pause (masking off only, see Guest::pause)
    uint64_t with_inflight{0}; // checkpoints that held requests in flight
    uint64_t completed{0};
    Violations v;
};

// Runs the workload and fires `max_checkpoints` quiesces at random instants
// (stopping early once `stop_after_violations` were seen, if non-zero).
struct Load {
    unsigned depth;
    std::chrono::microseconds min_latency, max_latency, max_gap; // gap between checkpoints
};
constexpr Load kSlowDisk{48, 20us, 400us, 300us};
// Busier: the I/O thread spends more of its time completing batches, so an
// unmasked quiesce lands inside one sooner.
constexpr Load kBusyDisk{80, 1us, 50us, 50us}; // 3 descriptors each: <= 85

Outcome run_invariant(MaskingMode masking, bool event_idx, uint64_t max_checkpoints,
                      uint64_t stop_after_violations, const Load& load = kSlowDisk) {
    TempFile f(kDiskSize);
    auto mem = GuestMemory::flat(64 << 20);
    DeviceOptions o;
    o.engine = DelayEngine::factory(load.min_latency, load.max_latency, 3);
    o.masking = masking;
    auto t = make_block_transport(mem, f.path(), o);
    Guest g(mem, *t, f, load.depth);
    g.init(event_idx ? ~0ull : ~kFeatureRingEventIdx);
    const uint16_t size = g.driver().queue().size;
    const GuestAddress used_ring = g.driver().queue().used_ring;

    Outcome out;
    std::vector<uint8_t> inflight_prev(size, 0);
    uint64_t used_prev = 0, consumed_prev = 0; // 64-bit positions
    std::mt19937_64 rng(42);
    // Allocated up front: with masking off the I/O thread can park inside
    // malloc, and nothing between quiesce() and unquiesce() may allocate.
    std::vector<uint8_t> inflight(size);
    std::vector<int> balance(size, 0);
    g.start();
    for (uint64_t i = 0; i < max_checkpoints && !g.failed(); ++i) {
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % load.max_gap.count()));
        t->quiesce();
        if (!g.pause()) {
            t->unquiesce();
            ++out.skipped;
            continue;
        }
        if (g.failed()) break;

        // Capture: guest memory, the region, transport registers only.
        const auto* region = t->inflight_region(0);
        REQUIRE(region != nullptr);
        const uint16_t used = mem.load_acquire<uint16_t>(GuestAddress{used_ring.value + 2});
        const auto header = region->header();
        const uint16_t consumed = region->consumed_avail_idx();
        uint32_t count = 0;
        bool bad_value = false;
        for (uint16_t h = 0; h < size; ++h) {
            inflight[h] = region->inflight(h);
            bad_value = bad_value || inflight[h] > 1;
            count += inflight[h] != 0 ? 1 : 0;
        }
        const uint32_t irq = t->interrupt_status();
        const bool irqfd = irqfd_readable(*t);

        Violations v;
        if (bad_value) ++v.bad_value;
        if (header.used_idx != used) ++v.header_used;
        if (consumed != static_cast<uint16_t>(used + count)) ++v.consumed;
        const uint64_t used64 = used_prev + static_cast<uint16_t>(used - used_prev);
        const uint64_t consumed64 = consumed_prev + static_cast<uint16_t>(consumed - consumed_prev);
        std::fill(balance.begin(), balance.end(), 0);
        if (consumed64 > g.avail_log().size()) {
            ++v.conservation;
        } else {
            for (uint64_t p = consumed_prev; p < consumed64; ++p)
                ++balance[g.avail_log()[p]];
            for (uint64_t p = used_prev; p < used64; ++p) {
                const uint16_t id =
                    p < g.used_log().size()
                        ? g.used_log()[p]
                        : static_cast<uint16_t>(
                              mem.read<VirtqUsedElem>(
                                     GuestAddress{used_ring.value + 4 + 8 * (p & (size - 1))})
                                  .id);
                if (id < size) --balance[id];
            }
            for (uint16_t h = 0; h < size; ++h)
                if (inflight_prev[h] + balance[h] != inflight[h]) {
                    ++v.conservation;
                    break;
                }
        }
        if (!event_idx && used != g.used_at_ack() &&
            ((irq & kInterruptUsedBuffer) == 0 || !irqfd))
            ++v.interrupt;

        out.v.header_used += v.header_used;
        out.v.consumed += v.consumed;
        out.v.conservation += v.conservation;
        out.v.interrupt += v.interrupt;
        out.v.bad_value += v.bad_value;
        ++out.checkpoints;
        if (count > 0) ++out.with_inflight;
        std::copy(inflight.begin(), inflight.end(), inflight_prev.begin());
        used_prev = used64;
        consumed_prev = consumed64;

        t->unquiesce();
        g.resume();
        if (stop_after_violations != 0 && out.v.total() >= stop_after_violations) break;
    }
    g.stop();
    REQUIRE_MESSAGE(!g.failed(), g.failure());
    out.completed = g.completed();
    return out;
}

void report(const std::string& what, const Outcome& o) {
    MESSAGE(what << ": " << o.checkpoints << " checkpoints (" << o.skipped << " skipped, "
                 << o.with_inflight
                 << " with requests in flight), " << o.completed << " requests completed; "
                 << "violations: header used_idx " << o.v.header_used << ", consumed "
                 << o.v.consumed << ", conservation " << o.v.conservation << ", interrupt "
                 << o.v.interrupt << ", bad value " << o.v.bad_value);
}

} // namespace

TEST_CASE("checkpoint invariant holds at 1000 random quiesces (masked completion)") {
    const auto o = run_invariant(MaskingMode::sigmask, false, 1200, 0);
    report("masked (pthread_sigmask), no EVENT_IDX", o);
    CHECK(o.checkpoints >= 1000);
    CHECK(o.skipped == 0); // the I/O thread parks holding no lock
    // The backend keeps requests in flight; ~98% of checkpoints catch some on
    // an idle machine, fewer when the host is loaded. Many must, or the
    // invariant would be checked on idle queues only.
    CHECK(o.with_inflight >= 100);
    CHECK(o.completed > 5000);
    CHECK(o.v.total() == 0);
}

TEST_CASE("checkpoint invariant holds with EVENT_IDX too (ring and region checks)") {
    const auto o = run_invariant(MaskingMode::sigmask, true, 400, 0);
    report("masked (pthread_sigmask), EVENT_IDX", o);
    CHECK(o.checkpoints >= 400);
    CHECK(o.skipped == 0);
    CHECK(o.v.total() == 0);
}

TEST_CASE("checkpoint invariant holds under the busy load of the negative control") {
    const auto o = run_invariant(MaskingMode::sigmask, false, 2000, 0, kBusyDisk);
    report("masked (pthread_sigmask), busy disk", o);
    CHECK(o.checkpoints >= 2000);
    CHECK(o.skipped == 0);
    CHECK(o.v.total() == 0);
}

TEST_CASE("negative control: without masking the same checks find violations") {
    // Quiesces land anywhere, including inside a completion batch or between
    // pop and mark. The windows are a few hundred nanoseconds of a busy
    // thread, so it takes ~1k-25k quiesces: fire until the first violation
    // (bounded; at the observed rate a miss in 100k has probability < 1e-5).
    const auto o = run_invariant(MaskingMode::off, false, 100000, 1, kBusyDisk);
    report("NOT masked (negative control)", o);
    CHECK(o.v.total() >= 1);
}
