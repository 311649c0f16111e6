// 8250/16550A UART (COM1) as Linux's 8250 driver expects it: scratch and
// loopback for probing, THR-empty and receive interrupts through an irqfd.
// Output goes straight to the console sink; input arrives from the console
// reader thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "devices/io_bus.h"
#include "vmm/unique_fd.h"

namespace ember {

class Serial final : public IoHandler {
public:
    using OutputSink = std::function<void(std::span<const uint8_t>)>;

    Serial(OutputSink out, const EventFd& irq) : out_(std::move(out)), irq_(irq) {}

    std::string_view name() const override { return "serial (COM1)"; }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // Bytes typed on the host console. Thread-safe.
    void enqueue_input(std::span<const uint8_t> bytes);

    // Register state for snapshots. Restoring re-raises a pending interrupt,
    // so a guest driver waiting for THR-empty resumes transmitting.
    struct State {
        uint8_t ier, lcr, mcr, scr, dll, dlm, thr_interrupt, rx_count;
        uint8_t rx[64];
    };
    State save_state();
    void restore_state(const State& s);

private:
    uint8_t read_register(uint64_t offset);
    void write_register(uint64_t offset, uint8_t value);
    void update_interrupt(); // caller holds mu_

    OutputSink out_;
    const EventFd& irq_;
    std::mutex mu_; // vcpus and the console thread; never on the block data path
    std::deque<uint8_t> rx_;
    uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0x08, scr_ = 0, dll_ = 0x0c, dlm_ = 0;
    bool thr_interrupt_ = false; // THR-empty interrupt pending (cleared by an IIR read)
    bool irq_asserted_ = false;  // last computed line state, to signal only on edges
};

} // namespace ember
