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
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "devices/io_bus.h"
#include "devices/virtio/inflight_region.h"
#include "devices/virtio/virtio_device.h"
#include "vmm/guest_memory.h"
#include "vmm/unique_fd.h"

namespace ember {

// A saved device state that cannot be restored here (see restore_state).
class DeviceStateError : public Error {
  public:
    using Error::Error;
};

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
    // Driver status, InterruptStatus and the device's own state in one line
    // (a `kill -USR2` dump). Any thread but the device's I/O thread.
    std::string describe();

    // --- Checkpoint and restore (DESIGN.md) -------------------------------------------
    // All of these: from the main thread, with the vcpus paused (no register
    // access may run concurrently), never from an I/O thread.
    //
    // Parks the device's I/O threads at their next park point (the
    // quiesce signal, quiesce_signal() = SIGRTMIN+1, sent with
    // pthread_sigqueue); host I/O already submitted is not drained. Returns
    // when every thread acknowledged; trivially for an inactive device.
    // Idempotent. Throws ember::Error when a thread does not park in time.
    void quiesce();
    // Lets parked threads continue where they were; requests that were in
    // flight complete normally ("continue" after a checkpoint).
    void unquiesce() noexcept;
    bool quiesced() const noexcept { return quiesced_; }
    // Requests in flight (popped, not yet published) over all queues, from
    // the in-flight regions. Meaningful while quiesced; 0 when inactive.
    uint32_t inflight_requests() const;
    // The region of queue `index`, or nullptr (inactive device, queue not ready).
    const InflightRegion* inflight_region(uint16_t index) const;

    // The device state as one versioned blob (format: mmio_transport_state.cpp):
    // registers, negotiated features, status, queue select, per-queue state
    // (addresses, size, ready, EVENT_IDX/INDIRECT, used.idx), interrupt
    // status, config generation, the config space, the in-flight regions.
    // Only while quiesced (or inactive): throws ember::Error otherwise.
    std::vector<uint8_t> save_state() const;
    // On a freshly created transport (status 0) over the restored guest
    // memory: validates the blob against the device and guest memory (throws
    // DeviceStateError: wrong version, other device or features, config
    // changed, queue too large or outside RAM, used.idx not matching, corrupt
    // region), applies it, recovers each region, starts the device's I/O
    // threads, which resubmit the in-flight requests in counter order before
    // any new avail entry, and raises one interrupt per queue. The vcpus may
    // start once it returns. On error the transport is left reset.
    // With `start` = deferred the I/O threads, resubmission and interrupts
    // wait for start_restored(): a VM restored paused stays exactly as saved
    // (save_state gives the same blob) until its vcpus first run.
    enum class RestoreStart : uint8_t { now, deferred };
    void restore_state(std::span<const uint8_t> blob, RestoreStart start = RestoreStart::now);
    // Starts a device restored with RestoreStart::deferred; no-op otherwise.
    void start_restored();
    // The in-process model of a backend crash (DESIGN.md "Fault points"):
    // the device's I/O threads and their in-memory state are thrown away
    // (their host I/O is waited for, its results dropped), fresh ones
    // recover from guest memory and the regions alone and resubmit. One
    // interrupt per queue follows. No-op when inactive. Returns what the
    // recovery found (also logged).
    IoRecovery restart_io();

    // restart-io faults (vmm/fault): `handler` runs on an I/O thread that
    // stopped itself; it must hand over to another thread (IoSupervisor),
    // which calls restart_io(). Set it before the driver activates the
    // device (the I/O thread reads it without a lock). Without a handler a
    // lost I/O thread makes the device ask for a reset instead of hanging.
    using IoLostHandler = std::function<void(VirtioMmioTransport&)>;
    void set_io_lost_handler(IoLostHandler handler) { io_lost_ = std::move(handler); }

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
    void io_thread_lost(std::string_view why) noexcept override;

    uint32_t read_register(uint64_t offset);
    void write_register(uint64_t offset, uint32_t value);
    void write_status(uint32_t value);
    void write_queue_register(uint64_t offset, uint32_t value);
    void reset_locked() noexcept;
    void activate_locked(bool recover = false);
    void start_restored_locked();
    void refuse(std::string_view what, uint64_t offset, uint64_t value) noexcept;

    const GuestMemory& mem_;
    std::unique_ptr<VirtioDevice> device_;
    EventFd irq_;
    std::vector<EventFd> notify_;
    std::string name_;

    mutable std::mutex regs_mutex_; // vcpu against vcpu; never taken by the I/O thread
    uint32_t device_features_sel_{0};
    uint32_t driver_features_sel_{0};
    uint64_t driver_features_{0};
    bool driver_features_beyond_64_{false}; // bits the device cannot offer
    uint32_t queue_sel_{0};
    std::vector<QueueState> queues_;
    bool active_{false};
    bool start_pending_{false}; // restored with RestoreStart::deferred, not started yet
    // One per queue while active (null for a queue that is not ready).
    std::vector<std::unique_ptr<InflightRegion>> inflight_;
    bool quiesced_{false}; // main thread only
    IoLostHandler io_lost_;

    // Status is written by vcpus and gains NEEDS_RESET from the I/O thread.
    std::atomic<uint32_t> status_{0};
    // Set by the I/O thread (release), read and acknowledged by vcpus.
    std::atomic<uint32_t> interrupt_status_{0};
    std::atomic<uint64_t> bad_accesses_{0};
    std::atomic<uint64_t> needs_reset_events_{0};
};

} // namespace ember
