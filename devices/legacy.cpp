#include "devices/legacy.h"

#include <algorithm>

#include "vmm/log.h"
#include "vmm/platform.h"

namespace ember {
namespace {
// i8042 commands and status bits (IBM PS/2 technical reference).
constexpr uint8_t kCmdReadCommandByte = 0x20, kCmdWriteCommandByte = 0x60, kCmdSelfTest = 0xaa,
                  kCmdInterfaceTest = 0xab, kCmdDisableKbd = 0xad, kCmdEnableKbd = 0xae,
                  kCmdPulseReset = 0xfe;
constexpr uint8_t kStatusOutputFull = 0x01, kStatusSystemFlag = 0x04, kStatusCommand = 0x08;

constexpr uint8_t kSlpEn = 1u << 5;
constexpr uint8_t kPvPanicPanicked = 1u << 0, kPvPanicCrashLoaded = 1u << 1;
} // namespace

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0xff);
    if (data.size() != 1) return;
    std::lock_guard lock(mu_);
    if (offset == 0) {
        if (out_.empty()) {
            data[0] = 0;
        } else {
            data[0] = out_.front();
            out_.pop_front();
        }
    } else if (offset == 4) {
        data[0] = static_cast<uint8_t>(kStatusSystemFlag | kStatusCommand | (out_.empty() ? 0 : kStatusOutputFull));
    }
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.size() != 1) return;
    const uint8_t v = data[0];
    bool reset = false;
    {
        std::lock_guard lock(mu_);
        if (offset == 0) {
            if (pending_command_ == kCmdWriteCommandByte) command_byte_ = v;
            pending_command_ = 0;
            // Bytes sent to the (absent) keyboard are dropped.
        } else if (offset == 4) {
            switch (v) {
            case kCmdReadCommandByte: out_.push_back(command_byte_); break;
            case kCmdWriteCommandByte: pending_command_ = v; break;
            case kCmdSelfTest: out_.push_back(0x55); break;   // "test passed"
            case kCmdInterfaceTest: out_.push_back(0x00); break; // "no error"
            case kCmdDisableKbd: command_byte_ |= 0x10; break;
            case kCmdEnableKbd: command_byte_ &= static_cast<uint8_t>(~0x10); break;
            case kCmdPulseReset: reset = true; break;
            default: break;
            }
        }
    }
    if (reset) {
        log::debug("i8042: guest pulsed the reset line");
        sink_(GuestEvent::reboot);
    }
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
            log::warn("guest asked for ACPI sleep type {}, which ember does not support; ignored", type);
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
