// virtio network device (virtio 1.2 §5.1), driven by two software guest
// drivers (one per queue: receiveq 0, transmitq 1) against a SOCK_SEQPACKET
// socket pair standing in for the tap: one frame per send/recv, as a tap's
// read and write.
#include <doctest/doctest.h>

#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "devices/net/net_spec.h"
#include "devices/net/tap.h"
#include "devices/net/virtio_net.h"
#include "devices/virtio/mmio_transport.h"
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
    explicit NetRig(std::optional<MacAddress> mac = kMac, uint16_t queue_size = 16)
        : mem(GuestMemory::flat(16 << 20)) {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
        peer = UniqueFd(fds[1]);
        NetSpec spec{"net0", "ember-test0", mac};
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
    // Transmit: a device-writable buffer; shorter than the header; outside RAM.
    r.tx->submit(r.tx->chain().readable(std::vector<uint8_t>(kHdr + 60, 1)).writable(16).build());
    r.tx->submit(r.tx->chain().readable(std::vector<uint8_t>(kHdr - 1, 1)).build());
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

TEST_CASE("virtio-net: a tap that cannot be had is an error naming it") {
    // A name the kernel would refuse never reaches it.
    CHECK_THROWS_WITH_AS(open_tap("x/y"), doctest::Contains("'/'"), Error);
    if (::geteuid() == 0) {
        // Root may create taps; a name taken by a non-tap interface is refused.
        CHECK_THROWS_WITH_AS(open_tap("lo"), doctest::Contains("tap lo"), Error);
    }
}
