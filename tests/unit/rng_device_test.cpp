// virtio entropy device (virtio 1.2 §5.4), driven by the software guest driver:
// its kicks are served inside the QueueNotify write (kicks_inline), so every
// request below has completed by the time kick() returns.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "devices/rng/virtio_rng.h"
#include "devices/virtio/mmio_transport.h"
#include "tests/support/guest_driver.h"

using namespace ember;
using namespace ember::testing;
using namespace ember::virtio;

namespace {
struct RngRig {
    explicit RngRig(VirtioRng::RandomSource source = {}, uint16_t queue_size = 16)
        : mem(GuestMemory::flat(8 << 20)),
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
