// virtio entropy device (virtio 1.2 §5.4), driven by the software guest driver:
// its kicks are served inside the QueueNotify write (kicks_inline), so every
// request below has completed by the time kick() returns.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "devices/rng/virtio_rng.h"
#include "devices/virtio/mmio_transport.h"
#include "tests/support/fuzz_random.h"
#include "tests/support/guest_driver.h"

using namespace ember;
using namespace ember::testing;
using namespace ember::virtio;

namespace {
struct RngRig {
    explicit RngRig(VirtioRng::RandomSource source = {}, uint16_t queue_size = 16,
                    uint64_t mem_bytes = 8 << 20)
        : mem(GuestMemory::flat(mem_bytes)),
          transport(std::make_unique<VirtioMmioTransport>(
              mem, std::make_unique<VirtioRng>(kMaxQueueSize, std::move(source)), EventFd{})),
          driver(mem, *transport, opts(queue_size)) {}
    static DriverOptions opts(uint16_t queue_size) {
        DriverOptions o;
        o.queue_size = queue_size;
        return o;
    }
    VirtioRng& rng() { return static_cast<VirtioRng&>(transport->device()); }
    std::vector<uint8_t> bytes(GuestAddress a, uint32_t n) {
        std::vector<uint8_t> v(n);
        mem.read_bytes(a, v);
        return v;
    }
    GuestMemory mem;
    std::unique_ptr<VirtioMmioTransport> transport;
    GuestDriver driver;
};

// Random-looking: 4 KiB of a fair source holds far more than 200 distinct
// byte values and no long run of zeroes.
bool looks_random(const std::vector<uint8_t>& v) {
    std::set<uint8_t> distinct(v.begin(), v.end());
    return distinct.size() > 200 &&
           std::count(v.begin(), v.end(), 0) < static_cast<long>(v.size() / 64);
}
} // namespace

TEST_CASE("virtio-rng: device 4, no feature bits of its own, no configuration space") {
    RngRig r;
    CHECK(r.driver.read32(mmio::kDeviceId) == kDeviceIdEntropy);
    CHECK(r.driver.device_features() ==
          (kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc));
    r.driver.write32(mmio::kQueueSel, 0);
    CHECK(r.driver.read32(mmio::kQueueNumMax) == kMaxQueueSize);
    r.driver.write32(mmio::kQueueSel, 1);
    CHECK(r.driver.read32(mmio::kQueueNumMax) == 0);
    CHECK(r.driver.read32(mmio::kConfig) == 0);
    CHECK(r.rng().kicks_inline());
    CHECK_THROWS_AS(VirtioRng(100), Error); // not a power of two
}

TEST_CASE("virtio-rng: a request's buffers are filled with random bytes before the kick returns") {
    RngRig r;
    r.driver.init();
    const GuestAddress a = r.driver.alloc(4096);
    const GuestAddress b1 = r.driver.alloc(100);
    const GuestAddress b2 = r.driver.alloc(3996);
    r.driver.submit(r.driver.chain().writable(a, 4096).build());
    CHECK(r.driver.kick());
    auto used = r.driver.reap(); // no waiting: served inside the kick
    REQUIRE(used.size() == 1);
    CHECK(used[0].len == 4096);
    CHECK((r.transport->interrupt_status() & kInterruptUsedBuffer) != 0);
    const auto first = r.bytes(a, 4096);
    CHECK(looks_random(first));

    SUBCASE("two segments, direct") {
        CHECK(r.driver.run(r.driver.chain().writable(b1, 100).writable(b2, 3996).build()) == 4096);
    }
    SUBCASE("two segments, indirect") {
        CHECK(r.driver.run(
                  r.driver.chain().writable(b1, 100).writable(b2, 3996).indirect().build()) ==
              4096);
    }
    auto second = r.bytes(b1, 100);
    const auto tail = r.bytes(b2, 3996);
    second.insert(second.end(), tail.begin(), tail.end());
    CHECK(looks_random(second));
    CHECK(second != first);
    const auto s = r.rng().stats();
    CHECK(s.requests == 2);
    CHECK(s.bytes == 8192);
    CHECK(s.bad_requests == 0);
}

TEST_CASE("virtio-rng: a request larger than 64 KiB gets 64 KiB, and says so in used.len") {
    RngRig r;
    r.driver.init();
    const GuestAddress a = r.driver.alloc(128 * 1024);
    CHECK(r.driver.run(r.driver.chain().writable(a, 128 * 1024).build()) ==
          VirtioRng::kMaxBytesPerRequest);
    // The bytes past the cap stay as the guest left them (zero).
    const auto rest = r.bytes(GuestAddress{a.value + VirtioRng::kMaxBytesPerRequest}, 64 * 1024);
    CHECK(std::all_of(rest.begin(), rest.end(), [](uint8_t x) { return x == 0; }));
}

TEST_CASE("virtio-rng: bad requests complete with no bytes and the queue goes on") {
    RngRig r;
    r.driver.init();
    const GuestAddress a = r.driver.alloc(64);
    const std::vector<uint8_t> mine(64, 0xab);
    r.mem.write_bytes(a, mine);
    SUBCASE("a device-readable buffer") {
        CHECK(r.driver.run(r.driver.chain().readable(a, 64).build()) == 0);
        CHECK(r.bytes(a, 64) == mine); // never written
    }
    SUBCASE("readable, then writable") {
        const GuestAddress w = r.driver.alloc(64);
        CHECK(r.driver.run(r.driver.chain().readable(a, 64).writable(w, 64).build()) == 0);
        CHECK(r.bytes(w, 64) == std::vector<uint8_t>(64, 0));
    }
    SUBCASE("a buffer outside guest RAM") {
        CHECK(r.driver.run(
                  r.driver.chain().writable(GuestAddress{r.mem.total_size() - 16}, 64).build()) ==
              0);
    }
    CHECK(r.rng().stats().bad_requests == 1);
    CHECK(r.driver.run(r.driver.chain().writable(a, 64).build()) == 64);
    CHECK(r.bytes(a, 64) != mine);
    CHECK((r.transport->status() & kStatusNeedsReset) == 0);
}

TEST_CASE("virtio-rng: a host getrandom failure completes the request with what was written") {
    int calls = 0;
    RngRig r([&](std::span<uint8_t> out) -> long {
        ++calls;
        if (calls == 1) return -EIO;
        if (calls == 2) return static_cast<long>(std::min<size_t>(out.size(), 10)); // short
        std::fill(out.begin(), out.end(), uint8_t{7});
        return static_cast<long>(out.size());
    });
    r.driver.init();
    const GuestAddress a = r.driver.alloc(64);
    const GuestAddress b = r.driver.alloc(64);
    CHECK(r.driver.run(r.driver.chain().writable(a, 64).build()) == 0);
    CHECK(r.driver.run(r.driver.chain().writable(a, 32).writable(b, 32).build()) == 10);
    CHECK(r.driver.run(r.driver.chain().writable(a, 64).build()) == 64);
    const auto s = r.rng().stats();
    CHECK(s.host_errors == 1);
    CHECK(s.bytes == 74);
    CHECK(s.requests == 3);
}

TEST_CASE("virtio-rng: requests made available together are served by one kick, one interrupt") {
    RngRig r;
    r.driver.init();
    r.driver.hold_avail(true);
    for (int i = 0; i < 16; ++i)
        r.driver.submit(r.driver.chain().writable(r.driver.alloc(32), 32).build());
    CHECK(r.driver.reap().empty()); // nothing happens without a kick
    r.driver.hold_avail(false);
    CHECK(r.driver.kick());
    const auto used = r.driver.reap(); // the driver checks each head comes back once
    CHECK(used.size() == 16);
    for (const auto& e : used)
        CHECK(e.len == 32);
    CHECK(r.rng().stats().interrupts == 1);
    CHECK(r.driver.kicks() == 1);
    // EVENT_IDX: the device asked for the next kick (avail_event = next avail).
    CHECK(r.driver.avail_event() == 16);
    CHECK(r.driver.run(r.driver.chain().writable(r.driver.alloc(8), 8).build()) == 8);
}

TEST_CASE("virtio-rng: a kick before DRIVER_OK or after a reset does nothing") {
    RngRig r;
    r.driver.write32(mmio::kQueueNotify, 0);
    r.driver.init();
    r.driver.reset();
    r.driver.write32(mmio::kQueueNotify, 0);
    CHECK(r.rng().stats().requests == 0);
    CHECK(r.transport->bad_accesses() == 0);
    r.driver.write32(mmio::kQueueNotify, 1); // no such queue: refused, counted
    CHECK(r.transport->bad_accesses() == 1);
}

TEST_CASE("virtio-rng: a broken ring stops this device only, and a reset recovers it") {
    RngRig r;
    r.driver.init();
    r.driver.set_avail_idx_raw(40); // more than the queue size ahead
    r.driver.write32(mmio::kQueueNotify, 0);
    CHECK((r.transport->status() & kStatusNeedsReset) != 0);
    CHECK(r.rng().stats().requests == 0);
    r.driver.reset();
    r.driver.init();
    CHECK(r.driver.run(r.driver.chain().writable(r.driver.alloc(16), 16).build()) == 16);
}

TEST_CASE("virtio-rng: checkpoint and restore: nothing in flight, the queue goes on") {
    RngRig r;
    r.driver.init();
    CHECK(r.driver.run(r.driver.chain().writable(r.driver.alloc(16), 16).build()) == 16);
    // A request made available and not yet kicked when the vcpus parked.
    r.driver.hold_avail(true);
    r.driver.submit(r.driver.chain().writable(r.driver.alloc(16), 16).build());
    r.driver.hold_avail(false);
    r.transport->quiesce();
    CHECK(r.transport->inflight_requests() == 0);
    const auto blob = r.transport->save_state();
    r.transport->unquiesce();
    r.transport->shutdown();

    auto restored =
        std::make_unique<VirtioMmioTransport>(r.mem, std::make_unique<VirtioRng>(), EventFd{});
    restored->restore_state(blob);
    r.driver.rebind(*restored);
    // The restore served the waiting request; the guest's late kick finds nothing.
    r.driver.kick();
    const auto used = r.driver.reap();
    REQUIRE(used.size() == 1);
    CHECK(used[0].len == 16);
    CHECK(r.driver.run(r.driver.chain().writable(r.driver.alloc(16), 16).build()) == 16);
    CHECK(r.driver.used_idx() == 3);
}

// A hostile guest: random chains (direct or indirect; writable, readable,
// zero-length, outside RAM, in any mix), sometimes a ring it breaks. Served
// on the caller's thread, so every batch is checked right after its kick:
// each head comes back once (the driver checks), a chain of only writable
// buffers gets min(its size, 64 KiB) random bytes in order and anything else
// gets none, no byte outside what a good chain may fill changes, and a broken
// ring sets DEVICE_NEEDS_RESET and nothing else until a reset.
TEST_CASE("virtio-rng hostile guest: random chains and broken rings") {
    const uint64_t seed = env_or("EMBER_FUZZ_SEED", 7);
    const uint64_t batches = env_or("EMBER_FUZZ_BATCHES", 300);
    INFO("seed ", seed, " (EMBER_FUZZ_SEED)");
    Rng rng(seed);
    constexpr uint16_t kQueue = 64;
    // Buffers come from an arena above the driver's heap (1-8 MiB), at the end
    // of guest RAM, so some cross it.
    constexpr uint64_t kArenaSize = 2 << 20;
    RngRig r({}, kQueue, (8 << 20) + kArenaSize);
    r.driver.init();
    const uint64_t arena = 8 << 20;
    const uint64_t ram_end = r.mem.total_size();
    std::vector<uint8_t> before(kArenaSize);
    std::vector<uint8_t> now(kArenaSize);
    std::map<std::string, unsigned> seen;
    struct Piece {
        uint64_t addr;
        uint32_t len;
        bool writable;
    };
    for (uint64_t b = 0; b < batches; ++b) {
        CAPTURE(b);
        // Fresh random contents, so a buffer the device wrongly leaves alone
        // or wrongly fills is seen against what was there.
        for (size_t i = 0; i < kArenaSize; i += 8) {
            const uint64_t word = rng();
            std::memcpy(&before[i], &word, 8);
        }
        r.mem.write_bytes(GuestAddress{arena}, before);
        if (chance(rng, 0.03)) {
            ++seen["broken ring"];
            r.driver.set_avail_idx_raw(
                static_cast<uint16_t>(r.driver.used_idx() + kQueue + 1 + pick(rng, 0, 100)));
            r.driver.write32(mmio::kQueueNotify, 0);
            REQUIRE((r.transport->status() & kStatusNeedsReset) != 0);
            r.mem.read_bytes(GuestAddress{arena}, now);
            REQUIRE(now == before);
            r.driver.reset();
            r.driver.init();
            continue;
        }
        std::vector<std::vector<Piece>> chains(pick(rng, 1, 12));
        std::vector<bool> indirect;
        r.driver.hold_avail(true);
        std::map<uint16_t, size_t> by_head;
        for (size_t c = 0; c < chains.size(); ++c) {
            auto builder = r.driver.chain();
            const size_t n = pick(rng, 1, 4);
            for (size_t i = 0; i < n; ++i) {
                Piece p{arena + pick(rng, 0, kArenaSize - 1),
                        static_cast<uint32_t>(pick(rng, 1, 40000)), !chance(rng, 0.1)};
                p.len =
                    static_cast<uint32_t>(std::min<uint64_t>(p.len, arena + kArenaSize - p.addr));
                if (chance(rng, 0.03)) p.len = 0;
                if (chance(rng, 0.03)) p.addr = ram_end - pick(rng, 0, 64);
                chains[c].push_back(p);
                if (p.writable)
                    builder.writable(GuestAddress{p.addr}, p.len);
                else
                    builder.readable(GuestAddress{p.addr}, p.len);
            }
            const bool ind = chance(rng, 0.3);
            indirect.push_back(ind);
            by_head[r.driver.submit(builder.indirect(ind).build())] = c;
        }
        r.driver.hold_avail(false);
        r.driver.kick();
        const auto used = r.driver.reap(); // throws on a head twice or unknown
        REQUIRE(used.size() == chains.size());
        r.mem.read_bytes(GuestAddress{arena}, now);
        std::vector<bool> may_change(kArenaSize, false);
        for (const auto& e : used) {
            const auto& pieces = chains[by_head.at(static_cast<uint16_t>(e.id))];
            bool good = true;
            uint64_t total = 0;
            for (const auto& p : pieces) {
                good = good && p.writable && p.len > 0 && p.addr + p.len <= ram_end;
                total += p.len;
            }
            if (!good) {
                ++seen[std::any_of(pieces.begin(), pieces.end(),
                                   [](const Piece& p) { return !p.writable; })
                           ? "readable buffer"
                           : "malformed chain"];
                CHECK(e.len == 0);
                continue;
            }
            ++seen[total > VirtioRng::kMaxBytesPerRequest ? "over 64 KiB" : "good"];
            const uint64_t want = std::min<uint64_t>(total, VirtioRng::kMaxBytesPerRequest);
            CHECK(e.len == want);
            // The first `want` bytes of the chain, piece by piece.
            uint64_t left = want;
            for (const auto& p : pieces) {
                const uint64_t n = std::min<uint64_t>(p.len, left);
                for (uint64_t i = 0; i < n; ++i)
                    may_change[p.addr - arena + i] = true;
                left -= n;
            }
        }
        for (uint64_t i = 0; i < kArenaSize; ++i)
            if (!may_change[i] && now[i] != before[i])
                FAIL("guest byte ", arena + i, " changed outside every good chain's fill");
        // A filled buffer was filled: over what it may hold, most bytes differ
        // from the random bytes it held before (1 in 256 match by chance).
        uint64_t filled = 0, same = 0;
        for (uint64_t i = 0; i < kArenaSize; ++i)
            if (may_change[i]) {
                ++filled;
                same += now[i] == before[i] ? 1 : 0;
            }
        CHECK(same <= filled / 64 + 8);
        REQUIRE((r.transport->status() & kStatusNeedsReset) == 0);
    }
    for (const char* rule :
         {"good", "over 64 KiB", "readable buffer", "malformed chain", "broken ring"})
        CHECK_MESSAGE(seen[rule] > 0, "no batch tested: ", rule);
}
