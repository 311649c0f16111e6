#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "devices/legacy.h"
#include "devices/serial.h"
#include "tests/support/stderr_capture.h"
#include "vmm/platform.h"

using namespace ember;

namespace {
uint8_t rd(IoHandler& d, uint64_t off) {
    uint8_t b = 0;
    d.read(off, {&b, 1});
    return b;
}
void wr(IoHandler& d, uint64_t off, uint8_t v) { d.write(off, {&v, 1}); }
} // namespace

TEST_CASE("serial: transmit reaches the sink and raises THR-empty once enabled") {
    std::vector<uint8_t> out;
    EventFd irq;
    Serial s([&](std::span<const uint8_t> b) { out.insert(out.end(), b.begin(), b.end()); }, irq);
    wr(s, 0, 'h');
    CHECK(out == std::vector<uint8_t>{'h'});
    CHECK((rd(s, 5) & 0x60) == 0x60); // THR empty, transmitter idle
    CHECK(irq.drain() == 0);          // interrupts still disabled
    wr(s, 1, 0x02);                   // IER: THR empty
    CHECK(irq.drain() == 1);
    CHECK((rd(s, 2) & 0x0f) == 0x02); // IIR names THR empty, and reading it acknowledges
    CHECK((rd(s, 2) & 0x0f) == 0x01);
}

TEST_CASE("serial: receive, scratch, divisor latch and loopback as Linux probes them") {
    EventFd irq;
    Serial s([](std::span<const uint8_t>) {}, irq);
    wr(s, 7, 0x5a);
    CHECK(rd(s, 7) == 0x5a);
    wr(s, 3, 0x80); // DLAB
    wr(s, 0, 0x01);
    CHECK(rd(s, 0) == 0x01);
    wr(s, 3, 0x03);
    wr(s, 1, 0x01); // IER: rx data
    const uint8_t in[] = {'a', 'b'};
    s.enqueue_input(in);
    CHECK(irq.drain() == 1);
    CHECK((rd(s, 5) & 1) == 1);
    CHECK((rd(s, 2) & 0x0f) == 0x04);
    CHECK(rd(s, 0) == 'a');
    CHECK(rd(s, 0) == 'b');
    CHECK((rd(s, 5) & 1) == 0);
    wr(s, 4, 0x10 | 0x0a); // loopback with OUT2 and RTS
    CHECK(rd(s, 6) == (0x80 | 0x10));
    wr(s, 0, 'z');
    CHECK(rd(s, 0) == 'z');
}

TEST_CASE("i8042: self test answers and 0xFE resets") {
    std::vector<GuestEvent> events;
    I8042 k([&](GuestEvent e) { events.push_back(e); });
    wr(k, 4, 0xaa);
    CHECK((rd(k, 4) & 1) == 1);
    CHECK(rd(k, 0) == 0x55);
    CHECK((rd(k, 4) & 1) == 0);
    wr(k, 4, 0xfe);
    REQUIRE(events.size() == 1);
    CHECK(events[0] == GuestEvent::reboot);
}

TEST_CASE("ACPI registers: S5 with SLP_EN powers off, other types do not; reset register reboots") {
    std::vector<GuestEvent> events;
    AcpiPowerRegisters r([&](GuestEvent e) { events.push_back(e); });
    wr(r, 0, static_cast<uint8_t>(platform::kSleepTypeS5 << 2)); // no SLP_EN
    CHECK(events.empty());
    wr(r, 0, static_cast<uint8_t>((3 << 2) | 0x20)); // S3: unsupported
    CHECK(events.empty());
    wr(r, 0, static_cast<uint8_t>((platform::kSleepTypeS5 << 2) | 0x20));
    wr(r, platform::kAcpiResetPort - platform::kAcpiSleepControlPort, platform::kAcpiResetValue);
    REQUIRE(events.size() == 2);
    CHECK(events[0] == GuestEvent::poweroff);
    CHECK(events[1] == GuestEvent::reboot);
}

TEST_CASE("ACPI registers: a guest asking for S3 in a loop is logged 10 times, then every 1000th") {
    AcpiPowerRegisters r([](GuestEvent) {});
    testing::StderrCapture err;
    for (int i = 0; i < 2500; ++i)
        wr(r, 0, static_cast<uint8_t>((3 << 2) | 0x20));
    CHECK(err.lines_with("sleep type 3") == 12); // 1..10, 1000, 2000
    CHECK(err.text().find("(so far: 2000)") != std::string::npos);
}

TEST_CASE("pvpanic: advertises its events and reports a panic") {
    std::vector<GuestEvent> events;
    PvPanic p([&](GuestEvent e) { events.push_back(e); });
    CHECK(rd(p, 0) == 0x03);
    wr(p, 0, 0x02);
    CHECK(events.empty());
    wr(p, 0, 0x01);
    REQUIRE(events.size() == 1);
    CHECK(events[0] == GuestEvent::panic);
}
