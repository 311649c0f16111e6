// virtio-mmio transport, version 2 only (virtio 1.2 §4.2.2).
//
// Threads: register reads and writes come from vcpu threads (a mutex orders
// vcpus against each other on the control path only). The device's I/O thread
// never takes that mutex: it touches only the atomic InterruptStatus and
// Status words and the eventfds. Guest kicks reach the I/O thread through the
// per-queue notify eventfd, which KVM_IOEVENTFD signals directly.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "devices/io_bus.h"
#include "devices/virtio/virtio_device.h"
#include "vmm/guest_memory.h"
#include "vmm/unique_fd.h"

namespace ember {

class VirtioMmioTransport final : public IoHandler, private DeviceSignals {
  public:
    // `irq` is signalled for every interrupt; the VMM registers it with
    // KVM_IRQFD. `mem` must outlive the transport.
    VirtioMmioTransport(const GuestMemory& mem, std::unique_ptr<VirtioDevice> device, EventFd irq);
    ~VirtioMmioTransport() override;
    VirtioMmioTransport(const VirtioMmioTransport&) = delete;
    VirtioMmioTransport& operator=(const VirtioMmioTransport&) = delete;

    std::string_view name() const override { return name_; }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // The guest's kicks for queue `index`: register with KVM_IOEVENTFD at
    // window base + 0x50, 4 bytes, datamatch = index. Throws std::out_of_range.
    const EventFd& notify_event(uint16_t index) const { return notify_.at(index); }
    const EventFd& interrupt_event() const noexcept { return irq_; }

    // Stops the device (joins its I/O thread). Idempotent; the destructor calls it.
    void shutdown() noexcept;

    VirtioDevice& device() noexcept { return *device_; }
    uint32_t status() const noexcept { return status_.load(std::memory_order_acquire); }
    uint32_t interrupt_status() const noexcept {
        return interrupt_status_.load(std::memory_order_acquire);
    }
    // Register writes refused (bad size, read-only, wrong state): counted.
    uint64_t bad_accesses() const noexcept { return bad_accesses_.load(std::memory_order_relaxed); }

  private:
    void used_buffer_notification() noexcept override;
    void needs_reset(std::string_view why) noexcept override;

    uint32_t read_register(uint64_t offset);
    void write_register(uint64_t offset, uint32_t value);
    void write_status(uint32_t value);
    void write_queue_register(uint64_t offset, uint32_t value);
    void reset_locked() noexcept;
    void activate_locked();
    void refuse(std::string_view what, uint64_t offset, uint64_t value) noexcept;

    const GuestMemory& mem_;
    std::unique_ptr<VirtioDevice> device_;
    EventFd irq_;
    std::vector<EventFd> notify_;
    std::string name_;

    std::mutex regs_mutex_; // vcpu against vcpu; never taken by the I/O thread
    uint32_t device_features_sel_{0};
    uint32_t driver_features_sel_{0};
    uint64_t driver_features_{0};
    bool driver_features_beyond_64_{false}; // bits the device cannot offer
    uint32_t queue_sel_{0};
    std::vector<QueueState> queues_;
    bool active_{false};

    // Status is written by vcpus and gains NEEDS_RESET from the I/O thread.
    std::atomic<uint32_t> status_{0};
    // Set by the I/O thread (release), read and acknowledged by vcpus.
    std::atomic<uint32_t> interrupt_status_{0};
    std::atomic<uint64_t> bad_accesses_{0};
};

} // namespace ember
