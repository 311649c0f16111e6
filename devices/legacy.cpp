#include "devices/legacy.h"

#include <algorithm>

#include "vmm/errors.h"
#include "vmm/log.h"
#include "vmm/platform.h"

namespace ember {
namespace {
// i8042 commands and status bits (IBM PS/2 technical reference).
constexpr uint8_t kCmdReadCommandByte = 0x20, kCmdWriteCommandByte = 0x60, kCmdSelfTest = 0xaa,
                  kCmdInterfaceTest = 0xab, kCmdDisableKbd = 0xad, kCmdEnableKbd = 0xae,
                  kCmdWriteOutputPort = 0xd1, kCmdWriteKeyboardBuffer = 0xd2, kCmdWriteAuxBuffer = 0xd3,
                  kCmdWriteAux = 0xd4, kCmdPulseReset = 0xfe;
constexpr uint8_t kStatusOutputFull = 0x01, kStatusSystemFlag = 0x04, kStatusCommand = 0x08;
constexpr uint8_t kCommandKeyboardInterrupt = 0x01, kCommandTranslate = 0x40;
// PS/2 keyboard commands and answers.
constexpr uint8_t kKbdSetLeds = 0xed, kKbdEcho = 0xee, kKbdScancodeSet = 0xf0, kKbdIdentify = 0xf2,
                  kKbdTypematic = 0xf3, kKbdEnable = 0xf4, kKbdDisable = 0xf5, kKbdReset = 0xff;
constexpr uint8_t kKbdAck = 0xfa, kKbdResend = 0xfe, kKbdSelfTestPassed = 0xaa;

constexpr uint8_t kSlpEn = 1u << 5;
constexpr uint8_t kPvPanicPanicked = 1u << 0, kPvPanicCrashLoaded = 1u << 1;
} // namespace

bool I8042::keyboard_irq_enabled() const { return (command_byte_ & kCommandKeyboardInterrupt) != 0; }

bool I8042::push(uint8_t value, bool from_keyboard) {
    const bool was_empty = out_.empty();
    out_.push_back({value, from_keyboard});
    return was_empty && from_keyboard && keyboard_irq_enabled();
}

// The keyboard's side of a byte written to port 0x60 (IBM PS/2 Technical
// Reference, keyboard commands). Every command and argument is acknowledged
// with 0xFA; answers follow the acknowledgement.
bool I8042::keyboard_receive(uint8_t byte) {
    bool irq = false;
    if (keyboard_pending_command_ != 0) {
        const uint8_t command = keyboard_pending_command_;
        keyboard_pending_command_ = 0;
        irq |= push(kKbdAck, true);
        // Scancode set 0 asks which set is in use; ember's keyboard sends set 2.
        if (command == kKbdScancodeSet && byte == 0) irq |= push(2, true);
        return irq;
    }
    switch (byte) {
    case kKbdSetLeds:
    case kKbdScancodeSet:
    case kKbdTypematic:
        keyboard_pending_command_ = byte;
        return push(kKbdAck, true);
    case kKbdEcho: return push(kKbdEcho, true);
    case kKbdIdentify:
        irq |= push(kKbdAck, true);
        irq |= push(0xab, true); // MF2 keyboard
        irq |= push(0x83, true);
        return irq;
    case kKbdEnable:
        keyboard_scanning_ = true;
        return push(kKbdAck, true);
    case kKbdDisable:
        keyboard_scanning_ = false;
        return push(kKbdAck, true);
    case kKbdReset:
        keyboard_scanning_ = true;
        irq |= push(kKbdAck, true);
        irq |= push(kKbdSelfTestPassed, true);
        return irq;
    default:
        // 0xF6 defaults, 0xF7..0xFD set-3 key types, 0xFE resend: nothing to do.
        if (byte >= 0xf6) return push(kKbdAck, true);
        return push(kKbdResend, true); // not a command this keyboard knows
    }
}

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0xff);
    if (data.size() != 1) return;
    bool irq = false;
    {
        std::lock_guard lock(mu_);
        if (offset == 0) {
            if (out_.empty()) {
                data[0] = 0;
            } else {
                data[0] = out_.front().value;
                out_.pop_front();
                // One byte at a time in the output buffer: the next keyboard
                // byte interrupts again once this one is read.
                irq = !out_.empty() && out_.front().from_keyboard && keyboard_irq_enabled();
            }
        } else if (offset == 4) {
            data[0] = static_cast<uint8_t>(kStatusSystemFlag | kStatusCommand | (out_.empty() ? 0 : kStatusOutputFull));
        }
    }
    if (irq && keyboard_irq_) keyboard_irq_();
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.size() != 1) return;
    const uint8_t v = data[0];
    bool reset = false;
    bool irq = false;
    {
        std::lock_guard lock(mu_);
        if (offset == 0) {
            const uint8_t pending = pending_command_;
            pending_command_ = 0;
            if (pending == kCmdWriteCommandByte) {
                command_byte_ = v;
            } else if (pending == 0) {
                irq = keyboard_receive(v);
            }
            // Data for the output port or the (absent) mouse is dropped.
        } else if (offset == 4) {
            switch (v) {
            case kCmdReadCommandByte: push(command_byte_, false); break;
            case kCmdWriteCommandByte:
            case kCmdWriteOutputPort:
            case kCmdWriteKeyboardBuffer:
            case kCmdWriteAuxBuffer:
            case kCmdWriteAux: pending_command_ = v; break;
            case kCmdSelfTest: push(0x55, false); break;   // "test passed"
            case kCmdInterfaceTest: push(0x00, false); break; // "no error"
            case kCmdDisableKbd: command_byte_ |= 0x10; break;
            case kCmdEnableKbd: command_byte_ &= static_cast<uint8_t>(~0x10); break;
            case kCmdPulseReset: reset = true; break;
            default: break;
            }
        }
    }
    if (irq && keyboard_irq_) keyboard_irq_();
    if (reset) {
        log::debug("i8042: guest pulsed the reset line");
        sink_(GuestEvent::reboot);
    }
}

void I8042::press_ctrl_alt_del() {
    // Make then break codes: Ctrl, Alt, Delete down; Delete, Alt, Ctrl up.
    // Set 2 (what the keyboard sends) and set 1 (what the controller passes
    // on when the guest set the command byte's translate bit).
    static constexpr uint8_t kSet2[] = {0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14};
    static constexpr uint8_t kSet1[] = {0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d};
    bool irq = false;
    {
        std::lock_guard lock(mu_);
        if (!keyboard_irq_enabled() || !keyboard_scanning_)
            throw Error("cannot send Ctrl-Alt-Del: the guest has not enabled its PS/2 keyboard (no i8042 driver, "
                        "or keyboard interrupts off)");
        const std::span<const uint8_t> codes = (command_byte_ & kCommandTranslate) ? std::span<const uint8_t>(kSet1)
                                                                                   : std::span<const uint8_t>(kSet2);
        for (uint8_t c : codes) irq |= push(c, true);
    }
    if (irq && keyboard_irq_) keyboard_irq_();
}

I8042::State I8042::save_state() {
    std::lock_guard lock(mu_);
    return State{command_byte_, pending_command_, keyboard_pending_command_,
                 static_cast<uint8_t>(keyboard_scanning_ ? 1 : 0), {}};
}

void I8042::restore_state(const State& s) {
    std::lock_guard lock(mu_);
    command_byte_ = s.command_byte;
    pending_command_ = s.pending_command;
    keyboard_pending_command_ = s.keyboard_pending_command;
    keyboard_scanning_ = s.keyboard_scanning != 0;
    out_.clear();
}

void AcpiPowerRegisters::read(uint64_t, std::span<uint8_t> data) {
    // Sleep status: WAK_STS clear, nothing pending. Other registers read as 0.
    std::fill(data.begin(), data.end(), 0);
}

void AcpiPowerRegisters::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.size() != 1) return;
    const uint64_t port = platform::kAcpiSleepControlPort + offset;
    const uint8_t v = data[0];
    if (port == platform::kAcpiSleepControlPort && (v & kSlpEn)) {
        const uint8_t type = (v >> 2) & 0x7;
        if (type == platform::kSleepTypeS5) {
            sink_(GuestEvent::poweroff);
        } else {
            const uint64_t n = unsupported_sleeps_.fetch_add(1, std::memory_order_relaxed) + 1;
            if (log::worth_logging(n))
                log::warn("guest asked for ACPI sleep type {}, which ember does not support; "
                          "ignored (so far: {})",
                          type, n);
        }
    } else if (port == platform::kAcpiResetPort && v == platform::kAcpiResetValue) {
        sink_(GuestEvent::reboot);
    }
}

void PvPanic::read(uint64_t, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (!data.empty()) data[0] = kPvPanicPanicked | kPvPanicCrashLoaded;
}

void PvPanic::write(uint64_t, std::span<const uint8_t> data) {
    if (data.empty()) return;
    if (data[0] & kPvPanicPanicked) sink_(GuestEvent::panic);
    else if (data[0] & kPvPanicCrashLoaded) log::info("guest kernel is loading a crash kernel");
}

} // namespace ember
