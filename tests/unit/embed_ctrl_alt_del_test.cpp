// The i8042's PS/2 keyboard as Linux's atkbd probes it, IRQ 1, and the
// Ctrl-Alt-Del that SendCtrlAltDel (control socket) and
// ember::embed::Vm::send_ctrl_alt_del inject.
#include <doctest/doctest.h>

#include <vector>

#include "devices/legacy.h"
#include "vmm/errors.h"

using namespace ember;

namespace {

struct Keyboard {
    int irqs = 0;
    std::vector<GuestEvent> events;
    I8042 dev{[this](GuestEvent e) { events.push_back(e); }, [this] { ++irqs; }};

    uint8_t status() {
        uint8_t b = 0;
        dev.read(4, {&b, 1});
        return b;
    }
    uint8_t data() {
        uint8_t b = 0;
        dev.read(0, {&b, 1});
        return b;
    }
    void command(uint8_t v) { dev.write(4, {&v, 1}); }
    void send(uint8_t v) { dev.write(0, {&v, 1}); }
    // Everything in the output buffer, as the guest reads it.
    std::vector<uint8_t> drain() {
        std::vector<uint8_t> out;
        while (status() & 1)
            out.push_back(data());
        return out;
    }
    // As Linux's i8042 driver does at init: keyboard interrupts on,
    // keyboard clock enabled.
    void enable_interrupts(uint8_t extra = 0) {
        command(0x60);
        send(static_cast<uint8_t>(0x01 | extra));
    }
};

using Bytes = std::vector<uint8_t>;

} // namespace

TEST_CASE("i8042 keyboard: answers atkbd's probe") {
    Keyboard k;
    k.send(0xf2); // identify
    CHECK(k.drain() == Bytes{0xfa, 0xab, 0x83});
    k.send(0xff); // reset: acknowledge, then self test passed
    CHECK(k.drain() == Bytes{0xfa, 0xaa});
    k.send(0xf0); // scancode set: query
    k.send(0x00);
    CHECK(k.drain() == Bytes{0xfa, 0xfa, 0x02});
    k.send(0xed); // LEDs, with their argument
    k.send(0x07);
    CHECK(k.drain() == Bytes{0xfa, 0xfa});
    k.send(0xee);
    CHECK(k.drain() == Bytes{0xee});
    k.send(0x42); // not a keyboard command
    CHECK(k.drain() == Bytes{0xfe});
    CHECK(k.irqs == 0); // interrupts were never enabled
}

TEST_CASE("i8042 keyboard: controller command data does not reach the keyboard") {
    Keyboard k;
    k.command(0xd4); // next data byte is for the mouse, which is absent
    k.send(0xf2);
    CHECK(k.drain().empty());
    k.command(0x60); // write command byte
    k.send(0x45);
    k.command(0x20);
    CHECK(k.drain() == Bytes{0x45});
}

TEST_CASE("i8042 keyboard: IRQ 1 once per keyboard byte while interrupts are on") {
    Keyboard k;
    k.enable_interrupts();
    k.command(0x20); // a controller answer is polled, it does not interrupt
    CHECK(k.drain() == Bytes{0x01});
    CHECK(k.irqs == 0);
    k.send(0xf2);
    CHECK(k.irqs == 1); // the first byte
    CHECK(k.data() == 0xfa);
    CHECK(k.irqs == 2); // the next byte, once the first was read
    CHECK(k.data() == 0xab);
    CHECK(k.data() == 0x83);
    CHECK(k.irqs == 3);
    CHECK((k.status() & 1) == 0);
}

TEST_CASE("i8042 Ctrl-Alt-Del: set 2 make and break codes, each with its interrupt") {
    Keyboard k;
    CHECK_THROWS_WITH_AS(k.dev.press_ctrl_alt_del(),
                         doctest::Contains("the guest has not enabled its PS/2 keyboard"), Error);
    k.enable_interrupts();
    k.dev.press_ctrl_alt_del();
    const Bytes set2 = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14};
    CHECK(k.drain() == set2);
    CHECK(k.irqs == static_cast<int>(set2.size()));
    CHECK(k.events.empty()); // the guest reboots itself; the device does not
}

TEST_CASE(
    "i8042 Ctrl-Alt-Del: set 1 when the guest turned on translation; disabled keyboard refuses") {
    Keyboard k;
    k.enable_interrupts(0x40);
    k.dev.press_ctrl_alt_del();
    CHECK(k.drain() == Bytes{0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d});
    k.send(0xf5); // disable scanning
    CHECK(k.drain() == Bytes{0xfa});
    CHECK_THROWS_AS(k.dev.press_ctrl_alt_del(), Error);
}

TEST_CASE("i8042 state survives a checkpoint; unread bytes do not") {
    Keyboard k;
    k.enable_interrupts(0x40);
    k.send(0xf5);
    const auto state = k.dev.save_state();
    Keyboard r;
    r.send(0xf2); // bytes the new device had queued are dropped by restore
    r.dev.restore_state(state);
    CHECK((r.status() & 1) == 0);
    r.command(0x20);
    CHECK(r.drain() == Bytes{0x41});
    CHECK_THROWS_AS(r.dev.press_ctrl_alt_del(), Error); // scanning was off
    r.send(0xf4);
    CHECK(r.drain() == Bytes{0xfa});
    r.dev.press_ctrl_alt_del();
    CHECK(r.drain().size() == 8); // set 1: translation kept
}
