// Small legacy devices the guest uses to stop: the i8042 reset line, the ACPI
// hardware-reduced sleep/reset registers, and QEMU's pvpanic port.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>

#include "devices/guest_event.h"
#include "devices/io_bus.h"

namespace ember {

// i8042 keyboard controller: enough for Linux to probe it and for `reboot=k`
// (command 0xFE pulses the CPU reset line). No keyboard is attached.
class I8042 final : public IoHandler {
public:
    explicit I8042(GuestEventSink sink) : sink_(std::move(sink)) {}
    std::string_view name() const override { return "i8042"; }
    // The window covers ports 0x60..0x64: offset 0 is data, offset 4 command/status.
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

private:
    GuestEventSink sink_;
    std::mutex mu_;
    std::deque<uint8_t> out_;        // bytes for the guest to read at port 0x60
    uint8_t command_byte_ = 0x30;    // both ports disabled (clock inhibit bits)
    uint8_t pending_command_ = 0;    // a command awaiting its data byte
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
