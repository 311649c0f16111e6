// virtio-blk end to end through the transport, the I/O thread and a temp
// file, driven by the software guest driver: every request type, malformed
// chains, read-only disks, EVENT_IDX, broken rings, many requests in flight,
// two disks at once, both engines and O_DIRECT.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "devices/block/virtio_blk_spec.h"
#include "tests/support/block_rig.h"
#include "tests/support/checkpoint_rig.h"
#include "tests/support/threads.h"
#include "vmm/cpu_affinity.h"

using namespace ember;
using namespace ember::testing;
using namespace ember::virtio;
using namespace ember::virtio::blk;
using virtio::VirtqDesc;

namespace {
constexpr uint64_t kDiskSize = 4 << 20; // 8192 sectors

// Each test runs once per engine.
std::string engine_option(int i) {
    return i == 0 ? ",engine=uring" : ",engine=sync";
}

// A two-descriptor loop (header -> status -> header), made available and
// kicked by hand (the chain builder makes only valid chains). Returns where
// its status byte goes.
GuestAddress push_descriptor_loop(BlockRig& r, std::span<const uint8_t> header) {
    auto& d = *r.driver;
    const auto hdr = d.alloc(16);
    r.mem.write_bytes(hdr, header);
    const auto st = d.alloc(1);
    d.write_descriptor(0, VirtqDesc{hdr.value, 16, kDescFlagNext, 1});
    d.write_descriptor(1, VirtqDesc{st.value, 1, kDescFlagNext | kDescFlagWrite, 0});
    d.push_avail_raw(0);
    d.kick();
    return st;
}
} // namespace

TEST_CASE("virtio-blk: offers the features and config the spec asks for") {
    TempFile f(kDiskSize);
    BlockRig r(f.path());
    const uint64_t offered = r.driver->device_features();
    for (uint64_t bit :
         {kFeatureVersion1, kFeatureRingEventIdx, kFeatureRingIndirectDesc, kFeatureSizeMax,
          kFeatureSegMax, kFeatureBlkSize, kFeatureFlush, kFeatureDiscard, kFeatureWriteZeroes})
        CHECK((offered & bit) != 0);
    CHECK((offered & kFeatureRo) == 0);
    CHECK(r.driver->read32(mmio::kDeviceId) == 2);
    CHECK(r.driver->read32(mmio::kConfig + 0) == 8192); // capacity, low half
    CHECK(r.driver->read32(mmio::kConfig + 4) == 0);
    CHECK(r.driver->read32(mmio::kConfig + 12) == 254); // seg_max
    CHECK(r.driver->read32(mmio::kConfig + 20) == 512); // blk_size
    CHECK(r.driver->read32(mmio::kConfig + 40) == 16);  // max_discard_seg
    uint8_t may_unmap = 0;
    r.transport->read(mmio::kConfig + 56, {&may_unmap, 1});
    CHECK(may_unmap == 1);
    CHECK(r.blk->running());
}

TEST_CASE("virtio-blk: OUT then IN round-trips through the file") {
    for (int e = 0; e < 2; ++e) {
        CAPTURE(e);
        TempFile f(kDiskSize);
        BlockRig r(f.path() + engine_option(e));
        CHECK(r.blk->engine() == (e == 0 ? "io_uring" : "sync"));
        const auto data = pattern(100, 4096);
        auto w = r.write(100, data);
        CHECK(w.status == kStatusOk);
        CHECK(w.used_len == 1);
        CHECK(f.contents(100 * 512, 4096) == data);
        auto rd = r.read(100, 4096);
        CHECK(rd.status == kStatusOk);
        CHECK(rd.used_len == 4097);
        CHECK(rd.data == data);
        // The last sector of the disk is readable; one past it is not.
        CHECK(r.read(8191, 512).status == kStatusOk);
        CHECK(r.read(8191, 1024).status == kStatusIoErr);
        CHECK(r.read(8192, 512).status == kStatusIoErr);
        CHECK(r.read(UINT64_MAX, 512).status == kStatusIoErr);
        CHECK(r.write(UINT64_MAX / 512, pattern(0, 512)).status == kStatusIoErr);
        const auto st = r.blk->stats();
        CHECK(st.bytes_written == 4096);
        CHECK(st.bad_requests == 4);
        CHECK(st.host_errors == 0);
    }
}

TEST_CASE("virtio-blk: data spread over many descriptors, direct and indirect") {
    TempFile f(kDiskSize);
    const auto data = pattern(7, 8192);
    f.write(7 * 512, data);
    for (int e = 0; e < 2; ++e) {
        BlockRig r(f.path() + engine_option(e));
        for (bool indirect : {false, true}) {
            CAPTURE(indirect);
            auto c = r.driver->chain()
                         .readable(blk_header(kTypeIn, 7))
                         .writable(512)
                         .writable(1536)
                         .writable(100)
                         .writable(6044)
                         .writable(1)
                         .indirect(indirect)
                         .build();
            auto res = r.run(c);
            CHECK(res.status == kStatusOk);
            CHECK(res.used_len == 8193);
            std::vector<uint8_t> got;
            for (size_t i = 1; i + 1 < c.buffers.size(); ++i) {
                std::vector<uint8_t> part(c.buffers[i].len);
                r.mem.read_bytes(c.buffers[i].addr, part);
                got.insert(got.end(), part.begin(), part.end());
            }
            CHECK(got == data);
            // Header split over two descriptors and data over three (§2.6.4).
            const auto hdr = blk_header(kTypeOut, 40);
            const auto out = pattern(40, 1024, 9);
            auto w = r.run(r.driver->chain()
                               .readable(std::span(hdr).first(5))
                               .readable(std::span(hdr).subspan(5))
                               .readable(std::span(out).first(1000))
                               .readable(std::span(out).subspan(1000))
                               .writable(1)
                               .indirect(indirect)
                               .build());
            CHECK(w.status == kStatusOk);
            CHECK(f.contents(40 * 512, 1024) == out);
            r.driver->free_all();
        }
    }
}

TEST_CASE("virtio-blk: FLUSH, GET_ID and unknown request types") {
    for (int e = 0; e < 2; ++e) {
        TempFile f(kDiskSize);
        BlockRig r(f.path() + ",id=ember-test-id" + engine_option(e));
        auto fl = r.run(r.driver->chain().readable(blk_header(kTypeFlush, 0)).writable(1).build());
        CHECK(fl.status == kStatusOk);
        auto c =
            r.driver->chain().readable(blk_header(kTypeGetId, 0)).writable(20).writable(1).build();
        auto id = r.run(c);
        CHECK(id.status == kStatusOk);
        CHECK(id.used_len == 21);
        std::vector<uint8_t> got(20);
        r.mem.read_bytes(c.buffers[1].addr, got);
        CHECK(std::string(got.begin(), got.begin() + 13) == "ember-test-id");
        CHECK(got[13] == 0); // NUL padded
        CHECK(got[19] == 0);
        auto u = r.run(r.driver->chain().readable(blk_header(99, 0)).writable(1).build());
        CHECK(u.status == kStatusUnsupp);
        CHECK(u.used_len == 1);
        auto lifetime =
            r.run(r.driver->chain().readable(blk_header(10, 0)).writable(64).writable(1).build());
        CHECK(lifetime.status == kStatusUnsupp);
    }
}

namespace {
std::vector<uint8_t> ranges(std::initializer_list<DiscardWriteZeroes> rs) {
    std::vector<uint8_t> v(rs.size() * sizeof(DiscardWriteZeroes));
    std::memcpy(v.data(), std::data(rs), v.size());
    return v;
}
std::vector<uint8_t> slice(const std::vector<uint8_t>& v, size_t off, size_t len) {
    return {v.begin() + static_cast<long>(off), v.begin() + static_cast<long>(off + len)};
}
uint64_t allocated_bytes(const std::string& path) {
    struct stat st {};
    ::stat(path.c_str(), &st);
    return static_cast<uint64_t>(st.st_blocks) * 512;
}
} // namespace

TEST_CASE("virtio-blk: DISCARD punches holes and WRITE_ZEROES zeroes, size unchanged") {
    TempFile f(kDiskSize);
    const auto original = pattern(0, 1 << 20);
    f.write(0, original);
    BlockRig r(f.path());
    const auto before = allocated_bytes(f.path());
    auto d = r.run(r.driver->chain()
                       .readable(blk_header(kTypeDiscard, 0))
                       .readable(ranges({{0, 512, 0}, {1024, 256, 0}}))
                       .writable(1)
                       .build());
    CHECK(d.status == kStatusOk);
    CHECK(f.contents(0, 512 * 512) == std::vector<uint8_t>(512 * 512, 0));
    CHECK(allocated_bytes(f.path()) < before);
    struct stat st {};
    ::stat(f.path().c_str(), &st);
    CHECK(static_cast<uint64_t>(st.st_size) == kDiskSize);
    // WRITE_ZEROES with and without unmap.
    for (uint32_t flags : {0u, kWriteZeroesFlagUnmap}) {
        auto z = r.run(r.driver->chain()
                           .readable(blk_header(kTypeWriteZeroes, 0))
                           .readable(ranges({{600, 8, flags}}))
                           .writable(1)
                           .build());
        CHECK(z.status == kStatusOk);
        CHECK(f.contents(600 * 512, 4096) == std::vector<uint8_t>(4096, 0));
        CHECK(f.contents(608 * 512, 512) == slice(original, 608 * 512, 512)); // neighbour kept
        f.write(600 * 512, pattern(3, 4096));
    }
    // The unmap flag is not allowed on DISCARD; reserved flags never.
    CHECK(r.run(r.driver->chain()
                    .readable(blk_header(kTypeDiscard, 0))
                    .readable(ranges({{0, 8, 1}}))
                    .writable(1)
                    .build())
              .status == kStatusUnsupp);
    CHECK(r.run(r.driver->chain()
                    .readable(blk_header(kTypeWriteZeroes, 0))
                    .readable(ranges({{0, 8, 2}}))
                    .writable(1)
                    .build())
              .status == kStatusUnsupp);
    // Out of capacity, too many segments, a partial segment: IOERR.
    CHECK(r.run(r.driver->chain()
                    .readable(blk_header(kTypeDiscard, 0))
                    .readable(ranges({{8190, 8, 0}}))
                    .writable(1)
                    .build())
              .status == kStatusIoErr);
    std::vector<uint8_t> many(17 * sizeof(DiscardWriteZeroes), 0);
    for (size_t i = 0; i < 17; ++i)
        many[i * 16 + 8] = 1; // num_sectors = 1
    CHECK(r.run(r.driver->chain()
                    .readable(blk_header(kTypeDiscard, 0))
                    .readable(many)
                    .writable(1)
                    .build())
              .status == kStatusIoErr);
    CHECK(r.run(r.driver->chain()
                    .readable(blk_header(kTypeDiscard, 0))
                    .readable(std::vector<uint8_t>(8, 0))
                    .writable(1)
                    .build())
              .status == kStatusIoErr);
}

TEST_CASE("virtio-blk: a read-only disk offers RO and refuses writes with IOERR") {
    TempFile f(kDiskSize);
    f.write(0, pattern(0, 4096));
    for (int e = 0; e < 2; ++e) {
        BlockRig r(f.path() + ",readonly" + engine_option(e));
        const uint64_t offered = r.driver->device_features();
        CHECK((offered & kFeatureRo) != 0);
        CHECK((offered & kFeatureDiscard) == 0);
        CHECK(r.write(0, pattern(5, 4096)).status == kStatusIoErr);
        CHECK(f.contents(0, 4096) == pattern(0, 4096));
        CHECK(r.read(0, 4096).data == pattern(0, 4096));
        // DISCARD was not offered, so it is unsupported.
        CHECK(r.run(r.driver->chain()
                        .readable(blk_header(kTypeDiscard, 0))
                        .readable(ranges({{0, 8, 0}}))
                        .writable(1)
                        .build())
                  .status == kStatusUnsupp);
        CHECK(r.run(r.driver->chain().readable(blk_header(kTypeFlush, 0)).writable(1).build())
                  .status == kStatusOk);
    }
}

TEST_CASE("virtio-blk: malformed requests complete with IOERR and never stall the queue") {
    TempFile f(kDiskSize);
    BlockRig r(f.path());
    auto& d = *r.driver;
    const auto hdr_in = blk_header(kTypeIn, 0);

    SUBCASE("short header") {
        auto res = r.run(
            d.chain().readable(std::span(hdr_in).first(12)).writable(512).writable(1).build());
        CHECK(res.status == kStatusIoErr);
        CHECK(res.used_len == 1);
    }
    SUBCASE("writable header") {
        CHECK(r.run(d.chain().writable(16).writable(512).writable(1).build()).status ==
              kStatusIoErr);
    }
    SUBCASE("data not a whole number of sectors") {
        CHECK(r.run(d.chain().readable(hdr_in).writable(100).writable(1).build()).status ==
              kStatusIoErr);
        CHECK(r.run(d.chain()
                        .readable(blk_header(kTypeOut, 0))
                        .readable(std::vector<uint8_t>(700, 1))
                        .writable(1)
                        .build())
                  .status == kStatusIoErr);
    }
    SUBCASE("missing status byte: completed with length 0") {
        auto c = d.chain()
                     .readable(blk_header(kTypeOut, 0))
                     .readable(std::vector<uint8_t>(512, 1))
                     .build();
        CHECK(d.run(c) == 0);
        CHECK(f.contents(0, 512) == std::vector<uint8_t>(512, 0)); // nothing written
    }
    SUBCASE("status in a read-only descriptor") {
        // Refused (readable after writable); the device never writes into the
        // read-only byte. IOERR lands in the last writable byte it validated.
        auto c = d.chain()
                     .readable(hdr_in)
                     .writable(512)
                     .readable(std::vector<uint8_t>(1, 0x77))
                     .build();
        CHECK(d.run(c) == 1);
        CHECK(r.mem.read<uint8_t>(c.buffers[2].addr) == 0x77);
        CHECK(r.mem.read<uint8_t>(GuestAddress{c.buffers[1].addr.value + 511}) == kStatusIoErr);
        CHECK(r.blk->stats().bad_requests == 1);
    }
    SUBCASE("a loop") {
        const auto st = push_descriptor_loop(r, hdr_in);
        while (d.reap().empty())
            d.wait_interrupt(std::chrono::milliseconds(100));
        CHECK(r.mem.read<uint8_t>(st) == kStatusIoErr);
    }
    SUBCASE("a buffer out of guest memory") {
        const auto st = d.alloc(1);
        const auto hdr = d.alloc(16);
        r.mem.write_bytes(hdr, hdr_in);
        d.write_descriptor(0, VirtqDesc{hdr.value, 16, kDescFlagNext, 1});
        d.write_descriptor(1, VirtqDesc{(64 << 20) - 256, 512, kDescFlagNext | kDescFlagWrite, 2});
        d.write_descriptor(2, VirtqDesc{st.value, 1, kDescFlagWrite, 0});
        d.push_avail_raw(0);
        d.kick();
        while (d.reap().empty())
            d.wait_interrupt(std::chrono::milliseconds(100));
        CHECK(r.mem.read<uint8_t>(st) == 0); // the refused chain had no status byte to write
    }
    SUBCASE("a zero-length descriptor") {
        const auto st = d.alloc(1);
        const auto hdr = d.alloc(16);
        r.mem.write_bytes(hdr, hdr_in);
        r.mem.write<uint8_t>(st, 0x55);
        d.write_descriptor(0, VirtqDesc{hdr.value, 16, kDescFlagNext, 1});
        d.write_descriptor(1, VirtqDesc{st.value, 1, kDescFlagWrite | kDescFlagNext, 2});
        d.write_descriptor(2, VirtqDesc{st.value, 0, kDescFlagWrite, 0});
        d.push_avail_raw(0);
        d.kick();
        while (d.reap().empty())
            d.wait_interrupt(std::chrono::milliseconds(100));
        CHECK(r.mem.read<uint8_t>(st) == kStatusIoErr);
    }
    SUBCASE("too many descriptors (indirect table longer than the queue)") {
        Chain c = d.chain().readable(hdr_in).build();
        for (int i = 0; i < 256; ++i)
            c.buffers.push_back(DriverBuffer{d.alloc(512), 512, true});
        c.buffers.push_back(DriverBuffer{d.alloc(1), 1, true});
        c.indirect = true;
        r.mem.write<uint8_t>(c.buffers.back().addr, 0xee);
        auto res = r.run(c);
        // Refused after the queue size: the walk never reaches the status byte.
        CHECK(res.status == 0xee);
        CHECK(r.blk->stats().bad_requests == 1);
        CHECK(r.blk->stats().bytes_read == 0);
    }
    SUBCASE("an indirect descriptor inside an indirect table") {
        const auto table = d.alloc(32, 16);
        const auto inner = d.alloc(16, 16);
        const auto st = d.alloc(1);
        r.mem.write(inner, VirtqDesc{st.value, 1, kDescFlagWrite, 0});
        r.mem.write(table, VirtqDesc{d.alloc(16).value, 16, kDescFlagNext, 1});
        r.mem.write(GuestAddress{table.value + 16},
                    VirtqDesc{inner.value, 16, kDescFlagIndirect, 0});
        d.write_descriptor(0, VirtqDesc{table.value, 32, kDescFlagIndirect, 0});
        d.push_avail_raw(0);
        d.kick();
        while (d.reap().empty())
            d.wait_interrupt(std::chrono::milliseconds(100));
        CHECK(r.blk->stats().bad_requests == 1);
    }
    // Whatever came before, the queue keeps working.
    d.free_all();
    const auto data = pattern(1, 512);
    CHECK(r.write(1, data).status == kStatusOk);
    CHECK(r.read(1, 512).data == data);
    CHECK(d.outstanding() == 0);
    CHECK((r.driver->read32(mmio::kStatus) & kStatusNeedsReset) == 0);
}

TEST_CASE("virtio-blk: host I/O errors complete with IOERR and are counted") {
    for (int e = 0; e < 2; ++e) {
        TempFile f(kDiskSize);
        BlockRig r(f.path() + engine_option(e));
        // The file shrinks under the device: reads past the new end fail.
        REQUIRE(::truncate(f.path().c_str(), 1 << 20) == 0);
        CHECK(r.read(4096, 512).status == kStatusIoErr);
        CHECK(r.read(0, 512).status == kStatusOk);
        CHECK(r.blk->stats().host_errors == 1);
    }
}

TEST_CASE("virtio-blk: EVENT_IDX suppresses interrupts until the driver re-arms used_event") {
    TempFile f(kDiskSize);
    BlockRig r(f.path());
    auto& d = *r.driver;
    CHECK(r.read(0, 512).status == kStatusOk);
    // The device asked for a kick at the next avail entry (§2.7.10).
    CHECK(d.avail_event() == 1);
    r.transport->interrupt_event().drain(); // run() may return before it waits
    // used_event far behind: no interrupt for the next completions.
    d.set_used_event(0);
    for (int i = 0; i < 4; ++i)
        d.submit(d.chain().readable(blk_header(kTypeIn, i)).writable(512).writable(1).build());
    CHECK(d.kick());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (d.used_idx() != 5 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    CHECK(d.used_idx() == 5);
    CHECK(d.wait_interrupt(std::chrono::milliseconds(50)) == 0);
    CHECK(d.reap().size() == 4); // re-arms: used_event = 5
    CHECK(r.read(0, 512).status == kStatusOk);
    const auto st = r.blk->stats();
    CHECK(st.requests == 6);
    CHECK(st.interrupts == 2);
}

// What metrics report (include/ember/vm.h DiskMetrics): successes by kind,
// with guest errors counted apart and not as a kind.
TEST_CASE("virtio-blk: requests counted by kind") {
    for (int e = 0; e < 2; ++e) {
        CAPTURE(e);
        TempFile f(kDiskSize);
        BlockRig r(f.path() + engine_option(e));
        CHECK(r.write(8, pattern(1, 4096)).status == kStatusOk);
        CHECK(r.write(16, pattern(2, 1024)).status == kStatusOk);
        CHECK(r.read(8, 4096).status == kStatusOk);
        CHECK(r.read(8192, 512).status == kStatusIoErr); // past the end: a guest error
        auto run = [&](uint32_t type, std::vector<uint8_t> payload) {
            return r
                .run(r.driver->chain()
                         .readable(blk_header(type, 0))
                         .readable(payload)
                         .writable(1)
                         .build())
                .status;
        };
        CHECK(r.run(r.driver->chain().readable(blk_header(kTypeFlush, 0)).writable(1).build())
                  .status == kStatusOk);
        CHECK(run(kTypeDiscard, ranges({{64, 8, 0}})) == kStatusOk);
        CHECK(run(kTypeWriteZeroes, ranges({{72, 8, 0}})) == kStatusOk);
        CHECK(run(kTypeWriteZeroes, ranges({{72, 8, 0}})) == kStatusOk);
        CHECK(r.run(r.driver->chain()
                        .readable(blk_header(kTypeGetId, 0))
                        .writable(20)
                        .writable(1)
                        .build())
                  .status == kStatusOk);
        const auto st = r.blk->stats();
        CHECK(st.requests == 9);
        CHECK(st.writes == 2);
        CHECK(st.reads == 1);
        CHECK(st.flushes == 1);
        CHECK(st.discards == 1);
        CHECK(st.write_zeroes == 2);
        CHECK(st.bytes_written == 5120);
        CHECK(st.bytes_read == 4096);
        CHECK(st.bad_requests == 1);
        CHECK(st.host_errors == 0);
    }
}

TEST_CASE("virtio-blk: a broken ring sets DEVICE_NEEDS_RESET for that device only") {
    TempFile f1(kDiskSize), f2(kDiskSize);
    GuestMemory mem = GuestMemory::flat(128 << 20);
    DriverOptions o2;
    o2.ring_base = GuestAddress{0x80'0000};
    o2.heap_base = GuestAddress{0x400'0000};
    BlockRig a(f1.path(), ~0ull, {}, &mem);
    BlockRig b(f2.path(), ~0ull, o2, &mem);
    a.driver->set_avail_idx_raw(300); // 300 entries ahead of a 256-entry queue
    a.driver->kick();
    CHECK(a.driver->wait_interrupt() == kInterruptConfigChange);
    CHECK((a.driver->read32(mmio::kStatus) & kStatusNeedsReset) != 0);
    // The other disk is unaffected.
    CHECK(b.write(3, pattern(3, 512)).status == kStatusOk);
    CHECK((b.driver->read32(mmio::kStatus) & kStatusNeedsReset) == 0);
    // A reset brings the broken device back.
    a.driver->init();
    CHECK((a.driver->read32(mmio::kStatus) & kStatusNeedsReset) == 0);
    CHECK(a.write(3, pattern(4, 512)).status == kStatusOk);
    CHECK(f1.contents(3 * 512, 512) == pattern(4, 512));
    CHECK(f2.contents(3 * 512, 512) == pattern(3, 512));
}

namespace {
// Keeps up to `depth` random 4 KiB writes in flight, then reads every block
// back through the device; the file is checked against the model too.
void many_in_flight(BlockRig& r, const TempFile& f, unsigned depth, unsigned total, uint32_t seed) {
    auto& d = *r.driver;
    const uint32_t blocks = static_cast<uint32_t>(r.blk->disk().sectors() / 8);
    std::mt19937 rng(seed);
    std::vector<uint32_t> version(blocks, 0);
    struct Slot {
        GuestAddress hdr, data, status;
        uint32_t block;
        bool busy;
    };
    std::vector<Slot> slots(depth);
    for (auto& s : slots)
        s = Slot{d.alloc(16), d.alloc(4096, 4096), d.alloc(1), 0, false};
    std::vector<int> slot_of_head(256, -1);
    unsigned issued = 0, done = 0;
    // Writes only: a block may be written by two requests in flight, so each
    // block is written by at most one request at a time.
    std::vector<uint8_t> busy_block(blocks, 0);
    auto pick = [&](Slot& s, int si) {
        for (;;) {
            const uint32_t b = rng() % blocks;
            if (busy_block[b] != 0) continue;
            busy_block[b] = 1;
            s.block = b;
            r.mem.write_bytes(s.hdr, blk_header(kTypeOut, uint64_t{b} * 8));
            ++version[b];
            r.mem.write_bytes(s.data, pattern(b, 4096, version[b]));
            Chain c;
            c.buffers = {{s.hdr, 16, false}, {s.data, 4096, false}, {s.status, 1, true}};
            c.indirect = (rng() & 1) != 0;
            slot_of_head[d.submit(c)] = si;
            s.busy = true;
            ++issued;
            return;
        }
    };
    for (unsigned i = 0; i < depth && issued < total; ++i)
        pick(slots[i], static_cast<int>(i));
    d.kick();
    while (done < total) {
        auto used = d.reap();
        if (used.empty()) {
            REQUIRE(d.wait_interrupt() != 0);
            continue;
        }
        // Map heads to slots before any resubmission can reuse a head.
        std::vector<int> finished;
        for (const auto& e : used) {
            REQUIRE(slot_of_head[e.id] >= 0);
            finished.push_back(std::exchange(slot_of_head[e.id], -1));
        }
        for (const int si : finished) {
            auto& s = slots[static_cast<size_t>(si)];
            REQUIRE(r.mem.read<uint8_t>(s.status) == kStatusOk);
            busy_block[s.block] = 0;
            s.busy = false;
            ++done;
            if (issued < total) pick(s, si);
        }
        d.kick();
    }
    CHECK(d.outstanding() == 0);
    // Verify every written block, through the device and in the file.
    for (uint32_t b = 0; b < blocks; ++b) {
        if (version[b] == 0) continue;
        const auto expect = pattern(b, 4096, version[b]);
        REQUIRE(f.contents(uint64_t{b} * 4096, 4096) == expect);
        REQUIRE(r.read(uint64_t{b} * 8, 4096, (b & 1) != 0).data == expect);
        r.driver->free_all();
        for (auto& s : slots)
            s = Slot{d.alloc(16), d.alloc(4096, 4096), d.alloc(1), 0, false};
    }
}
} // namespace

TEST_CASE("virtio-blk: many requests in flight, data verified end to end (both engines)") {
    for (int e = 0; e < 2; ++e) {
        CAPTURE(e);
        TempFile f(kDiskSize);
        BlockRig r(f.path() + engine_option(e));
        many_in_flight(r, f, 80, 3000, 42 + e);
        CHECK(r.blk->stats().host_errors == 0);
        CHECK(r.blk->stats().interrupts < r.blk->stats().requests);
    }
}

TEST_CASE("virtio-blk: poll= spins for completions and requests, data verified end to end") {
    TempFile f(kDiskSize);
    BlockRig r(f.path() + ",cache=none,poll=2000");
    many_in_flight(r, f, 32, 2000, 5);
    const auto s = r.blk->stats();
    CHECK(s.host_errors == 0);
    // The spinning found work: O_DIRECT completions take longer than a
    // loop round, and 2 ms covers most of them.
    CHECK(s.poll_hits > 0);
    // The state dump (SIGUSR2) counts them for a disk with poll=.
    CHECK(r.transport->describe().find(" host errors, " + std::to_string(s.poll_hits) +
                                       " poll hits;") != std::string::npos);
    // Without poll= the thread never spins, and the dump does not mention it.
    TempFile g(kDiskSize);
    BlockRig q(g.path() + ",cache=none");
    many_in_flight(q, g, 32, 500, 6);
    CHECK(q.blk->stats().poll_hits == 0);
    CHECK(q.transport->describe().find("poll hits") == std::string::npos);
}

TEST_CASE("virtio-blk: iothread-cpu= runs the I/O thread on that CPU, data verified end to end") {
    const cpu_set_t allowed = ember_cpus();
    // The last CPU this process may use: with more than one, a thread left
    // unplaced would show them all.
    const uint32_t cpu = last_allowed_cpu();
    if (CPU_COUNT(&allowed) == 1)
        MESSAGE("one CPU allowed: placement cannot differ from the default here");
    {
        TempFile f(kDiskSize);
        BlockRig r(f.path() + ",iothread-cpu=" + std::to_string(cpu));
        many_in_flight(r, f, 32, 500, 11);
        const pid_t tid = find_thread("ember-blk-io");
        REQUIRE(tid > 0);
        CHECK(thread_cpu_list(tid) == std::to_string(cpu));
        CHECK(r.blk->stats().host_errors == 0);
    }
    // Without it the thread may run wherever the process may.
    TempFile g(kDiskSize);
    BlockRig q(g.path());
    many_in_flight(q, g, 8, 100, 12);
    const pid_t tid = find_thread("ember-blk-io");
    REQUIRE(tid > 0);
    CHECK(thread_cpu_list(tid) == cpu_list(allowed));
}

TEST_CASE("virtio-blk: an unplaced I/O thread may run where the device's builder may, not only "
          "where the vcpu that started it was placed") {
    // The device is built on this thread; a vcpu placed with --vcpu-cpus
    // starts its I/O thread (it writes DRIVER_OK), which must not inherit
    // that one CPU.
    const cpu_set_t allowed = ember_cpus();
    if (CPU_COUNT(&allowed) < 2) {
        MESSAGE("one CPU allowed: nothing to tell apart here");
        return;
    }
    const uint32_t first = first_allowed_cpu();
    TempFile f(kDiskSize);
    BlockRig r(f.path());
    std::string vcpu_cpus, io_thread;
    std::thread vcpu([&] {
        pin_thread(pthread_self(), first);
        vcpu_cpus = thread_cpu_list(static_cast<pid_t>(::gettid()));
        r.driver->init(~0ull); // resets the device, so DRIVER_OK starts a new I/O thread
        io_thread = thread_cpu_list(find_thread("ember-blk-io"));
    });
    vcpu.join();
    CHECK(vcpu_cpus == std::to_string(first));
    CHECK(io_thread == cpu_list(allowed));
    // And it still serves requests.
    r.write(8, pattern(8, 4096));
    CHECK(r.read(8, 4096).data == pattern(8, 4096));
}

// An embedder that confines the thread building a VM confines all of it:
// the I/O thread takes that thread's mask, not the whole process's.
TEST_CASE("virtio-blk: an unplaced I/O thread keeps the mask of the thread that built the device") {
    const cpu_set_t allowed = ember_cpus();
    if (CPU_COUNT(&allowed) < 2) {
        MESSAGE("one CPU allowed: nothing to tell apart here");
        return;
    }
    const uint32_t last = last_allowed_cpu();
    std::string io_thread;
    std::thread builder([&] {
        pin_thread(pthread_self(), last);
        TempFile f(kDiskSize);
        BlockRig r(f.path());
        io_thread = thread_cpu_list(find_thread("ember-blk-io"));
    });
    builder.join();
    CHECK(io_thread == std::to_string(last));
}

TEST_CASE("virtio-blk: a long batch is completed and published 8 requests at a time") {
    // The driver can refill what completed first while the I/O thread is
    // still on the rest (process_avail). The sync engine completes each
    // request inside start(), as io_uring does for page-cache hits.
    struct Batches final : QueueObserver {
        std::vector<size_t> sizes; // written by the I/O thread; read after shutdown
        void on_pop(uint16_t) override {}
        void on_batch_published(std::span<const VirtqUsedElem> batch, uint16_t) override {
            sizes.push_back(batch.size());
        }
    } batches;
    TempFile f(kDiskSize);
    auto mem = GuestMemory::flat(64 << 20);
    DeviceOptions sync;
    sync.spec_suffix = ",engine=sync";
    VirtioBlock* blk = nullptr;
    auto transport = make_block_transport(mem, f.path(), sync, &blk);
    blk->set_queue_observer(&batches); // before init() starts the I/O thread
    GuestDriver d(mem, *transport);
    d.init();
    d.hold_avail(true); // all 36 become available with one avail.idx store
    for (int i = 0; i < 36; ++i)
        d.submit(d.chain().readable(blk_header(kTypeIn, i * 8)).writable(4096).writable(1).build());
    d.hold_avail(false);
    d.kick();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (d.used_idx() != 36 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
    CHECK(d.used_idx() == 36);
    transport->shutdown(); // joins the I/O thread
    CHECK(batches.sizes == std::vector<size_t>{8, 8, 8, 8, 4});
    CHECK(d.reap().size() == 36);
}

TEST_CASE("virtio-blk: cache=none (O_DIRECT) with aligned and unaligned guest buffers") {
    TempFile f(kDiskSize);
    for (int e = 0; e < 2; ++e) {
        BlockRig r(f.path() + ",cache=none" + engine_option(e));
        CHECK(r.blk->disk().direct());
        // Aligned: straight into guest memory.
        const auto a = pattern(16, 8192, e);
        auto c = r.driver->chain()
                     .readable(blk_header(kTypeOut, 16))
                     .readable(r.driver->alloc(8192, 4096), 8192)
                     .writable(1)
                     .build();
        r.mem.write_bytes(c.buffers[1].addr, a);
        CHECK(r.run(c).status == kStatusOk);
        CHECK(f.contents(16 * 512, 8192) == a);
        // Unaligned buffers go through a bounce buffer.
        const auto u = pattern(32, 1024, e);
        const GuestAddress odd{r.driver->alloc(1100, 4096).value + 3};
        auto w = r.driver->chain()
                     .readable(blk_header(kTypeOut, 32))
                     .readable(odd, 1024)
                     .writable(1)
                     .build();
        r.mem.write_bytes(w.buffers[1].addr, u);
        CHECK(r.run(w).status == kStatusOk);
        CHECK(f.contents(32 * 512, 1024) == u);
        auto rd = r.driver->chain()
                      .readable(blk_header(kTypeIn, 32))
                      .writable(GuestAddress{r.driver->alloc(1100, 4096).value + 5}, 1024)
                      .writable(1)
                      .build();
        CHECK(r.run(rd).status == kStatusOk);
        std::vector<uint8_t> got(1024);
        r.mem.read_bytes(rd.buffers[1].addr, got);
        CHECK(got == u);
        CHECK(r.read(16, 8192).data == a);
    }
}

TEST_CASE("virtio-blk: two disks, two I/O threads, driven concurrently") {
    TempFile f1(kDiskSize), f2(kDiskSize);
    GuestMemory mem = GuestMemory::flat(128 << 20);
    DriverOptions o2;
    o2.ring_base = GuestAddress{0x80'0000};
    o2.heap_base = GuestAddress{0x400'0000};
    BlockRig a(f1.path(), ~0ull, {}, &mem);
    BlockRig b(f2.path() + ",engine=sync", ~0ull, o2, &mem);
    std::thread ta([&] { many_in_flight(a, f1, 32, 1000, 1); });
    many_in_flight(b, f2, 32, 1000, 2);
    ta.join();
    CHECK(a.blk->stats().requests >= 1000);
    CHECK(b.blk->stats().requests >= 1000);
}

TEST_CASE("virtio-blk: reset with requests in flight stops the thread cleanly and restarts") {
    TempFile f(kDiskSize);
    BlockRig r(f.path());
    auto& d = *r.driver;
    for (int i = 0; i < 200; ++i)
        d.submit(d.chain()
                     .readable(blk_header(kTypeOut, i * 8))
                     .readable(pattern(i, 4096))
                     .writable(1)
                     .indirect()
                     .build());
    d.kick();
    d.reset(); // joins the I/O thread with host I/O possibly in flight
    CHECK_FALSE(r.blk->running());
    CHECK(d.read32(mmio::kStatus) == 0);
    d.free_all();
    d.init();
    CHECK(r.blk->running());
    CHECK(r.write(5, pattern(5, 512)).status == kStatusOk);
    CHECK(r.read(5, 512).data == pattern(5, 512));
    r.transport->shutdown();
    CHECK_FALSE(r.blk->running());
}

TEST_CASE("virtio-blk: describe() shows both sides of the ring (the SIGUSR2 state dump)") {
    TempFile f(kDiskSize);
    BlockRig r(f.path());
    CHECK(r.write(0, pattern(1, 512)).status == kStatusOk);
    CHECK(r.write(1, pattern(2, 512)).status == kStatusOk);
    auto s = r.transport->describe();
    INFO(s);
    CHECK(s.find("status=0xf") != std::string::npos); // ACK|DRIVER|DRIVER_OK|FEATURES_OK
    CHECK(s.find("2 requests") != std::string::npos);
    CHECK(s.find("avail.idx=2 next_avail=2 used.idx=2 next_used=2 pending_used=0") != std::string::npos);
    CHECK(s.find("used_event=2") != std::string::npos);
    CHECK(s.find("engine io_uring: 0 in flight") != std::string::npos);
    CHECK(s.find("region: 0 in flight") != std::string::npos);
    // At most one completion wakeup per request: io_uring signals its eventfd
    // twice per completion, and the second must not wake the thread again.
    const auto at = s.find(" kicks, ");
    REQUIRE(at != std::string::npos);
    CHECK(std::stoul(s.substr(at + 8)) <= 2);

    // A chain made available without a kick: the device has not seen it, and
    // the dump says so (the signature of a lost kick).
    auto& d = *r.driver;
    d.submit(d.chain().readable(blk_header(kTypeIn, 0)).writable(512).writable(1).build());
    s = r.transport->describe();
    INFO(s);
    CHECK(s.find("avail.idx=3 next_avail=2 used.idx=2") != std::string::npos);
    d.kick();
    // Reaped until it comes, as a driver does: the interrupt of a request
    // above may still be pending (run() reaps before it waits for one) and
    // end this wait before the new request completes.
    auto used = d.reap();
    while (used.empty()) {
        REQUIRE(d.wait_interrupt() != 0);
        used = d.reap();
    }
    CHECK(used.size() == 1);
}

namespace {
// Writes block i for the i-th of `total` 4 KiB writes, `depth` in flight at a
// time; checks each status and the file, and returns how long they took.
std::chrono::nanoseconds timed_writes(BlockRig& r, const TempFile& f, unsigned total,
                                      unsigned depth) {
    auto& d = *r.driver;
    std::vector<GuestAddress> status_of(256);
    unsigned issued = 0, done = 0;
    auto issue = [&] {
        const auto c = d.chain()
                           .readable(blk_header(kTypeOut, uint64_t{issued} * 8))
                           .readable(pattern(issued, 4096))
                           .writable(1)
                           .build();
        status_of[d.submit(c)] = c.buffers.back().addr;
        ++issued;
    };
    const auto start = std::chrono::steady_clock::now();
    while (issued < std::min(total, depth))
        issue();
    d.kick();
    while (done < total) {
        const auto used = d.reap();
        if (used.empty()) {
            REQUIRE(d.wait_interrupt() != 0);
            continue;
        }
        for (const auto& e : used) {
            REQUIRE(r.mem.read<uint8_t>(status_of[e.id]) == kStatusOk);
            ++done;
        }
        while (issued < total && issued - done < depth)
            issue();
        d.kick();
    }
    const auto took = std::chrono::steady_clock::now() - start;
    for (unsigned i = 0; i < total; ++i)
        REQUIRE(f.contents(uint64_t{i} * 4096, 4096) == pattern(i, 4096));
    return took;
}
} // namespace

TEST_CASE("virtio-blk: iops= and bw= hold requests back to the rate, data verified") {
    using namespace std::chrono_literals;
    SUBCASE("iops") {
        TempFile f(kDiskSize);
        BlockRig r(f.path() + ",iops=100");
        // A full bucket of 100 goes at once; the other 50 need 0.5 s of
        // refill, however the requests arrive.
        CHECK(timed_writes(r, f, 150, 32) >= 500ms);
        const auto s = r.blk->stats();
        CHECK(s.writes == 150);
        CHECK(s.throttled > 0);
        CHECK(r.transport->describe().find(fmt::format(", {} throttled;", s.throttled)) !=
              std::string::npos);
    }
    SUBCASE("bw, on both engines") {
        for (int e = 0; e < 2; ++e) {
            CAPTURE(e);
            TempFile f(kDiskSize);
            BlockRig r(f.path() + ",bw=256K" + engine_option(e));
            // 64 blocks fill the bucket; 36 more need 36/64 s.
            CHECK(timed_writes(r, f, 100, 32) >= 562500us);
            CHECK(r.blk->stats().throttled > 0);
        }
    }
    SUBCASE("without a limit nothing is held, and the dump does not mention it") {
        TempFile f(kDiskSize);
        BlockRig r(f.path());
        timed_writes(r, f, 150, 32);
        CHECK(r.blk->stats().throttled == 0);
        CHECK(r.transport->describe().find("throttled") == std::string::npos);
    }
}

TEST_CASE("virtio-blk: a request the rate limit holds is in flight, survives a quiesce and "
          "completes") {
    using namespace std::chrono_literals;
    TempFile f(kDiskSize);
    BlockRig r(f.path() + ",iops=2");
    auto& d = *r.driver;
    CHECK(r.write(0, pattern(1, 4096)).status == kStatusOk);
    CHECK(r.write(8, pattern(2, 4096)).status == kStatusOk); // the bucket is empty now
    // GET_ID reaches no host operation: it is not held by an empty bucket.
    const auto id = d.chain().readable(blk_header(kTypeGetId, 0)).writable(20).writable(1).build();
    const auto id_start = std::chrono::steady_clock::now();
    CHECK(r.run(id).status == kStatusOk);
    CHECK(std::chrono::steady_clock::now() - id_start < 400ms);
    // The next write waits about half a second for its token.
    const auto c =
        d.chain().readable(blk_header(kTypeOut, 16)).readable(pattern(3, 4096)).writable(1).build();
    const uint16_t head = d.submit(c);
    d.kick();
    std::string dump;
    for (int i = 0; i < 100 && dump.find("rate limit holds") == std::string::npos; ++i) {
        dump = r.transport->describe();
        std::this_thread::sleep_for(1ms);
    }
    INFO(dump);
    CHECK(dump.find(fmt::format("rate limit holds head {}", head)) != std::string::npos);
    // Popped and marked: a checkpoint taken now resubmits it.
    CHECK(dump.find("region: 1 in flight") != std::string::npos);
    r.blk->quiesce(); // parks although the timer is pending
    r.blk->unquiesce();
    const auto used = [&] {
        for (;;) {
            if (auto u = d.reap(); !u.empty()) return u;
            REQUIRE(d.wait_interrupt() != 0);
        }
    }();
    REQUIRE(used.size() == 1);
    CHECK(used[0].id == head);
    CHECK(r.mem.read<uint8_t>(c.buffers.back().addr) == kStatusOk);
    CHECK(f.contents(16 * 512, 4096) == pattern(3, 4096));
    CHECK(r.blk->stats().throttled == 1);
}

TEST_CASE("virtio-blk: a request larger than the bw= bucket still completes") {
    TempFile f(kDiskSize);
    BlockRig r(f.path() + ",bw=4K");
    // 64 KiB through a 4 KiB bucket: it goes when the bucket is full.
    CHECK(r.write(0, pattern(7, 65536)).status == kStatusOk);
    CHECK(f.contents(0, 65536) == pattern(7, 65536));
}

TEST_CASE("virtio-blk: a rate limit replaced while the guest runs takes effect at once") {
    using namespace std::chrono_literals;
    TempFile f(kDiskSize);
    BlockRig r(f.path() + ",iops=1");
    auto& d = *r.driver;
    CHECK(r.write(0, pattern(1, 4096)).status == kStatusOk); // the bucket's one token
    // Held for a second under iops=1...
    const auto c =
        d.chain().readable(blk_header(kTypeOut, 8)).readable(pattern(2, 4096)).writable(1).build();
    const uint16_t head = d.submit(c);
    d.kick();
    for (int i = 0;
         i < 100 && r.transport->describe().find("rate limit holds") == std::string::npos; ++i)
        std::this_thread::sleep_for(1ms);
    CHECK(r.transport->describe().find("rate limit holds") != std::string::npos);
    // ...until the limit is lifted: then it goes without waiting for its token.
    const auto lifted = std::chrono::steady_clock::now();
    r.blk->set_rate_limit({});
    auto used = d.reap();
    while (used.empty()) {
        REQUIRE(d.wait_interrupt() != 0);
        used = d.reap();
    }
    CHECK(std::chrono::steady_clock::now() - lifted < 500ms);
    REQUIRE(used.size() == 1);
    CHECK(used[0].id == head);
    CHECK(f.contents(4096, 4096) == pattern(2, 4096));
    CHECK_FALSE(r.blk->rate_limit().enabled());
    // Unlimited now: 150 writes do not wait for anything.
    CHECK(r.blk->stats().throttled == 1);
    timed_writes(r, f, 150, 32);
    CHECK(r.blk->stats().throttled == 1);
    // A new limit on a running disk starts full and holds to its rate.
    const RateLimit again{std::nullopt, TokenBucketSpec{100, 0, 1000}};
    r.blk->set_rate_limit(again);
    CHECK(r.blk->rate_limit() == again);
    CHECK(timed_writes(r, f, 150, 32) >= 500ms);
    CHECK(r.blk->stats().throttled > 1);
}

TEST_CASE("virtio-blk: with the rate limit's bucket empty, malformed chains are answered at once") {
    TempFile f(kDiskSize);
    BlockRig r(f.path() + ",iops=1");
    auto& d = *r.driver;
    CHECK(r.write(0, pattern(1, 512)).status == kStatusOk); // the one token of the next second
    const auto hdr_in = blk_header(kTypeIn, 0);
    // No header to charge, or a type that reaches no host operation: free,
    // so none of them is held behind the empty bucket.
    CHECK(r.run(d.chain().readable(std::span(hdr_in).first(12)).writable(512).writable(1).build())
              .status == kStatusIoErr);
    CHECK(r.run(d.chain().writable(16).writable(512).writable(1).build()).status == kStatusIoErr);
    CHECK(r.run(d.chain().readable(blk_header(0xff, 0)).writable(1).build()).status ==
          kStatusUnsupp);
    // A descriptor loop: an invalid chain, answered with IOERR, not charged.
    const auto st = push_descriptor_loop(r, hdr_in);
    while (d.reap().empty())
        REQUIRE(d.wait_interrupt(std::chrono::milliseconds(500)) != 0);
    CHECK(r.mem.read<uint8_t>(st) == kStatusIoErr);
    CHECK(r.blk->stats().throttled == 0);
    CHECK(r.blk->stats().bad_requests == 4);
}
