// Split virtqueue (virtio 1.2 §2.7): chain validation, used-ring batches,
// EVENT_IDX, broken rings. The loopback device lets the test thread play the
// device side while the software driver plays the guest.
#include <doctest/doctest.h>

#include <vector>

#include "devices/virtio/virtqueue.h"
#include "tests/support/guest_driver.h"
#include "tests/support/loopback_device.h"

using namespace ember;
using namespace ember::testing;
using virtio::VirtqDesc;

namespace {
constexpr uint64_t kRam = 16 << 20;

struct QueueRig {
    explicit QueueRig(uint64_t features = ~0ull, uint16_t size = 16)
        : mem(GuestMemory::flat(kRam)), rig(mem), driver(mem, *rig.transport, opts(size)) {
        driver.init(features);
        REQUIRE(rig.device->queue.has_value());
    }
    static DriverOptions opts(uint16_t size) {
        DriverOptions o;
        o.queue_size = size;
        return o;
    }
    Virtqueue& q() { return *rig.device->queue; }
    DescriptorChain pop_one() {
        auto c = q().pop();
        REQUIRE(c.has_value());
        return std::move(*c);
    }
    GuestMemory mem;
    LoopbackRig rig;
    GuestDriver driver;
};

std::vector<uint8_t> bytes(size_t n, uint8_t v) {
    return std::vector<uint8_t>(n, v);
}
} // namespace

TEST_CASE("Virtqueue: a direct chain pops whole, in order, with its lengths") {
    QueueRig r;
    const auto head = r.driver.submit(r.driver.chain()
                                          .readable(bytes(16, 1))
                                          .readable(bytes(100, 2))
                                          .writable(512)
                                          .writable(1)
                                          .build());
    auto c = r.pop_one();
    CHECK(c.valid());
    CHECK(c.head() == head);
    REQUIRE(c.segments().size() == 4);
    CHECK(c.readable_bytes() == 116);
    CHECK(c.writable_bytes() == 513);
    CHECK_FALSE(c.segments()[1].writable);
    CHECK(c.segments()[2].writable);
    CHECK(r.mem.read<uint8_t>(c.segments()[1].addr) == 2);
    CHECK_FALSE(r.q().pop().has_value());
}

TEST_CASE("Virtqueue: popping into a kept chain reuses its storage and replaces all of it") {
    QueueRig r;
    const auto first =
        r.driver.submit(r.driver.chain().readable(bytes(16, 1)).writable(512).writable(1).build());
    DescriptorChain c;
    REQUIRE(r.q().pop(c));
    CHECK(c.head() == first);
    REQUIRE(c.segments().size() == 3);
    const ChainSegment* storage = c.segments().data();
    r.q().add_used(std::move(c), 0);
    CHECK_FALSE(c.owns_head());

    // A refused chain first: its error and lengths must not outlive it.
    VirtqDesc bad{};
    bad.addr = kRam; // outside RAM
    bad.len = 16;
    const uint16_t bad_head = r.driver.submit(r.driver.chain().readable(bytes(16, 3)).build());
    r.driver.write_descriptor(bad_head, bad);
    REQUIRE(r.q().pop(c));
    CHECK(c.error() == ChainError::out_of_bounds);
    r.q().add_used(std::move(c), 0);

    const auto second =
        r.driver.submit(r.driver.chain().readable(bytes(16, 2)).writable(1).build());
    REQUIRE(r.q().pop(c));
    CHECK(c.owns_head());
    CHECK(c.valid());
    CHECK(c.head() == second);
    REQUIRE(c.segments().size() == 2);
    CHECK(c.segments().data() == storage); // no new allocation
    CHECK(c.readable_bytes() == 16);
    CHECK(c.writable_bytes() == 1);
    CHECK(r.mem.read<uint8_t>(c.segments()[0].addr) == 2);
    CHECK_FALSE(r.q().pop(c)); // nothing new
}

TEST_CASE("Virtqueue: an indirect chain is followed into its table") {
    QueueRig r;
    r.driver.submit(
        r.driver.chain().readable(bytes(16, 1)).writable(4096).writable(1).indirect().build());
    auto c = r.pop_one();
    CHECK(c.valid());
    CHECK(c.segments().size() == 3);
    CHECK(c.writable_bytes() == 4097);
}

TEST_CASE("Virtqueue: direct descriptors followed by one indirect descriptor (§2.7.5.3.2)") {
    QueueRig r;
    const auto table = r.driver.alloc(32, 16);
    const auto buf = r.driver.alloc(64);
    r.mem.write(table, VirtqDesc{buf.value, 32, virtio::kDescFlagNext, 1});
    r.mem.write(GuestAddress{table.value + 16},
                VirtqDesc{buf.value + 32, 32, virtio::kDescFlagWrite, 0});
    r.driver.write_descriptor(0, VirtqDesc{buf.value, 16, virtio::kDescFlagNext, 1});
    r.driver.write_descriptor(1, VirtqDesc{table.value, 32, virtio::kDescFlagIndirect, 0});
    r.driver.push_avail_raw(0);
    auto c = r.pop_one();
    CHECK(c.valid());
    CHECK(c.segments().size() == 3);
}

namespace {
// Submits descriptors written by hand at head 0 and pops the chain.
DescriptorChain pop_raw(QueueRig& r, std::initializer_list<VirtqDesc> descs) {
    uint16_t i = 0;
    for (const auto& d : descs)
        r.driver.write_descriptor(i++, d);
    r.driver.push_avail_raw(0);
    return r.pop_one();
}
constexpr uint16_t N = virtio::kDescFlagNext;
constexpr uint16_t W = virtio::kDescFlagWrite;
constexpr uint16_t I = virtio::kDescFlagIndirect;
} // namespace

TEST_CASE("Virtqueue: malformed chains are refused with the reason, and the queue keeps going") {
    QueueRig r;
    const uint64_t buf = r.driver.alloc(8192).value;
    DescriptorChain c;

    SUBCASE("a loop ends at the queue size") {
        c = pop_raw(r, {{buf, 16, N, 1}, {buf, 16, N, 0}});
        CHECK(c.error() == ChainError::too_long);
    }
    SUBCASE("next index beyond the table") {
        c = pop_raw(r, {{buf, 16, N, 16}});
        CHECK(c.error() == ChainError::next_out_of_range);
    }
    SUBCASE("a buffer outside guest RAM") {
        c = pop_raw(r, {{buf, 16, N, 1}, {kRam - 8, 16, W, 0}});
        CHECK(c.error() == ChainError::out_of_bounds);
        // The segments checked before the error are kept.
        CHECK(c.segments().size() == 1);
    }
    SUBCASE("an address that wraps") {
        c = pop_raw(r, {{UINT64_MAX - 4, 16, 0, 0}});
        CHECK(c.error() == ChainError::out_of_bounds);
    }
    SUBCASE("a zero-length descriptor") {
        c = pop_raw(r, {{buf, 0, 0, 0}});
        CHECK(c.error() == ChainError::zero_length);
    }
    SUBCASE("readable after writable") {
        c = pop_raw(r, {{buf, 16, W | N, 1}, {buf, 16, 0, 0}});
        CHECK(c.error() == ChainError::readable_after_writable);
    }
    SUBCASE("an indirect descriptor inside an indirect table") {
        const uint64_t table = r.driver.alloc(32, 16).value;
        r.mem.write(GuestAddress{table}, VirtqDesc{buf, 16, N, 1});
        r.mem.write(GuestAddress{table + 16}, VirtqDesc{table, 32, I, 0});
        c = pop_raw(r, {{table, 32, I, 0}});
        CHECK(c.error() == ChainError::nested_indirect);
    }
    SUBCASE("INDIRECT together with NEXT") {
        const uint64_t table = r.driver.alloc(16, 16).value;
        r.mem.write(GuestAddress{table}, VirtqDesc{buf, 16, 0, 0});
        c = pop_raw(r, {{table, 16, I | N, 1}, {buf, 1, W, 0}});
        CHECK(c.error() == ChainError::indirect_with_next);
    }
    SUBCASE("an indirect table whose length is not a multiple of 16") {
        const uint64_t table = r.driver.alloc(32, 16).value;
        c = pop_raw(r, {{table, 24, I, 0}});
        CHECK(c.error() == ChainError::bad_indirect_table);
    }
    SUBCASE("an indirect table of length 0") {
        c = pop_raw(r, {{buf, 0, I, 0}});
        CHECK(c.error() == ChainError::bad_indirect_table);
    }
    SUBCASE("an indirect table outside guest RAM") {
        c = pop_raw(r, {{kRam - 16, 32, I, 0}});
        CHECK(c.error() == ChainError::bad_indirect_table);
    }
    SUBCASE("more descriptors than the queue size, through an indirect table") {
        const uint64_t table = r.driver.alloc(17 * 16, 16).value;
        for (uint16_t i = 0; i < 17; ++i)
            r.mem.write(GuestAddress{table + 16ull * i},
                        VirtqDesc{buf, 16, static_cast<uint16_t>(i < 16 ? N : 0),
                                  static_cast<uint16_t>(i + 1)});
        c = pop_raw(r, {{table, 17 * 16, I, 0}});
        CHECK(c.error() == ChainError::too_long);
    }
    SUBCASE("a loop inside an indirect table") {
        const uint64_t table = r.driver.alloc(32, 16).value;
        r.mem.write(GuestAddress{table}, VirtqDesc{buf, 16, N, 1});
        r.mem.write(GuestAddress{table + 16}, VirtqDesc{buf, 16, N, 0});
        c = pop_raw(r, {{table, 32, I, 0}});
        CHECK(c.error() == ChainError::too_long);
    }
    SUBCASE("a total length beyond 32 bits") {
        // Sixteen descriptors of 0x1000'0000 bytes each are 4 GiB: RAM has to
        // hold them, so reuse one big buffer; lengths, not addresses, overflow.
        GuestMemory big = GuestMemory::flat(0x1100'0000);
        LoopbackRig rig(big);
        GuestDriver d(big, *rig.transport, QueueRig::opts(16));
        d.init();
        for (uint16_t i = 0; i < 16; ++i)
            d.write_descriptor(i, VirtqDesc{0x100'0000, 0x1000'0000,
                                            static_cast<uint16_t>(i < 15 ? N : 0),
                                            static_cast<uint16_t>(i + 1)});
        d.push_avail_raw(0);
        auto big_chain = rig.device->queue->pop();
        REQUIRE(big_chain.has_value());
        CHECK(big_chain->error() == ChainError::total_too_large);
        rig.device->queue->add_used(std::move(*big_chain), 0);
        rig.device->queue->publish_used();
        CHECK(d.reap().size() == 1);
        return;
    }
    // Whatever was wrong, the head completes exactly once and the queue goes on.
    CHECK_FALSE(c.valid());
    r.q().add_used(std::move(c), 0);
    r.q().publish_used();
    CHECK(r.driver.reap().size() == 1);
    CHECK(r.driver.outstanding() == 0);
    const auto head = r.driver.submit(r.driver.chain().readable(bytes(4, 0)).writable(4).build());
    auto next = r.pop_one();
    CHECK(next.valid());
    CHECK(next.head() == head);
}

TEST_CASE("Virtqueue: INDIRECT_DESC not negotiated refuses indirect chains") {
    QueueRig r(~virtio::kFeatureRingIndirectDesc);
    const uint64_t table = r.driver.alloc(16, 16).value;
    r.mem.write(GuestAddress{table}, VirtqDesc{table, 16, 0, 0});
    auto c = pop_raw(r, {{table, 16, I, 0}});
    CHECK(c.error() == ChainError::indirect_not_negotiated);
}

TEST_CASE("Virtqueue: a refused chain still completes exactly once and later chains work") {
    QueueRig r;
    r.driver.write_descriptor(0, VirtqDesc{0, 0, 0, 0});
    r.driver.push_avail_raw(0);
    auto bad = r.pop_one();
    CHECK_FALSE(bad.valid());
    r.q().add_used(std::move(bad), 0);
    CHECK_FALSE(bad.owns_head());
    r.q().add_used(std::move(bad), 0); // a moved-from chain completes nothing
    CHECK(r.q().pending_used() == 1);
    r.q().publish_used();
    auto used = r.driver.reap();
    REQUIRE(used.size() == 1);
    CHECK(used[0].id == 0);
    const auto head = r.driver.submit(r.driver.chain().writable(8).build());
    auto good = r.pop_one();
    CHECK(good.valid());
    CHECK(good.head() == head);
}

TEST_CASE("Virtqueue: used elements are published as one batch, in completion order") {
    QueueRig r(~virtio::kFeatureRingEventIdx);
    std::vector<uint16_t> heads;
    for (int i = 0; i < 5; ++i)
        heads.push_back(r.driver.submit(r.driver.chain().writable(4).build()));
    std::vector<DescriptorChain> chains;
    while (auto c = r.q().pop())
        chains.push_back(std::move(*c));
    REQUIRE(chains.size() == 5);
    // Complete in reverse: the used ring records completion order.
    for (int i = 4; i >= 0; --i)
        r.q().add_used(std::move(chains[i]), 10u + i);
    CHECK(r.driver.used_idx() == 0); // nothing visible before the publish
    CHECK(r.q().publish_used());     // no suppression: interrupt wanted
    CHECK(r.driver.used_idx() == 5);
    auto used = r.driver.reap();
    REQUIRE(used.size() == 5);
    CHECK(used[0].id == heads[4]);
    CHECK(used[0].len == 14);
    CHECK(used[4].id == heads[0]);
    CHECK(r.q().state().next_used == 5);
    CHECK(r.q().state().next_avail == 5);
}

TEST_CASE("Virtqueue: the ring wraps around past 65535") {
    QueueRig r(~0ull, 4);
    for (int round = 0; round < 70000 / 3; ++round) {
        for (int i = 0; i < 3; ++i)
            r.driver.submit(r.driver.chain().writable(1).build());
        int n = 0;
        while (auto c = r.q().pop()) {
            r.q().add_used(std::move(*c), 1);
            ++n;
        }
        REQUIRE(n == 3);
        r.q().publish_used();
        REQUIRE(r.driver.reap().size() == 3);
    }
    CHECK(r.driver.outstanding() == 0);
}

TEST_CASE("Virtqueue: NO_INTERRUPT suppresses the interrupt without EVENT_IDX") {
    QueueRig r(~virtio::kFeatureRingEventIdx);
    r.driver.set_avail_flags(virtio::kAvailFlagNoInterrupt);
    r.driver.submit(r.driver.chain().writable(4).build());
    auto c = r.pop_one();
    r.q().add_used(std::move(c), 4);
    CHECK_FALSE(r.q().publish_used());
    CHECK(r.driver.reap().size() == 1);
}

TEST_CASE("Virtqueue: EVENT_IDX decides once per batch from used_event (§2.7.10)") {
    QueueRig r;
    // The driver re-arms used_event = 0 at init: the first completion interrupts.
    for (int i = 0; i < 3; ++i)
        r.driver.submit(r.driver.chain().writable(4).build());
    std::vector<DescriptorChain> chains;
    while (auto c = r.q().pop())
        chains.push_back(std::move(*c));
    r.q().add_used(std::move(chains[0]), 4);
    CHECK(r.q().publish_used()); // used_event 0 is in (0, 1]
    // The driver has not re-armed: used_event stays 0, so no interrupt for 1 -> 3.
    r.q().add_used(std::move(chains[1]), 4);
    r.q().add_used(std::move(chains[2]), 4);
    CHECK_FALSE(r.q().publish_used());
    CHECK(r.driver.reap().size() == 3); // re-arms used_event = 3
    r.driver.submit(r.driver.chain().writable(4).build());
    auto c = r.pop_one();
    r.q().add_used(std::move(c), 4);
    CHECK(r.q().publish_used());
    // Nothing pending: no publish, no interrupt.
    CHECK_FALSE(r.q().publish_used());
}

TEST_CASE("Virtqueue: EVENT_IDX avail_event suppresses kicks until the device re-arms") {
    QueueRig r;
    r.driver.submit(r.driver.chain().writable(4).build());
    CHECK(r.driver.kick()); // avail_event 0: the first kick is wanted
    r.driver.submit(r.driver.chain().writable(4).build());
    CHECK_FALSE(r.driver.kick()); // device has not caught up: no kick needed
    auto a = r.pop_one();
    auto b = r.pop_one();
    CHECK_FALSE(r.q().enable_notifications()); // avail_event = 2, nothing new
    r.driver.submit(r.driver.chain().writable(4).build());
    CHECK(r.q().enable_notifications()); // arrived meanwhile: pop again
    CHECK(r.driver.kick());
    r.q().add_used(std::move(a), 0);
    r.q().add_used(std::move(b), 0);
    r.q().publish_used();
}

TEST_CASE("Virtqueue: avail.idx jumping by more than the queue size breaks the queue") {
    QueueRig r;
    r.driver.set_avail_idx_raw(17);
    CHECK_THROWS_AS(r.q().pop(), VirtqueueError);
    CHECK(r.q().broken());
    r.driver.set_avail_idx_raw(1);
    CHECK_THROWS_AS(r.q().pop(), VirtqueueError); // stays broken until reset
}

TEST_CASE("Virtqueue: an avail entry naming a head beyond the queue size breaks the queue") {
    QueueRig r;
    r.driver.push_avail_raw(16);
    CHECK_THROWS_AS(r.q().pop(), VirtqueueError);
    CHECK(r.q().broken());
}

TEST_CASE("QueueState::validate: size, alignment and bounds of the three parts") {
    auto mem = GuestMemory::flat(0x10000);
    QueueState s;
    s.size = 16;
    s.desc_table = GuestAddress{0x1000};
    s.avail_ring = GuestAddress{0x2000};
    s.used_ring = GuestAddress{0x3000};
    CHECK_FALSE(s.validate(mem).has_value());
    auto bad = s;
    bad.size = 12;
    CHECK(bad.validate(mem).has_value());
    bad = s;
    bad.size = 512;
    CHECK(bad.validate(mem).has_value());
    bad = s;
    bad.desc_table = GuestAddress{0x1008};
    CHECK(bad.validate(mem)->find("descriptor table") != std::string::npos);
    bad = s;
    bad.avail_ring = GuestAddress{0x2001};
    CHECK(bad.validate(mem).has_value());
    bad = s;
    bad.used_ring = GuestAddress{0x3002};
    CHECK(bad.validate(mem).has_value());
    bad = s;
    bad.used_ring = GuestAddress{0x10000 - 64}; // 6 + 8*16 bytes do not fit
    CHECK(bad.validate(mem)->find("used ring") != std::string::npos);
}
