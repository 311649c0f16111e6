// virtio network device (virtio 1.2 §5.1), driven by two software guest
// drivers (one per queue: receiveq 0, transmitq 1) against a SOCK_SEQPACKET
// socket pair standing in for the tap: one frame per send/recv, as a tap's
// read and write.
#include <doctest/doctest.h>

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "devices/net/net_spec.h"
#include "devices/net/tap.h"
#include "devices/net/virtio_net.h"
#include "devices/virtio/mmio_transport.h"
#include "tests/support/fuzz_random.h"
#include "tests/support/guest_driver.h"

using namespace ember;
using namespace ember::testing;
using namespace ember::virtio;
using namespace std::chrono_literals;

namespace {
constexpr uint32_t kHdr = 12;
const MacAddress kMac{0x06, 0x00, 0xac, 0x10, 0x00, 0x02};

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i)
        v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 8));
    return v;
}

struct NetRig {
    explicit NetRig(std::optional<MacAddress> mac = kMac, uint16_t queue_size = 16,
                    RateLimit rx_limit = {}, RateLimit tx_limit = {})
        : mem(GuestMemory::flat(16 << 20)) {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
        peer = UniqueFd(fds[1]);
        NetSpec spec{"net0", "ember-test0", mac, rx_limit, tx_limit};
        transport = std::make_unique<VirtioMmioTransport>(
            mem, std::make_unique<VirtioNet>(spec, UniqueFd(fds[0])), EventFd{});
        rx = std::make_unique<GuestDriver>(mem, *transport, opts(queue_size, 0x10'0000));
        tx = std::make_unique<GuestDriver>(mem, *transport, opts(queue_size, 0x80'0000));
    }
    static DriverOptions opts(uint16_t queue_size, uint64_t heap) {
        DriverOptions o;
        o.queue_size = queue_size;
        o.heap_base = GuestAddress{heap};
        return o;
    }
    void init(uint64_t features = ~0ull) {
        const uint64_t f = rx->device_features() & features;
        REQUIRE(rx->negotiate(f));
        rx->setup_queue(0);
        tx->share_features(f);
        tx->setup_queue(1);
        rx->driver_ok();
        REQUIRE((rx->read32(mmio::kStatus) & kStatusDriverOk) != 0);
    }
    VirtioNet& net() { return static_cast<VirtioNet&>(transport->device()); }

    // Used elements of `d` until `n` came back (the device works on its own
    // thread), or what came within the timeout.
    static std::vector<VirtqUsedElem> reap(GuestDriver& d, size_t n,
                                           std::chrono::milliseconds timeout = 5s) {
        std::vector<VirtqUsedElem> all;
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (all.size() < n && std::chrono::steady_clock::now() < deadline) {
            auto got = d.reap();
            all.insert(all.end(), got.begin(), got.end());
            if (all.size() < n) std::this_thread::sleep_for(1ms);
        }
        return all;
    }
    // The next frame the device sent, or empty after the timeout.
    std::vector<uint8_t> host_receive(int timeout_ms = 5000) {
        pollfd p{peer.get(), POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) return {};
        std::vector<uint8_t> buf(70000);
        const ssize_t n = ::recv(peer.get(), buf.data(), buf.size(), 0);
        buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
        return buf;
    }
    void host_send(const std::vector<uint8_t>& frame) {
        REQUIRE(::send(peer.get(), frame.data(), frame.size(), 0) ==
                static_cast<ssize_t>(frame.size()));
    }
    std::vector<uint8_t> bytes(GuestAddress a, uint32_t n) {
        std::vector<uint8_t> v(n);
        mem.read_bytes(a, v);
        return v;
    }
    // A transmit chain: a 12-byte header (its contents the guest's), the frame.
    uint16_t send_frame(const std::vector<uint8_t>& frame, bool split, bool indirect,
                        uint8_t header_fill = 0) {
        std::vector<uint8_t> hdr(kHdr, header_fill);
        auto c = tx->chain();
        c.readable(hdr);
        if (split) {
            const size_t half = frame.size() / 2;
            c.readable(std::span(frame).first(half)).readable(std::span(frame).subspan(half));
        } else {
            c.readable(frame);
        }
        c.indirect(indirect);
        const uint16_t head = tx->submit(c.build());
        tx->kick();
        return head;
    }

    GuestMemory mem;
    UniqueFd peer;
    std::unique_ptr<VirtioMmioTransport> transport;
    std::unique_ptr<GuestDriver> rx, tx;
};
} // namespace

TEST_CASE("virtio-net: device 1, MAC and link status in its configuration space") {
    NetRig r;
    CHECK(r.rx->read32(mmio::kDeviceId) == kDeviceIdNet);
    const uint64_t f = r.rx->device_features();
    CHECK((f & net::kFeatureMac) != 0);
    CHECK((f & net::kFeatureStatus) != 0);
    CHECK((f & kFeatureVersion1) != 0);
    // No offloads, mergeable buffers or control queue (bits 0-4, 7-15, 17-23).
    CHECK((f & 0x00ff'ffdfull & ~net::kFeatureStatus) == 0);
    uint8_t cfg[8] = {};
    r.transport->read(mmio::kConfig, {cfg, 8});
    CHECK(std::memcmp(cfg, kMac.data(), 6) == 0);
    CHECK(cfg[6] == net::kStatusLinkUp);
    CHECK(cfg[7] == 0);
    for (uint16_t q : {0, 1, 2}) {
        r.rx->write32(mmio::kQueueSel, q);
        CHECK(r.rx->read32(mmio::kQueueNumMax) == (q < 2 ? kMaxQueueSize : 0u));
    }
    // The driver cannot change the MAC (no CTRL_MAC_ADDR).
    uint8_t junk[6] = {1, 2, 3, 4, 5, 6};
    r.transport->write(mmio::kConfig, {junk, 6});
    r.transport->read(mmio::kConfig, {cfg, 8});
    CHECK(std::memcmp(cfg, kMac.data(), 6) == 0);

    NetRig no_mac(std::nullopt);
    CHECK((no_mac.rx->device_features() & net::kFeatureMac) == 0);
}

TEST_CASE("virtio-net: the guest's frames reach the tap byte-exact, without its header") {
    NetRig r;
    r.init();
    const auto a = pattern(60, 1), b = pattern(1514, 2), c = pattern(9000, 3);
    // Header bytes the guest filled (e.g. a GSO request) are not passed on.
    r.send_frame(a, false, false, 0xff);
    r.send_frame(b, true, false);
    r.send_frame(c, true, true);
    CHECK(r.host_receive() == a);
    CHECK(r.host_receive() == b);
    CHECK(r.host_receive() == c);
    const auto used = NetRig::reap(*r.tx, 3);
    REQUIRE(used.size() == 3);
    for (const auto& u : used)
        CHECK(u.len == 0); // nothing written into a transmit chain
    const auto s = r.net().stats();
    CHECK(s.tx_frames == 3);
    CHECK(s.tx_bytes == 60 + 1514 + 9000);
    CHECK(s.bad_requests == 0);
    CHECK(r.host_receive(50).empty()); // nothing else was sent
}

TEST_CASE("virtio-net: frames from the tap land in receive buffers after a zeroed header") {
    NetRig r;
    r.init();
    // One buffer with header and data; one with the header alone first.
    const GuestAddress one = r.rx->alloc(kHdr + 1518);
    const GuestAddress h2 = r.rx->alloc(kHdr);
    const GuestAddress d2 = r.rx->alloc(1518);
    r.mem.write_bytes(one, std::vector<uint8_t>(kHdr + 1518, 0xee));
    r.mem.write_bytes(h2, std::vector<uint8_t>(kHdr, 0xee));
    r.rx->submit(r.rx->chain().writable(one, kHdr + 1518).build());
    r.rx->submit(r.rx->chain().writable(h2, kHdr).writable(d2, 1518).indirect().build());
    r.rx->kick();
    const auto f1 = pattern(1514, 9), f2 = pattern(42, 10);
    r.host_send(f1);
    r.host_send(f2);
    const auto used = NetRig::reap(*r.rx, 2);
    REQUIRE(used.size() == 2);
    CHECK(used[0].len == kHdr + 1514);
    CHECK(used[1].len == kHdr + 42);
    std::vector<uint8_t> want_hdr(kHdr, 0);
    want_hdr[10] = 1; // num_buffers
    CHECK(r.bytes(one, kHdr) == want_hdr);
    CHECK(r.bytes(GuestAddress{one.value + kHdr}, 1514) == f1);
    CHECK(r.bytes(GuestAddress{one.value + kHdr + 1514}, 4) == std::vector<uint8_t>(4, 0xee));
    CHECK(r.bytes(h2, kHdr) == want_hdr);
    CHECK(r.bytes(d2, 42) == f2);
    CHECK((r.transport->interrupt_status() & kInterruptUsedBuffer) != 0);
    const auto s = r.net().stats();
    CHECK(s.rx_frames == 2);
    CHECK(s.rx_bytes == 1514 + 42);
}

TEST_CASE("virtio-net: a frame waits for a receive buffer, and frames keep their order") {
    NetRig r;
    r.init();
    const auto f1 = pattern(100, 1), f2 = pattern(200, 2), f3 = pattern(300, 3);
    r.host_send(f1);
    r.host_send(f2);
    r.host_send(f3);
    std::this_thread::sleep_for(50ms); // the device read one and has nowhere to put it
    CHECK(r.net().stats().rx_frames == 0);
    std::vector<GuestAddress> bufs;
    for (int i = 0; i < 3; ++i) {
        bufs.push_back(r.rx->alloc(kHdr + 1518));
        r.rx->submit(r.rx->chain().writable(bufs.back(), kHdr + 1518).build());
        r.rx->kick();
    }
    const auto used = NetRig::reap(*r.rx, 3);
    REQUIRE(used.size() == 3);
    CHECK(r.bytes(GuestAddress{bufs[0].value + kHdr}, 100) == f1);
    CHECK(r.bytes(GuestAddress{bufs[1].value + kHdr}, 200) == f2);
    CHECK(r.bytes(GuestAddress{bufs[2].value + kHdr}, 300) == f3);
    CHECK(r.net().stats().rx_dropped == 0);
}

TEST_CASE("virtio-net: a frame larger than the receive buffer is dropped, the buffer empty") {
    NetRig r;
    r.init();
    const GuestAddress b1 = r.rx->alloc(kHdr + 1000), b2 = r.rx->alloc(kHdr + 1000);
    r.rx->submit(r.rx->chain().writable(b1, kHdr + 1000).build());
    r.rx->submit(r.rx->chain().writable(b2, kHdr + 1000).build());
    r.rx->kick();
    r.host_send(pattern(1001, 1)); // one byte too many
    const auto fits = pattern(1000, 2);
    r.host_send(fits);
    const auto used = NetRig::reap(*r.rx, 2);
    REQUIRE(used.size() == 2);
    CHECK(used[0].len == 0);
    CHECK(used[1].len == kHdr + 1000);
    CHECK(r.bytes(GuestAddress{b2.value + kHdr}, 1000) == fits);
    CHECK(r.net().stats().rx_dropped == 1);
    CHECK(r.net().stats().rx_frames == 1);
}

TEST_CASE("virtio-net: chains with the wrong buffers are completed empty, and the queues go on") {
    NetRig r;
    r.init();
    // Transmit: a device-writable buffer; shorter than the header and an
    // Ethernet header; outside RAM.
    r.tx->submit(r.tx->chain().readable(std::vector<uint8_t>(kHdr + 60, 1)).writable(16).build());
    r.tx->submit(r.tx->chain().readable(std::vector<uint8_t>(kHdr + 13, 1)).build());
    r.tx->submit(r.tx->chain().readable(GuestAddress{64ull << 20}, 100).build());
    const auto good = pattern(64, 5);
    r.send_frame(good, false, false);
    CHECK(r.host_receive() == good); // only the good one was sent
    CHECK(r.host_receive(50).empty());
    CHECK(NetRig::reap(*r.tx, 4).size() == 4);
    // Receive: a device-readable buffer; no room for the header.
    r.rx->submit(r.rx->chain().readable(std::vector<uint8_t>(64, 1)).writable(kHdr + 1518).build());
    r.rx->submit(r.rx->chain().writable(kHdr - 1).build());
    const GuestAddress ok = r.rx->alloc(kHdr + 1518);
    r.rx->submit(r.rx->chain().writable(ok, kHdr + 1518).build());
    r.rx->kick();
    const auto frame = pattern(70, 6);
    r.host_send(frame);
    const auto used = NetRig::reap(*r.rx, 3);
    REQUIRE(used.size() == 3);
    CHECK(used[0].len == 0);
    CHECK(used[1].len == 0);
    CHECK(used[2].len == kHdr + 70);
    CHECK(r.bytes(GuestAddress{ok.value + kHdr}, 70) == frame);
    const auto s = r.net().stats();
    CHECK(s.bad_requests == 5);
    CHECK(s.tx_frames == 1);
    CHECK(s.rx_frames == 1);
    CHECK((r.transport->status() & kStatusNeedsReset) == 0);
}

TEST_CASE("virtio-net: more bad receive chains than one handler serves do not stall a frame") {
    // The thread serves 64 chains per turn; the rest must follow without a
    // kick (with EVENT_IDX the guest would not send one).
    NetRig r(kMac, 128);
    r.init();
    // The frame first: the device reads it and waits for a buffer (and no
    // longer watches the tap, which could otherwise wake it again).
    const auto frame = pattern(300, 4);
    r.host_send(frame);
    std::this_thread::sleep_for(50ms);
    for (int i = 0; i < 100; ++i)
        r.rx->submit(r.rx->chain().readable(std::vector<uint8_t>(64, 1)).build());
    const GuestAddress ok = r.rx->alloc(kHdr + 1518);
    r.rx->submit(r.rx->chain().writable(ok, kHdr + 1518).build());
    r.rx->kick();
    const auto used = NetRig::reap(*r.rx, 101);
    REQUIRE(used.size() == 101);
    CHECK(used[100].len == kHdr + 300);
    CHECK(r.bytes(GuestAddress{ok.value + kHdr}, 300) == frame);
    CHECK(r.net().stats().bad_requests == 100);
}

TEST_CASE("virtio-net: a broken transmit ring stops this device, and a reset recovers it") {
    NetRig r;
    r.init();
    r.tx->set_avail_idx_raw(40); // more than the queue size ahead
    r.tx->write32(mmio::kQueueNotify, 1);
    for (int i = 0; i < 500 && (r.transport->status() & kStatusNeedsReset) == 0; ++i)
        std::this_thread::sleep_for(1ms);
    CHECK((r.transport->status() & kStatusNeedsReset) != 0);
    CHECK(r.net().stats().tx_frames == 0);
    r.rx->reset();
    r.init();
    const auto f = pattern(80, 7);
    r.send_frame(f, false, false);
    CHECK(r.host_receive() == f);
}

TEST_CASE("virtio-net: a parked device moves no frame until released; reset stops it") {
    NetRig r;
    r.init();
    const GuestAddress buf = r.rx->alloc(kHdr + 1518);
    r.rx->submit(r.rx->chain().writable(buf, kHdr + 1518).build());
    r.rx->kick();
    r.net().quiesce();
    const auto in = pattern(500, 1), out = pattern(600, 2);
    r.host_send(in);
    r.send_frame(out, false, false);
    std::this_thread::sleep_for(50ms);
    CHECK(r.net().stats().rx_frames == 0);
    CHECK(r.net().stats().tx_frames == 0);
    CHECK(r.host_receive(20).empty());
    r.net().unquiesce();
    CHECK(r.host_receive() == out);
    REQUIRE(NetRig::reap(*r.rx, 1).size() == 1);
    CHECK(r.bytes(GuestAddress{buf.value + kHdr}, 500) == in);

    r.rx->reset(); // status 0: the device lets go of the tap
    r.host_send(in);
    std::this_thread::sleep_for(50ms);
    CHECK(r.net().stats().rx_frames == 1);
}

TEST_CASE("virtio-net: checkpoint and restore: nothing in flight, both queues go on") {
    NetRig r;
    // A second descriptor of the device's end of the socket pair: the
    // restored device's "tap" (ember opens the tap again by name).
    UniqueFd again(::dup(r.net().backend_fd()));
    REQUIRE(again);
    r.init();
    std::vector<GuestAddress> bufs;
    for (int i = 0; i < 4; ++i) {
        bufs.push_back(r.rx->alloc(kHdr + 1518));
        r.rx->submit(r.rx->chain().writable(bufs.back(), kHdr + 1518).build());
    }
    r.rx->kick();
    const auto a = pattern(100, 1), t1 = pattern(200, 2);
    r.host_send(a);
    REQUIRE(NetRig::reap(*r.rx, 1).size() == 1);
    r.send_frame(t1, false, false);
    CHECK(r.host_receive() == t1);
    REQUIRE(NetRig::reap(*r.tx, 1).size() == 1);

    r.transport->quiesce();
    CHECK(r.transport->inflight_requests() == 0);
    const auto blob = r.transport->save_state();
    r.transport->unquiesce();
    r.transport->shutdown();

    auto restored = std::make_unique<VirtioMmioTransport>(
        r.mem, std::make_unique<VirtioNet>(r.net().spec(), std::move(again)), EventFd{});
    restored->restore_state(blob);
    r.rx->rebind(*restored);
    r.tx->rebind(*restored);
    auto& net = static_cast<VirtioNet&>(restored->device());
    // The three buffers posted before the checkpoint take the next frames.
    const auto b = pattern(300, 3), t2 = pattern(400, 4);
    r.host_send(b);
    const auto used = NetRig::reap(*r.rx, 1);
    REQUIRE(used.size() == 1);
    CHECK(used[0].len == kHdr + 300);
    CHECK(r.bytes(GuestAddress{bufs[1].value + kHdr}, 300) == b);
    r.send_frame(t2, true, true);
    CHECK(r.host_receive() == t2);
    REQUIRE(NetRig::reap(*r.tx, 1).size() == 1);
    CHECK(r.rx->used_idx() == 2);
    CHECK(r.tx->used_idx() == 2);
    CHECK(net.stats().rx_frames == 1); // counters start again in the new process
    CHECK(net.stats().tx_frames == 1);
}

TEST_CASE("virtio-net: --net values, MAC addresses and tap names") {
    auto s = parse_net_spec("tap=tap0,mac=06:00:AC:10:00:02,id=eth-a");
    CHECK(s.tap == "tap0");
    CHECK(s.id == "eth-a");
    REQUIRE(s.mac);
    CHECK(format_mac(*s.mac) == "06:00:ac:10:00:02");
    CHECK_FALSE(parse_net_spec("tap=tap1").mac);
    CHECK_THROWS_WITH_AS(parse_net_spec("mac=06:00:ac:10:00:02"),
                         doctest::Contains("tap=NAME is required"), NetSpecError);
    CHECK_THROWS_WITH_AS(parse_net_spec("tap="), doctest::Contains("empty"), NetSpecError);
    CHECK_THROWS_WITH_AS(parse_net_spec("tap=a-very-long-tap-name"),
                         doctest::Contains("at most 15"), NetSpecError);
    CHECK_THROWS_WITH_AS(parse_net_spec("tap=a/b"), doctest::Contains("'/'"), NetSpecError);
    CHECK_THROWS_WITH_AS(parse_net_spec("tap=t,mac=07:00:ac:10:00:02"),
                         doctest::Contains("multicast"), NetSpecError);
    CHECK_THROWS_WITH_AS(parse_net_spec("tap=t,mac=zz:00:ac:10:00:02"),
                         doctest::Contains("hex pairs"), NetSpecError);
    CHECK_THROWS_WITH_AS(parse_net_spec("tap=t,mac=00:00:00:00:00:00"),
                         doctest::Contains("all zeroes"), NetSpecError);
    CHECK_THROWS_WITH_AS(parse_net_spec("tap=t,speed=10"), doctest::Contains("unknown option"),
                         NetSpecError);
    CHECK_THROWS_WITH_AS(parse_net_spec("tap=t,id=a b"), doctest::Contains("only letters"),
                         NetSpecError);
    std::vector<NetSpec> specs{parse_net_spec("tap=t0"), parse_net_spec("tap=t1,id=up")};
    resolve_net_ids(specs);
    CHECK(specs[0].id == "net0");
    CHECK(specs[1].id == "up");
    std::vector<NetSpec> same_tap{parse_net_spec("tap=t0"), parse_net_spec("tap=t0")};
    CHECK_THROWS_WITH_AS(resolve_net_ids(same_tap), doctest::Contains("its own"), NetSpecError);
    std::vector<NetSpec> many(kMaxNets + 1, parse_net_spec("tap=t"));
    CHECK_THROWS_WITH_AS(resolve_net_ids(many), doctest::Contains("at most 4"), NetSpecError);
}

TEST_CASE("virtio-net: --net rate limits") {
    const auto s = parse_net_spec("tap=t,rx-bw=1M,rx-bw-burst=64K,tx-ops=100,rx-ops=5");
    CHECK(s.rx_limit.bandwidth == TokenBucketSpec{1 << 20, 64 << 10, 1000});
    CHECK(s.rx_limit.ops == TokenBucketSpec{5, 0, 1000});
    CHECK(s.tx_limit.ops == TokenBucketSpec{100, 0, 1000});
    CHECK_FALSE(s.tx_limit.bandwidth);
    CHECK_FALSE(parse_net_spec("tap=t").rx_limit.enabled());
    CHECK_THROWS_WITH_AS(parse_net_spec("tap=t,tx-bw=0"),
                         doctest::Contains("tx-bw \"0\" is not a number of bytes"), NetSpecError);
    CHECK_THROWS_WITH_AS(parse_net_spec("tap=t,rx-ops=1K"),
                         doctest::Contains("rx-ops \"1K\" is not a number of frames"),
                         NetSpecError);
    CHECK_THROWS_WITH_AS(parse_net_spec("tap=t,tx-ops-burst=10"),
                         doctest::Contains("tx-ops-burst= needs tx-ops="), NetSpecError);
    CHECK_THROWS_WITH_AS(parse_net_spec("tap=t,rx-bw=1M,rx-bw=2M"),
                         doctest::Contains("given twice"), NetSpecError);
    NetSpec bad{"n", "t", std::nullopt, {}, RateLimit{TokenBucketSpec{10, 0, 0}, std::nullopt}};
    CHECK_THROWS_WITH_AS(check_net_spec(bad),
                         doctest::Contains("transmit rate limit's bandwidth bucket"), NetSpecError);
}

// The rate limits hold a frame back at least until its token is refilled:
// the checks are lower bounds on time (a slow machine only adds to them) or
// use refill times far beyond the test's waits.
TEST_CASE("virtio-net: the transmit rate limit holds frames back, in order, until refilled") {
    // Two frames at once, then one per 100 ms.
    NetRig r(kMac, 16, {}, RateLimit{std::nullopt, TokenBucketSpec{2, 0, 200}});
    r.init();
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::vector<uint8_t>> frames;
    for (uint8_t i = 0; i < 4; ++i) {
        frames.push_back(pattern(100 + i, i));
        r.send_frame(frames.back(), false, false);
    }
    CHECK(r.host_receive() == frames[0]);
    CHECK(r.host_receive() == frames[1]);
    for (size_t i = 2; i < 4; ++i) {
        CHECK(r.host_receive() == frames[i]);
        const auto elapsed = std::chrono::steady_clock::now() - start;
        CHECK(elapsed >= std::chrono::milliseconds(100 * (i - 1)) - 1ms);
    }
    REQUIRE(NetRig::reap(*r.tx, 4).size() == 4);
    const auto st = r.net().stats();
    CHECK(st.tx_frames == 4);
    CHECK(st.tx_throttled >= 2);
    CHECK(st.rx_throttled == 0);
}

TEST_CASE("virtio-net: the receive rate limit leaves frames in the tap until refilled") {
    // One frame per 300 ms, in bytes: each 1000-byte frame takes a full bucket.
    NetRig r(kMac, 16, RateLimit{TokenBucketSpec{1000, 0, 300}, std::nullopt});
    r.init();
    std::vector<GuestAddress> bufs;
    for (int i = 0; i < 3; ++i) {
        bufs.push_back(r.rx->alloc(kHdr + 1518));
        r.rx->submit(r.rx->chain().writable(bufs.back(), kHdr + 1518).build());
    }
    r.rx->kick();
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::vector<uint8_t>> frames;
    for (uint8_t i = 0; i < 3; ++i) {
        frames.push_back(pattern(1000, i));
        r.host_send(frames.back());
    }
    std::vector<VirtqUsedElem> used;
    while (used.size() < 3) {
        const auto got = NetRig::reap(*r.rx, 1);
        REQUIRE(got.size() >= 1);
        const auto elapsed = std::chrono::steady_clock::now() - start;
        used.insert(used.end(), got.begin(), got.end());
        // The n-th frame (from 0) needs n refills of 300 ms.
        CHECK(elapsed >= std::chrono::milliseconds(300 * (used.size() - 1)) - 1ms);
    }
    for (size_t i = 0; i < 3; ++i) {
        CHECK(used[i].len == kHdr + 1000);
        CHECK(r.bytes(GuestAddress{bufs[i].value + kHdr}, 1000) == frames[i]);
    }
    CHECK(r.net().stats().rx_throttled >= 2);
    CHECK(r.net().stats().rx_frames == 3);
}

TEST_CASE("virtio-net: a new limit applies at once to the frame held back") {
    // One frame a minute: the second waits far longer than this test.
    const RateLimit slow{std::nullopt, TokenBucketSpec{1, 0, 60000}};
    NetRig r(kMac, 16, slow, slow);
    r.init();
    const auto a = pattern(200, 1), b = pattern(300, 2);
    r.send_frame(a, false, false);
    r.send_frame(b, false, false);
    CHECK(r.host_receive() == a);
    CHECK(r.host_receive(100).empty()); // held
    CHECK(r.net().describe().find("transmit rate limit holds head") != std::string::npos);
    r.net().set_tx_rate_limit({}); // lifted
    CHECK(r.host_receive() == b);
    CHECK(r.net().tx_rate_limit() == RateLimit{});

    const GuestAddress buf1 = r.rx->alloc(kHdr + 1518), buf2 = r.rx->alloc(kHdr + 1518);
    r.rx->submit(r.rx->chain().writable(buf1, kHdr + 1518).build());
    r.rx->submit(r.rx->chain().writable(buf2, kHdr + 1518).build());
    r.rx->kick();
    r.host_send(a);
    r.host_send(b);
    REQUIRE(NetRig::reap(*r.rx, 1).size() == 1);
    CHECK(NetRig::reap(*r.rx, 1, 100ms).empty()); // the second waits for the minute
    // A faster limit, not none: the waiting frame asks it at once.
    r.net().set_rx_rate_limit(RateLimit{std::nullopt, TokenBucketSpec{10, 0, 1000}});
    REQUIRE(NetRig::reap(*r.rx, 1).size() == 1);
    CHECK(r.bytes(GuestAddress{buf2.value + kHdr}, 300) == b);
}

TEST_CASE("virtio-net: a checkpoint with a frame held back: the restore sends it, once") {
    const RateLimit slow{std::nullopt, TokenBucketSpec{1, 0, 60000}};
    NetRig r(kMac, 16, {}, slow);
    UniqueFd again(::dup(r.net().backend_fd()));
    REQUIRE(again);
    r.init();
    const auto a = pattern(200, 1), b = pattern(300, 2), c = pattern(400, 3);
    r.send_frame(a, false, false);
    r.send_frame(b, false, false);
    CHECK(r.host_receive() == a);
    REQUIRE(NetRig::reap(*r.tx, 1).size() == 1);

    r.transport->quiesce();
    CHECK(r.transport->inflight_requests() == 1); // the held chain
    const auto fills = r.net().rate_limit_fills(std::chrono::steady_clock::now());
    CHECK_FALSE(fills.rx);
    REQUIRE(fills.tx);
    REQUIRE(fills.tx->ops);
    CHECK(fills.tx->ops->budget == -1); // a, and b charged: the restore sends it unasked
    const auto blob = r.transport->save_state();
    r.transport->unquiesce();
    r.transport->shutdown();
    CHECK(r.host_receive(100).empty()); // the old device never sent it

    auto dev = std::make_unique<VirtioNet>(r.net().spec(), std::move(again));
    dev->restore_rate_limit_fills(fills);
    auto restored = std::make_unique<VirtioMmioTransport>(r.mem, std::move(dev), EventFd{});
    restored->restore_state(blob);
    r.rx->rebind(*restored);
    r.tx->rebind(*restored);
    CHECK(r.host_receive() == b);
    REQUIRE(NetRig::reap(*r.tx, 1).size() == 1);
    CHECK(r.tx->used_idx() == 2);
    // The restored buckets are in debt, not full: the next frame waits.
    r.send_frame(c, false, false);
    CHECK(r.host_receive(200).empty());
    CHECK(static_cast<VirtioNet&>(restored->device()).stats().tx_frames == 1);

    // A fill that does not fit the limit is refused with the device's name.
    VirtioNet other(NetSpec{"net9", "t", std::nullopt}, UniqueFd(::dup(r.peer.get())));
    CHECK_THROWS_WITH_AS(other.restore_rate_limit_fills(fills),
                         doctest::Contains("virtio-net net9"), Error);
}

TEST_CASE("virtio-net: a tap that cannot be had is an error naming it") {
    // A name the kernel would refuse never reaches it.
    CHECK_THROWS_WITH_AS(open_tap("x/y"), doctest::Contains("'/'"), Error);
    if (::geteuid() == 0) {
        // Root may create taps; a name taken by a non-tap interface is refused.
        CHECK_THROWS_WITH_AS(open_tap("lo"), doctest::Contains("tap lo"), Error);
    }
}

// A hostile guest: random chains on both queues (direct or indirect; readable,
// writable, zero-length, crossing the end of RAM, in any mix), sometimes a
// transmit ring it breaks. Per batch: each head comes back once (the driver
// checks); exactly the well-formed transmit chains reach the tap, in order,
// each as its bytes after the 12-byte header; host frames go, in order, to
// the well-formed receive chains (one too large is dropped and its chain
// comes back empty), every other receive chain comes back empty, and no
// byte of the receive arena changes but the header and frame written into a
// good chain; a broken ring sets DEVICE_NEEDS_RESET and a reset recovers.
//
// With rate limits (`limits`): the same, and now and then a batch changes
// them while frames wait (the new buckets start full, so nothing stalls).
namespace {
void hostile_guest(const RateLimit& rx_limit, const RateLimit& tx_limit, uint64_t default_batches,
                   bool change_limits) {
    const uint64_t seed = env_or("EMBER_FUZZ_SEED", 11);
    const uint64_t batches = env_or("EMBER_FUZZ_BATCHES", default_batches);
    INFO("seed ", seed, " (EMBER_FUZZ_SEED)");
    Rng rng(seed);
    NetRig r(kMac, 64, rx_limit, tx_limit);
    r.init();
    // Transmit data at 14 MiB, receive buffers at 15 MiB, above the drivers'
    // heaps (each reset lays out new indirect tables there); some pieces
    // cross the end of RAM (16 MiB); pieces never overlap.
    const uint64_t tx_arena = 14 << 20, rx_arena = 15 << 20, ram_end = r.mem.total_size();
    constexpr size_t kArena = 64 << 10;
    auto fill_random = [&](std::vector<uint8_t>& v) {
        for (size_t i = 0; i < v.size(); i += 8) {
            const uint64_t word = rng();
            std::memcpy(&v[i], &word, 8);
        }
    };
    struct Piece {
        uint64_t addr;
        uint32_t len;
        bool writable;
    };
    auto good_chain = [&](const std::vector<Piece>& c, bool want_writable) {
        for (const auto& p : c)
            if (p.len == 0 || p.addr + p.len > ram_end || p.writable != want_writable) return false;
        return true;
    };
    // Random pieces from `arena` on (bump-allocated), mostly of `writable`.
    auto make_chain = [&](uint64_t& next, bool writable, bool clean = false) {
        std::vector<Piece> c(pick(rng, 1, 4));
        for (auto& p : c) {
            p = Piece{next, static_cast<uint32_t>(pick(rng, clean ? kHdr : 1, 900)), writable};
            next += p.len;
            if (clean) continue;
            if (chance(rng, 0.08)) p.writable = !writable;
            if (chance(rng, 0.03)) p.len = 0;
            if (chance(rng, 0.03)) { // crosses the end of RAM
                p.addr = ram_end - pick(rng, 0, 64);
                p.len = static_cast<uint32_t>(65 + pick(rng, 0, 100));
            }
        }
        return c;
    };
    auto submit = [&](GuestDriver& d, const std::vector<Piece>& c) {
        auto b = d.chain();
        for (const auto& p : c)
            p.writable ? b.writable(GuestAddress{p.addr}, p.len)
                       : b.readable(GuestAddress{p.addr}, p.len);
        return d.submit(b.indirect(chance(rng, 0.3)).build());
    };
    uint64_t bad = 0, sent = 0, delivered = 0, dropped = 0;
    for (uint64_t batch = 0; batch < batches; ++batch) {
        CAPTURE(batch);
        REQUIRE(r.tx->alloc(1).value < tx_arena); // the heap has not grown into the arena
        if (chance(rng, 0.03)) {
            r.tx->set_avail_idx_raw(
                static_cast<uint16_t>(r.tx->used_idx() + 64 + 1 + pick(rng, 0, 100)));
            r.tx->write32(mmio::kQueueNotify, 1);
            for (int i = 0; i < 2000 && (r.transport->status() & kStatusNeedsReset) == 0; ++i)
                std::this_thread::sleep_for(1ms);
            REQUIRE((r.transport->status() & kStatusNeedsReset) != 0);
            CHECK(r.host_receive(0).empty());
            r.rx->reset();
            r.init();
            continue;
        }
        // --- transmit ---
        std::vector<uint8_t> tx_bytes(kArena); // at most 12 chains of 4 x 900 bytes
        fill_random(tx_bytes);
        r.mem.write_bytes(GuestAddress{tx_arena}, tx_bytes);
        uint64_t next = tx_arena;
        std::vector<std::vector<uint8_t>> want_frames;
        const size_t ntx = pick(rng, 0, 12);
        r.tx->hold_avail(true);
        for (size_t i = 0; i < ntx; ++i) {
            const auto c = make_chain(next, false);
            submit(*r.tx, c);
            uint64_t total = 0;
            for (const auto& p : c)
                total += p.len;
            if (!good_chain(c, false) || total < kHdr + 14) {
                ++bad;
                continue;
            }
            std::vector<uint8_t> all;
            for (const auto& p : c) {
                const auto b = r.bytes(GuestAddress{p.addr}, p.len);
                all.insert(all.end(), b.begin(), b.end());
            }
            want_frames.emplace_back(all.begin() + kHdr, all.end());
        }
        r.tx->hold_avail(false);
        r.tx->kick();
        if (change_limits && chance(rng, 0.1)) {
            // Tighter or looser while the batch waits on the old buckets.
            const RateLimit tx{std::nullopt, TokenBucketSpec{pick(rng, 1, 6), 0, pick(rng, 1, 20)}};
            r.net().set_tx_rate_limit(chance(rng, 0.3) ? RateLimit{} : tx);
        }
        const auto tx_used = NetRig::reap(*r.tx, ntx); // throws on a head twice or unknown
        REQUIRE(tx_used.size() == ntx);
        for (const auto& f : want_frames) {
            const auto got = r.host_receive();
            CAPTURE(f.size());
            CAPTURE(got.size());
            REQUIRE(got == f);
        }
        CHECK(r.host_receive(0).empty());
        sent += want_frames.size();

        // --- receive ---
        std::vector<uint8_t> before(kArena);
        fill_random(before);
        r.mem.write_bytes(GuestAddress{rx_arena}, before);
        next = rx_arena;
        std::vector<std::vector<Piece>> chains(pick(rng, 1, 12));
        std::map<uint16_t, size_t> by_head;
        r.rx->hold_avail(true);
        size_t good = 0;
        for (size_t i = 0; i < chains.size(); ++i) {
            // The device looks at a receive chain only with a frame in hand:
            // a well-formed last chain takes the last frame, so every chain
            // before it, good or bad, is served in this batch.
            chains[i] = make_chain(next, true, i + 1 == chains.size());
            by_head[submit(*r.rx, chains[i])] = i;
            uint64_t total = 0;
            for (const auto& p : chains[i])
                total += p.len;
            if (good_chain(chains[i], true) && total >= kHdr)
                ++good;
            else
                ++bad;
        }
        // Exactly one frame per good chain, so nothing is left for the next
        // batch; sizes around the chains' so some do not fit.
        std::vector<std::vector<uint8_t>> frames;
        for (size_t i = 0; i < good; ++i)
            frames.push_back(pattern(pick(rng, 14, 2400), static_cast<uint8_t>(rng())));
        r.rx->hold_avail(false);
        r.rx->kick();
        for (const auto& f : frames)
            r.host_send(f);
        if (change_limits && chance(rng, 0.1)) {
            const RateLimit rx{TokenBucketSpec{pick(rng, 500, 5000), 0, pick(rng, 1, 10)},
                               std::nullopt};
            r.net().set_rx_rate_limit(chance(rng, 0.3) ? RateLimit{} : rx);
        }
        const auto rx_used = NetRig::reap(*r.rx, chains.size());
        REQUIRE(rx_used.size() == chains.size());
        // The expected arena: frames matched to good chains in ring order.
        std::vector<uint8_t> expect = before;
        size_t fi = 0;
        for (const auto& e : rx_used) {
            const auto& c = chains[by_head.at(static_cast<uint16_t>(e.id))];
            uint64_t total = 0;
            for (const auto& p : c)
                total += p.len;
            if (!good_chain(c, true) || total < kHdr) {
                CHECK(e.len == 0);
                continue;
            }
            REQUIRE(fi < frames.size());
            const auto& f = frames[fi++];
            if (f.size() > total - kHdr) {
                CHECK(e.len == 0);
                ++dropped;
                continue;
            }
            CHECK(e.len == kHdr + f.size());
            ++delivered;
            std::vector<uint8_t> image(kHdr, 0);
            image[10] = 1;
            image.insert(image.end(), f.begin(), f.end());
            size_t at = 0;
            for (const auto& p : c)
                for (uint32_t k = 0; k < p.len && at < image.size(); ++k)
                    expect[p.addr - rx_arena + k] = image[at++];
        }
        CHECK(fi == frames.size());
        std::vector<uint8_t> now(before.size());
        r.mem.read_bytes(GuestAddress{rx_arena}, now);
        REQUIRE(now == expect);
    }
    const auto s = r.net().stats();
    CHECK(s.bad_requests == bad);
    CHECK(s.tx_frames == sent);
    CHECK(s.rx_frames == delivered);
    CHECK(s.rx_dropped == dropped);
    MESSAGE("sent ", sent, ", delivered ", delivered, ", dropped ", dropped, ", bad ", bad,
            ", throttled ", s.rx_throttled, " received and ", s.tx_throttled, " sent");
    if (rx_limit.enabled()) CHECK(s.rx_throttled > 0);
    if (tx_limit.enabled()) CHECK(s.tx_throttled > 0);
}
} // namespace

TEST_CASE("virtio-net hostile guest: random chains and broken rings") {
    hostile_guest({}, {}, 200, false);
}

// Buckets so small that most batches wait on them: 4 frames per 10 ms out,
// 4000 bytes per 5 ms in (some frames larger than the bucket, which go only
// from a full one and leave it in debt).
TEST_CASE("virtio-net hostile guest under rate limits, changed while frames wait") {
    hostile_guest(RateLimit{TokenBucketSpec{4000, 0, 5}, std::nullopt},
                  RateLimit{std::nullopt, TokenBucketSpec{4, 0, 10}}, 80, true);
}
