// virtio-mmio transport, version 2 (virtio 1.2 §4.2.2): registers, feature
// negotiation, queue setup rules, reset, interrupts and notifications.
#include <doctest/doctest.h>

#include <poll.h>
#include <sys/resource.h>

#include <chrono>
#include <thread>

#include "devices/virtio/mmio_transport.h"
#include "tests/support/guest_driver.h"
#include "tests/support/loopback_device.h"
#include "tests/support/stderr_capture.h"

using namespace ember;
using namespace ember::testing;
using namespace ember::virtio;

namespace {
struct MmioRig {
    MmioRig() : mem(GuestMemory::flat(8 << 20)), rig(mem), driver(mem, *rig.transport, opts()) {}
    static DriverOptions opts() {
        DriverOptions o;
        o.queue_size = 16;
        return o;
    }
    uint32_t rd(uint64_t off) { return driver.read32(off); }
    void wr(uint64_t off, uint32_t v) { driver.write32(off, v); }
    LoopbackDevice& dev() { return *rig.device; }
    VirtioMmioTransport& t() { return *rig.transport; }
    GuestMemory mem;
    LoopbackRig rig;
    GuestDriver driver;
};

bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}
} // namespace

TEST_CASE("virtio-mmio: identification registers and 32-bit feature halves") {
    MmioRig r;
    CHECK(r.rd(mmio::kMagicValue) == 0x74726976);
    CHECK(r.rd(mmio::kVersion) == 2);
    CHECK(r.rd(mmio::kDeviceId) == 42);
    CHECK(r.rd(mmio::kVendorId) == mmio::kVendor);
    r.wr(mmio::kDeviceFeaturesSel, 0);
    CHECK(r.rd(mmio::kDeviceFeatures) == static_cast<uint32_t>(LoopbackDevice::kFeatures));
    r.wr(mmio::kDeviceFeaturesSel, 1);
    CHECK(r.rd(mmio::kDeviceFeatures) == 1); // VERSION_1 is bit 32
    r.wr(mmio::kDeviceFeaturesSel, 2);
    CHECK(r.rd(mmio::kDeviceFeatures) == 0);
    r.wr(mmio::kQueueSel, 0);
    CHECK(r.rd(mmio::kQueueNumMax) == 256);
    r.wr(mmio::kQueueSel, 1);
    CHECK(r.rd(mmio::kQueueNumMax) == 0); // no such queue
    CHECK(r.rd(mmio::kShmLenLow) == 0xffffffff);
    CHECK(r.t().bad_accesses() == 0);
}

TEST_CASE("virtio-mmio: config space at 0x100 in 1, 2 and 4 byte accesses") {
    MmioRig r;
    uint8_t b = 0;
    r.t().read(0x102, {&b, 1});
    CHECK(b == 3);
    uint16_t h = 0;
    r.t().read(0x104, {reinterpret_cast<uint8_t*>(&h), 2});
    CHECK(h == 0x0605);
    CHECK(r.rd(0x104) == 0x08070605);
    CHECK(r.rd(0x108) == 0); // beyond the structure
    const uint8_t v = 0x99;
    r.t().write(0x101, {&v, 1});
    CHECK(r.dev().config[1] == 0x99);
}

TEST_CASE("virtio-mmio: bad register accesses are ignored, counted and never fatal") {
    MmioRig r;
    uint16_t h = 0x1234;
    r.t().read(mmio::kMagicValue, {reinterpret_cast<uint8_t*>(&h), 2});
    CHECK(h == 0);
    uint8_t b = 1;
    r.t().write(mmio::kStatus, {&b, 1});
    CHECK(r.rd(mmio::kStatus) == 0);
    r.t().read(0x71, {reinterpret_cast<uint8_t*>(&h), 2});
    r.wr(mmio::kMagicValue, 5);  // read-only
    r.wr(mmio::kQueueNumMax, 5); // read-only
    r.wr(0x0f0, 5);              // not a register
    CHECK(r.rd(mmio::kMagicValue) == 0x74726976);
    CHECK(r.rd(mmio::kDriverFeatures) == 0); // write-only register reads as 0
    CHECK(r.t().bad_accesses() == 7);
}

TEST_CASE("virtio-mmio: a guest hammering bad registers is counted exactly, its log sampled") {
    MmioRig r;
    StderrCapture err;
    for (int i = 0; i < 5000; ++i)
        r.wr(0x0f0, static_cast<uint32_t>(i)); // not a register
    CHECK(r.t().bad_accesses() == 5000);
    // The first 10, then every 1000th, each with the count: a guest cannot
    // flood the host's log.
    CHECK(err.lines_with("ignored write") == 15);
    CHECK(err.text().find("ignored accesses so far: 5000)") != std::string::npos);
}

TEST_CASE("virtio-mmio: FEATURES_OK only for offered features that include VERSION_1") {
    MmioRig r;
    SUBCASE("an unoffered bit is refused") {
        CHECK_FALSE(r.driver.negotiate(LoopbackDevice::kFeatures | (1ull << 7)));
    }
    SUBCASE("a bit beyond 64 is refused") {
        r.wr(mmio::kStatus, kStatusAcknowledge | kStatusDriver);
        r.wr(mmio::kDriverFeaturesSel, 1);
        r.wr(mmio::kDriverFeatures, 1);
        r.wr(mmio::kDriverFeaturesSel, 2);
        r.wr(mmio::kDriverFeatures, 1);
        r.wr(mmio::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
        CHECK((r.rd(mmio::kStatus) & kStatusFeaturesOk) == 0);
    }
    SUBCASE("a legacy driver (no VERSION_1) is refused") {
        CHECK_FALSE(r.driver.negotiate(kFeatureRingEventIdx));
    }
    SUBCASE("FEATURES_OK before ACKNOWLEDGE|DRIVER is refused") {
        r.wr(mmio::kDriverFeaturesSel, 1);
        r.wr(mmio::kDriverFeatures, 1);
        r.wr(mmio::kStatus, kStatusFeaturesOk);
        CHECK((r.rd(mmio::kStatus) & kStatusFeaturesOk) == 0);
    }
    SUBCASE("a subset of the offered features is accepted and fixed afterwards") {
        CHECK(r.driver.negotiate(kFeatureVersion1 | kFeatureRingEventIdx));
        const auto bad_before = r.t().bad_accesses();
        r.wr(mmio::kDriverFeaturesSel, 0);
        r.wr(mmio::kDriverFeatures, 0xffffffff);
        CHECK(r.t().bad_accesses() == bad_before + 1);
        r.driver.setup_queue(0);
        r.driver.driver_ok();
        CHECK(r.dev().activations == 1);
        CHECK(r.dev().features == (kFeatureVersion1 | kFeatureRingEventIdx));
        CHECK(r.dev().state.event_idx);
        CHECK_FALSE(r.dev().state.indirect);
    }
    CHECK((r.rd(mmio::kStatus) & kStatusNeedsReset) == 0);
}

TEST_CASE("virtio-mmio: DRIVER_OK without FEATURES_OK does not activate") {
    MmioRig r;
    r.wr(mmio::kStatus, kStatusAcknowledge | kStatusDriver);
    r.wr(mmio::kStatus, kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
    CHECK((r.rd(mmio::kStatus) & kStatusDriverOk) == 0);
    CHECK(r.dev().activations == 0);
}

TEST_CASE("virtio-mmio: status bits are only cleared by a reset") {
    MmioRig r;
    r.driver.init();
    r.wr(mmio::kStatus, kStatusAcknowledge);
    CHECK(r.rd(mmio::kStatus) ==
          (kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk));
}

TEST_CASE("virtio-mmio: queue setup rules") {
    MmioRig r;
    REQUIRE(r.driver.negotiate(LoopbackDevice::kFeatures));
    r.wr(mmio::kQueueSel, 0);
    SUBCASE("QueueNum must be a power of two within the maximum") {
        r.wr(mmio::kQueueNum, 12);
        CHECK(r.rd(mmio::kQueueNum) == 0);
        r.wr(mmio::kQueueNum, 512);
        CHECK(r.rd(mmio::kQueueNum) == 0);
        r.wr(mmio::kQueueNum, 0);
        CHECK(r.rd(mmio::kQueueNum) == 0);
        r.wr(mmio::kQueueNum, 64);
        CHECK(r.rd(mmio::kQueueNum) == 64);
        CHECK(r.t().bad_accesses() == 3);
    }
    SUBCASE("a queue is not changed while ready or after DRIVER_OK") {
        r.driver.setup_queue(0);
        CHECK(r.rd(mmio::kQueueReady) == 1);
        r.wr(mmio::kQueueNum, 8);
        r.wr(mmio::kQueueDescLow, 0x4000);
        CHECK(r.rd(mmio::kQueueNum) == 16);
        CHECK(r.t().bad_accesses() == 2);
        r.driver.driver_ok();
        CHECK(r.dev().state.desc_table == r.driver.queue().desc_table);
        r.wr(mmio::kQueueReady, 0);
        CHECK(r.rd(mmio::kQueueReady) == 1);
        CHECK(r.t().bad_accesses() == 3);
    }
    SUBCASE("ring addresses are validated when the queue becomes ready") {
        r.wr(mmio::kQueueNum, 16);
        r.wr(mmio::kQueueDescLow, 0x1008); // not 16-byte aligned
        r.wr(mmio::kQueueDriverLow, 0x2000);
        r.wr(mmio::kQueueDeviceLow, 0x3000);
        r.wr(mmio::kQueueReady, 1);
        CHECK(r.rd(mmio::kQueueReady) == 0);
        CHECK((r.rd(mmio::kStatus) & kStatusNeedsReset) != 0);
        // Before DRIVER_OK there is no interrupt (§2.1.2).
        CHECK_FALSE(readable(r.t().interrupt_event().fd()));
        r.wr(mmio::kQueueDescLow, 0x1000);
        r.wr(mmio::kQueueDeviceHigh, 1); // 4 GiB + 0x3000: outside 8 MiB of RAM
        r.wr(mmio::kQueueReady, 1);
        CHECK(r.rd(mmio::kQueueReady) == 0);
        r.wr(mmio::kQueueDeviceHigh, 0);
        r.wr(mmio::kQueueReady, 1);
        CHECK(r.rd(mmio::kQueueReady) == 1);
    }
    SUBCASE("setup of a queue that does not exist is refused") {
        r.wr(mmio::kQueueSel, 3);
        r.wr(mmio::kQueueNum, 16);
        CHECK(r.rd(mmio::kQueueNum) == 0);
        CHECK(r.t().bad_accesses() == 1);
    }
}

TEST_CASE("virtio-mmio: writing 0 to Status resets device and transport") {
    MmioRig r;
    r.driver.init();
    REQUIRE(r.dev().activations == 1);
    r.dev().signals->used_buffer_notification();
    CHECK(r.rd(mmio::kInterruptStatus) == kInterruptUsedBuffer);
    r.wr(mmio::kStatus, 0);
    CHECK(r.dev().resets == 1);
    CHECK(r.rd(mmio::kStatus) == 0);
    CHECK(r.rd(mmio::kInterruptStatus) == 0);
    r.wr(mmio::kQueueSel, 0);
    CHECK(r.rd(mmio::kQueueReady) == 0);
    CHECK(r.rd(mmio::kQueueNum) == 0);
    // The driver can start over and the device is activated again.
    r.driver.init();
    CHECK(r.dev().activations == 2);
    r.t().shutdown();
    CHECK(r.dev().resets == 2);
    r.t().shutdown(); // idempotent
    CHECK(r.dev().resets == 2);
}

TEST_CASE("virtio-mmio: QueueNotify signals the queue's notify eventfd") {
    MmioRig r;
    r.driver.init();
    CHECK(r.t().notify_event(0).drain() == 0);
    r.wr(mmio::kQueueNotify, 0);
    r.wr(mmio::kQueueNotify, 0);
    CHECK(r.t().notify_event(0).drain() == 2);
    r.wr(mmio::kQueueNotify, 5);
    CHECK(r.t().bad_accesses() == 1);
    CHECK_THROWS_AS((void)r.t().notify_event(1), std::out_of_range);
}

TEST_CASE("virtio-mmio: interrupts set InterruptStatus, signal the irqfd, and are acked") {
    MmioRig r;
    r.driver.init();
    const int irq = r.t().interrupt_event().fd();
    CHECK_FALSE(readable(irq));
    r.dev().signals->used_buffer_notification();
    CHECK(readable(irq));
    CHECK(r.driver.wait_interrupt() == kInterruptUsedBuffer); // reads and acks
    CHECK(r.rd(mmio::kInterruptStatus) == 0);
    CHECK_FALSE(readable(irq));
}

namespace {
long voluntary_switches() {
    rusage u{};
    ::getrusage(RUSAGE_THREAD, &u);
    return u.ru_nvcsw;
}
} // namespace

TEST_CASE("guest driver: a halt-polling wait takes the interrupt without sleeping") {
    MmioRig r;
    r.driver.init();
    using std::chrono::microseconds, std::chrono::milliseconds, std::chrono::seconds;

    SUBCASE("raised while it spins") {
        std::thread device([&] {
            std::this_thread::sleep_for(milliseconds(1));
            r.dev().signals->used_buffer_notification();
        });
        const long before = voluntary_switches();
        // The window is far longer than the device takes: the spin sees it.
        const uint32_t status = r.driver.wait_interrupt(seconds(5), milliseconds(100));
        const long switches = voluntary_switches() - before;
        device.join();
        CHECK(status == kInterruptUsedBuffer);
        CHECK(switches == 0); // it never slept in poll()
        CHECK(r.rd(mmio::kInterruptStatus) == 0);
        // The eventfd signal may land after the spin drained it: the next
        // wait wakes for it, finds nothing to ack, and times out.
        CHECK(r.driver.wait_interrupt(microseconds(100), milliseconds(10)) == 0);
    }
    SUBCASE("none comes: it spins, then sleeps until the timeout") {
        const auto t0 = std::chrono::steady_clock::now();
        CHECK(r.driver.wait_interrupt(milliseconds(2), milliseconds(10)) == 0);
        CHECK(std::chrono::steady_clock::now() - t0 >= milliseconds(12));
    }
}

TEST_CASE("virtio-mmio: DEVICE_NEEDS_RESET raises one configuration interrupt") {
    MmioRig r;
    r.driver.init();
    r.dev().signals->needs_reset("test");
    CHECK((r.rd(mmio::kStatus) & kStatusNeedsReset) != 0);
    CHECK(r.driver.wait_interrupt(std::chrono::milliseconds(100)) == kInterruptConfigChange);
    r.dev().signals->needs_reset("again");
    CHECK(r.driver.wait_interrupt(std::chrono::milliseconds(10)) == 0);
    // The driver writing its status back does not clear the device's bit.
    r.wr(mmio::kStatus, r.rd(mmio::kStatus) & ~kStatusNeedsReset);
    CHECK((r.rd(mmio::kStatus) & kStatusNeedsReset) != 0);
    r.driver.reset();
    CHECK(r.rd(mmio::kStatus) == 0);
}
