#include "devices/serial.h"

#include <algorithm>

namespace ember {
namespace {
// Register offsets and bits (National Semiconductor PC16550D data sheet).
constexpr uint64_t kData = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
constexpr uint8_t kIerRxData = 0x01, kIerThrEmpty = 0x02;
constexpr uint8_t kIirNone = 0x01, kIirThrEmpty = 0x02, kIirRxData = 0x04, kIirFifo = 0xc0;
constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kLsrDataReady = 0x01, kLsrThrEmpty = 0x20, kLsrIdle = 0x40;
constexpr uint8_t kMsrDcd = 0x80, kMsrDsr = 0x20, kMsrCts = 0x10;
constexpr size_t kRxLimit = 4096;
} // namespace

void Serial::read(uint64_t offset, std::span<uint8_t> data) {
    if (data.size() != 1) {
        for (auto& b : data) b = 0xff;
        return;
    }
    std::lock_guard lock(mu_);
    data[0] = read_register(offset);
}

void Serial::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.size() != 1) return;
    std::lock_guard lock(mu_);
    write_register(offset, data[0]);
}

void Serial::enqueue_input(std::span<const uint8_t> bytes) {
    std::lock_guard lock(mu_);
    for (uint8_t b : bytes)
        if (rx_.size() < kRxLimit) rx_.push_back(b);
    update_interrupt();
}

Serial::State Serial::save_state() {
    std::lock_guard lock(mu_);
    State s{ier_, lcr_, mcr_, scr_, dll_, dlm_, static_cast<uint8_t>(thr_interrupt_ ? 1 : 0), 0, {}};
    for (uint8_t b : rx_) {
        if (s.rx_count == sizeof s.rx) break;
        s.rx[s.rx_count++] = b;
    }
    return s;
}

void Serial::restore_state(const State& s) {
    std::lock_guard lock(mu_);
    ier_ = s.ier & 0x0f;
    lcr_ = s.lcr;
    mcr_ = s.mcr & 0x1f;
    scr_ = s.scr;
    dll_ = s.dll;
    dlm_ = s.dlm;
    thr_interrupt_ = s.thr_interrupt != 0;
    rx_.assign(s.rx, s.rx + std::min<size_t>(s.rx_count, sizeof s.rx));
    irq_asserted_ = false; // the new irqchip line starts low: signal a pending edge again
    update_interrupt();
}

uint8_t Serial::read_register(uint64_t offset) {
    switch (offset) {
    case kData:
        if (lcr_ & kLcrDlab) return dll_;
        if (rx_.empty()) return 0;
        {
            const uint8_t b = rx_.front();
            rx_.pop_front();
            update_interrupt();
            return b;
        }
    case kIer:
        return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case kIir: {
        uint8_t iir = kIirNone;
        if ((ier_ & kIerRxData) && !rx_.empty()) {
            iir = kIirRxData;
        } else if ((ier_ & kIerThrEmpty) && thr_interrupt_) {
            iir = kIirThrEmpty;
            thr_interrupt_ = false; // reading IIR acknowledges THR empty (16550 §8.6.3)
            update_interrupt();
        }
        return iir | kIirFifo;
    }
    case kLcr:
        return lcr_;
    case kMcr:
        return mcr_;
    case kLsr:
        return static_cast<uint8_t>((rx_.empty() ? 0 : kLsrDataReady) | kLsrThrEmpty | kLsrIdle);
    case kMsr:
        if (mcr_ & kMcrLoop) {
            // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD; Linux's
            // autoconfig checks exactly this mapping.
            return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) |
                                        ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
        }
        return kMsrDcd | kMsrDsr | kMsrCts;
    case kScr:
        return scr_;
    default:
        return 0xff;
    }
}

void Serial::write_register(uint64_t offset, uint8_t value) {
    switch (offset) {
    case kData:
        if (lcr_ & kLcrDlab) {
            dll_ = value;
            return;
        }
        if (mcr_ & kMcrLoop) {
            if (rx_.size() < kRxLimit) rx_.push_back(value);
        } else {
            out_(std::span<const uint8_t>(&value, 1));
        }
        // Transmission is instantaneous, so THR is empty again at once.
        thr_interrupt_ = true;
        update_interrupt();
        return;
    case kIer:
        if (lcr_ & kLcrDlab) {
            dlm_ = value;
            return;
        }
        ier_ = value & 0x0f;
        // Enabling the THR-empty interrupt while THR is empty raises it at once.
        if (ier_ & kIerThrEmpty) thr_interrupt_ = true;
        update_interrupt();
        return;
    case kLcr:
        lcr_ = value;
        return;
    case kMcr:
        mcr_ = value & 0x1f;
        return;
    case kScr:
        scr_ = value;
        return;
    default:
        return; // FCR and read-only registers: nothing to model
    }
}

void Serial::update_interrupt() {
    const bool pending = ((ier_ & kIerRxData) && !rx_.empty()) || ((ier_ & kIerThrEmpty) && thr_interrupt_);
    // The line is edge-triggered (irqfd): signal each rising edge once.
    if (pending && !irq_asserted_) irq_.signal();
    irq_asserted_ = pending;
}

} // namespace ember
