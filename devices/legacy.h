// Small legacy devices the guest uses to stop: the i8042 reset line, the ACPI
// hardware-reduced sleep/reset registers, and QEMU's pvpanic port.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>

#include "devices/guest_event.h"
#include "devices/io_bus.h"

namespace ember {

// i8042 keyboard controller with a PS/2 keyboard behind it: enough for Linux
// to probe both, for `reboot=k` (command 0xFE pulses the CPU reset line) and
// for the host to press Ctrl-Alt-Del (Firecracker's SendCtrlAltDel). The
// keyboard answers the commands Linux's atkbd sends (reset, identify, scancode
// set, LEDs, typematic, enable) and raises IRQ 1 for each byte it sends while
// the guest has keyboard interrupts on (IBM PS/2 Technical Reference, 8042
// command byte bit 0). No mouse (AUX port) is attached.
class I8042 final : public IoHandler {
public:
    // `keyboard_irq` pulses IRQ 1 (edge-triggered ISA line, via irqfd).
    explicit I8042(GuestEventSink sink, std::function<void()> keyboard_irq = {})
        : sink_(std::move(sink)), keyboard_irq_(std::move(keyboard_irq)) {}
    std::string_view name() const override { return "i8042"; }
    // The window covers ports 0x60..0x64: offset 0 is data, offset 4 command/status.
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // Queues the make and break codes of Ctrl, Alt and Delete (scancode set 2,
    // or set 1 when the guest turned on the controller's translation). Throws
    // ember::Error when the guest has not enabled keyboard interrupts: no
    // driver would see the keys.
    void press_ctrl_alt_del();

    // What a checkpoint keeps: the guest's configuration of the controller
    // and keyboard. Bytes not yet read by the guest are not kept.
    struct State {
        uint8_t command_byte;
        uint8_t pending_command;
        uint8_t keyboard_pending_command;
        uint8_t keyboard_scanning;
        uint8_t reserved[4];
    };
    State save_state();
    void restore_state(const State& s);

private:
    struct OutByte {
        uint8_t value;
        bool from_keyboard; // raises IRQ 1; controller answers are polled
    };
    // Each returns whether IRQ 1 should be pulsed; called with mu_ held.
    bool push(uint8_t value, bool from_keyboard);
    bool keyboard_receive(uint8_t byte);
    bool keyboard_irq_enabled() const;

    GuestEventSink sink_;
    std::function<void()> keyboard_irq_;
    std::mutex mu_;
    std::deque<OutByte> out_;              // bytes for the guest to read at port 0x60
    uint8_t command_byte_ = 0x30;          // both ports disabled (clock inhibit bits)
    uint8_t pending_command_ = 0;          // a controller command awaiting its data byte
    uint8_t keyboard_pending_command_ = 0; // a keyboard command awaiting its argument
    bool keyboard_scanning_ = true;        // 0xF4 enable / 0xF5 disable
};

// ACPI 6.4 §4.8.3.7: sleep control (SLP_TYPx in bits 4:2, SLP_EN bit 5) and
// status registers, plus the FADT reset register. Window: kAcpiSleepControlPort..+3.
class AcpiPowerRegisters final : public IoHandler {
public:
    explicit AcpiPowerRegisters(GuestEventSink sink) : sink_(std::move(sink)) {}
    std::string_view name() const override { return "ACPI sleep/reset registers"; }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

private:
    GuestEventSink sink_;
    std::atomic<uint64_t> unsupported_sleeps_{0}; // vcpus write concurrently
};

// pvpanic (QEMU docs/specs/pvpanic.rst): reading returns the supported events,
// writing bit 0 means "guest panicked".
class PvPanic final : public IoHandler {
public:
    explicit PvPanic(GuestEventSink sink) : sink_(std::move(sink)) {}
    std::string_view name() const override { return "pvpanic"; }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

private:
    GuestEventSink sink_;
};

} // namespace ember
