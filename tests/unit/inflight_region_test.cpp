// The in-flight region and recovery from guest memory + region alone
// (DESIGN.md "The two seeds, made exact"): the vhost-user layout, every crash
// window of a completion batch, corrupt regions, the stale-used_idx pitfall
// (SPDK issue 3766) and resubmission order.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "devices/virtio/inflight_region.h"
#include "devices/virtio/virtqueue.h"

using namespace ember;
using virtio::VirtqUsedElem;

namespace {

// A queue of 8 in guest memory, driven by hand: the test plays the device's
// completion steps one by one so it can stop ("crash") between any two.
struct Ring {
    static constexpr uint16_t kSize = 8;
    GuestMemory mem = GuestMemory::flat(1 << 20);
    QueueState q{};
    InflightRegion region{kSize};
    uint16_t used{0};

    Ring() {
        q.size = kSize;
        q.ready = true;
        q.desc_table = GuestAddress{0x1000};
        q.avail_ring = GuestAddress{0x2000};
        q.used_ring = GuestAddress{0x3000};
        REQUIRE(!q.validate(mem));
    }
    void set_used_idx(uint16_t v) {
        used = v;
        mem.store_release<uint16_t>(GuestAddress{q.used_ring.value + 2}, v);
    }
    void set_avail_idx(uint16_t v) {
        mem.store_release<uint16_t>(GuestAddress{q.avail_ring.value + 2}, v);
    }
    void write_used(uint16_t pos, uint16_t head) {
        mem.write(GuestAddress{q.used_ring.value + 4 + 8ull * (pos & (kSize - 1))},
                  VirtqUsedElem{head, 1});
    }
    // The device pops `heads` in order (the driver made them available).
    void pop(std::initializer_list<uint16_t> heads) {
        for (uint16_t h : heads)
            REQUIRE(region.mark_popped(h));
    }

    enum class Stop { before_publish, after_publish, mid_clear, before_header, done };
    // One completion batch, stopping at `stop` (DESIGN.md order: used
    // elements; link; release used.idx; clear each flag; header used_idx).
    void complete(std::vector<uint16_t> heads, Stop stop = Stop::done) {
        std::vector<VirtqUsedElem> batch;
        for (auto h : heads)
            batch.push_back(VirtqUsedElem{h, 1});
        for (size_t i = 0; i < heads.size(); ++i)
            write_used(static_cast<uint16_t>(used + i), heads[i]);
        region.link_batch(batch);
        if (stop == Stop::before_publish) return;
        const auto new_used = static_cast<uint16_t>(used + heads.size());
        set_used_idx(new_used);
        if (stop == Stop::after_publish) return;
        const auto old_used = static_cast<uint16_t>(new_used - heads.size());
        if (stop == Stop::mid_clear) {
            // A crash after the first flag, before the rest and the header.
            region.clear_batch(std::span(batch).first(1), new_used);
            poke<uint16_t>(14, old_used);
            return;
        }
        if (stop == Stop::before_header) {
            region.clear_batch(batch, new_used);
            poke<uint16_t>(14, old_used);
            return;
        }
        region.clear_batch(batch, new_used);
    }
    // Overwrites raw bytes of the region (corruption tests).
    template <typename T>
    void poke(size_t offset, T v) {
        auto bytes = std::vector<uint8_t>(region.bytes().begin(), region.bytes().end());
        std::memcpy(bytes.data() + offset, &v, sizeof v);
        region.load(bytes);
    }
    static size_t entry_offset(uint16_t head) { return 16 + 16ull * head; }
};

} // namespace

TEST_CASE("inflight region: vhost-user split layout, initialised from the ring at activation") {
    CHECK(inflight_region_bytes(8) == 192);    // 16 + 8*16 = 144, rounded up to 64
    CHECK(inflight_region_bytes(256) == 4160); // 16 + 4096 = 4112 -> 4160
    Ring r;
    CHECK(r.region.bytes().size() == 192);
    CHECK(r.region.memfd() >= 0);
    r.set_used_idx(42);
    r.region.activate(42);
    const auto h = r.region.header();
    CHECK(h.features == 0);
    CHECK(h.version == 1);
    CHECK(h.desc_num == 8);
    CHECK(h.last_batch_head == kNoBatch);
    CHECK(h.used_idx == 42);
    CHECK(r.region.count_inflight() == 0);
    CHECK(r.region.consumed_avail_idx() == 42);
    // Raw layout: header fields at their vhost-user offsets.
    uint16_t raw = 0;
    std::memcpy(&raw, r.region.bytes().data() + 8, 2);
    CHECK(raw == 1); // version
    std::memcpy(&raw, r.region.bytes().data() + 14, 2);
    CHECK(raw == 42); // used_idx
}

TEST_CASE("inflight region: pop sets counter then flag, a batch links and clears") {
    Ring r;
    r.region.activate(0);
    r.pop({3, 1, 5});
    CHECK(r.region.entry(3).counter == 0);
    CHECK(r.region.entry(1).counter == 1);
    CHECK(r.region.entry(5).counter == 2);
    CHECK(r.region.inflight(1) == 1);
    CHECK(r.region.count_inflight() == 3);
    CHECK(r.region.consumed_avail_idx() == 3);
    // The raw entry: inflight at byte 0, next at 6, counter at 8.
    CHECK(r.region.bytes()[Ring::entry_offset(5)] == 1);
    // A head offered again while in flight is refused (a broken ring).
    CHECK_FALSE(r.region.mark_popped(3));
    CHECK(r.region.entry(3).counter == 0);

    r.complete({1, 5});
    const auto h = r.region.header();
    CHECK(h.last_batch_head == 1);
    CHECK(r.region.entry(1).next == 5);
    CHECK(h.used_idx == 2);
    CHECK(r.region.inflight(1) == 0);
    CHECK(r.region.inflight(5) == 0);
    CHECK(r.region.inflight(3) == 1);
    // Out-of-range heads never index the region.
    CHECK_THROWS_AS(r.region.inflight(8), InflightError);
    CHECK_THROWS_AS(r.region.entry(0xffff), InflightError);
    CHECK_THROWS_AS((void)r.region.mark_popped(8), InflightError);
}

TEST_CASE("inflight recovery: every crash window of a batch") {
    // The driver made 4 available; the device popped 3,1,5,7 and completes
    // the batch [1,5] after one earlier batch [6]... so used.idx starts at 1.
    struct Case {
        Ring::Stop stop;
        const char* name;
        uint16_t used_after;
        uint16_t repaired;
        std::vector<uint16_t> resubmit;
    };
    const Case cases[] = {
        {Ring::Stop::before_publish, "crash before publish", 1, 0, {3, 1, 5, 7}},
        {Ring::Stop::after_publish, "between publish and clear", 3, 2, {3, 7}},
        {Ring::Stop::mid_clear, "mid-batch (one flag cleared)", 3, 1, {3, 7}},
        {Ring::Stop::before_header, "after clear, before the header", 3, 0, {3, 7}},
        {Ring::Stop::done, "after the batch", 3, 0, {3, 7}},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        Ring r;
        r.region.activate(0);
        r.set_avail_idx(5);
        r.pop({6});
        r.complete({6});
        r.pop({3, 1, 5, 7});
        r.complete({1, 5}, c.stop);
        CHECK(r.used == c.used_after);

        const auto plan = r.region.recover(r.mem, r.q);
        CHECK(plan.used_idx == c.used_after);
        CHECK(plan.repaired == c.repaired);
        CHECK(plan.resubmit == c.resubmit);
        // Never a shadow index: used_idx + what is still in flight.
        CHECK(plan.next_avail == c.used_after + c.resubmit.size());
        CHECK(plan.next_avail == 5);
        // The repaired region is consistent with the ring.
        const auto h = r.region.header();
        CHECK(h.used_idx == r.used);
        CHECK(h.last_batch_head == kNoBatch);
        CHECK(r.region.count_inflight() == c.resubmit.size());
        // Idempotent: a second recovery decides the same.
        const auto again = r.region.recover(r.mem, r.q);
        CHECK(again.resubmit == plan.resubmit);
        CHECK(again.repaired == 0);
        // New pops are younger than every resubmitted request.
        REQUIRE(r.region.mark_popped(0));
        CHECK(r.region.entry(0).counter >= plan.next_counter);
        CHECK(r.region.entry(0).counter > r.region.entry(7).counter);
    }
}

TEST_CASE("inflight recovery: resubmission follows the counter, not the head number") {
    Ring r;
    r.region.activate(0);
    r.set_avail_idx(6);
    r.pop({2, 6}); // counters 0, 1
    r.complete({2});
    r.pop({2, 0, 4}); // 2 again (counter 2), 0 (3), 4 (4)
    r.complete({4});
    const auto plan = r.region.recover(r.mem, r.q);
    CHECK(plan.resubmit == std::vector<uint16_t>{6, 2, 0});
    CHECK(plan.next_avail == 2 + 3);
    CHECK(plan.next_counter == 5);
}

TEST_CASE("inflight recovery: the used ring index wraps past 65535") {
    Ring r;
    r.set_used_idx(65534);
    r.region.activate(65534);
    r.set_avail_idx(static_cast<uint16_t>(65534 + 4));
    r.pop({0, 1, 2, 3});
    r.complete({1, 2, 3}, Ring::Stop::after_publish); // used.idx wraps to 1
    CHECK(r.used == 1);
    const auto plan = r.region.recover(r.mem, r.q);
    CHECK(plan.repaired == 3);
    CHECK(plan.resubmit == std::vector<uint16_t>{0});
    CHECK(plan.next_avail == 2);
}

TEST_CASE("inflight recovery: the stale used_idx pitfall (SPDK issue 3766)") {
    // A queue whose used.idx is already 7 (a device re-activated over a
    // running ring, or a restored VM). Head 0 is popped and in flight.
    SUBCASE("initialised from the ring at activation: head 0 is resubmitted") {
        Ring r;
        r.set_used_idx(7);
        r.set_avail_idx(8);
        r.region.activate(7);
        r.pop({0});
        const auto plan = r.region.recover(r.mem, r.q);
        CHECK(plan.resubmit == std::vector<uint16_t>{0});
        CHECK(plan.repaired == 0);
        CHECK(plan.next_avail == 8);
    }
    SUBCASE("a zero-initialised header would clear the live entry: recovery refuses") {
        Ring r;
        r.set_used_idx(7);
        r.set_avail_idx(8);
        for (uint16_t i = 0; i < 7; ++i)
            r.write_used(i, static_cast<uint16_t>(i % 2 == 0 ? 1 : 2)); // older completions
        r.region.activate(7);
        r.pop({0});
        // What a region left at its zero default looks like: used_idx 0 and
        // last_batch_head 0. A recovery that trusted it would see "7
        // published, not cleared, batch starts at 0" and drop head 0.
        r.poke<uint16_t>(12, 0); // last_batch_head
        r.poke<uint16_t>(14, 0); // used_idx
        CHECK_THROWS_AS(r.region.recover(r.mem, r.q), InflightError);
        CHECK(r.region.inflight(0) == 1); // untouched: nothing lost
    }
}

TEST_CASE("inflight recovery: a corrupt region is refused with a clear error, never indexed") {
    auto prepared = [](Ring& r) {
        r.region.activate(0);
        r.set_avail_idx(3);
        r.pop({1, 2, 3});
        r.complete({2, 3}, Ring::Stop::after_publish); // a batch to walk
    };
    auto expect_error = [](Ring& r, const char* needle) {
        try {
            r.region.recover(r.mem, r.q);
            FAIL("recovery accepted a corrupt region");
        } catch (const InflightError& e) {
            CAPTURE(e.what());
            CHECK(std::string(e.what()).find(needle) != std::string::npos);
        }
    };
    SUBCASE("inflight value other than 0/1") {
        Ring r;
        prepared(r);
        r.poke<uint8_t>(Ring::entry_offset(5), 7);
        expect_error(r, "inflight value 7");
    }
    SUBCASE("last_batch_head beyond the queue") {
        Ring r;
        prepared(r);
        r.poke<uint16_t>(12, 200);
        expect_error(r, "last_batch_head 200");
    }
    SUBCASE("last_batch_head is the sentinel although a batch was published") {
        Ring r;
        prepared(r);
        r.poke<uint16_t>(12, kNoBatch);
        expect_error(r, "last_batch_head");
    }
    SUBCASE("a next link leaving the queue") {
        Ring r;
        prepared(r);
        r.poke<uint16_t>(Ring::entry_offset(2) + 6, 9999);
        expect_error(r, "leaves the queue");
    }
    SUBCASE("a next link looping") {
        Ring r;
        prepared(r);
        r.poke<uint16_t>(Ring::entry_offset(2) + 6, 2);
        expect_error(r, "loops");
    }
    SUBCASE("the batch chain disagrees with the used ring") {
        Ring r;
        prepared(r);
        r.poke<uint16_t>(12, 1); // starts at head 1, which the ring never returned
        expect_error(r, "used ring has 2");
    }
    SUBCASE("header used_idx more than a queue behind") {
        Ring r;
        prepared(r);
        r.poke<uint16_t>(14, 60000);
        expect_error(r, "more than a queue");
    }
    SUBCASE("more in flight than the driver made available") {
        Ring r;
        prepared(r);
        r.poke<uint8_t>(Ring::entry_offset(6), 1);
        r.poke<uint8_t>(Ring::entry_offset(7), 1);
        expect_error(r, "made only 1 available");
    }
    SUBCASE("wrong version, size or features") {
        Ring r;
        prepared(r);
        r.poke<uint16_t>(8, 2);
        expect_error(r, "version 2");
        r.poke<uint16_t>(8, 1);
        r.poke<uint16_t>(10, 16);
        expect_error(r, "16 heads");
        r.poke<uint16_t>(10, 8);
        r.poke<uint64_t>(0, 1);
        expect_error(r, "features");
    }
    SUBCASE("a region that was never initialised") {
        Ring r;
        expect_error(r, "version 0");
    }
    SUBCASE("a saved region of the wrong length, or a queue of another size") {
        Ring r;
        std::vector<uint8_t> shorter(100);
        CHECK_THROWS_AS(r.region.load(shorter), InflightError);
        r.region.activate(0);
        auto q = r.q;
        q.size = 16;
        CHECK_THROWS_AS(r.region.recover(r.mem, q), InflightError);
        CHECK_THROWS_AS(InflightRegion(0), InflightError);
    }
}
