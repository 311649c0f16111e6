// The thread that restarts block I/O threads (DESIGN.md "Fault points and
// crash injection"): the in-process model of a storage backend that crashed
// and is started again by its supervisor.
//
// Two triggers:
//   - a restart-io fault point fired: the I/O thread unwound itself and
//     reported itself lost (VirtioMmioTransport::set_io_lost_handler); it
//     cannot restart itself (restart_io() joins it), so it hands over here;
//   - random restarts (--fault random:period=MS): every MS ms on average
//     (uniform in [MS/2, 3MS/2]) each device's I/O thread is thrown away
//     wherever it happens to be.
// Either way the supervisor thread calls restart_io(), which recovers from
// guest memory and the in-flight region alone, and records what it found.
//
//   IoSupervisor sup({&transport}, {.random_period_ms = 0});
//   // ... fault::arm({...}); the guest runs; ...
//   for (const auto& r : sup.restarts()) ...
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "devices/virtio/mmio_transport.h"

namespace ember {

class IoSupervisor final {
  public:
    struct Options {
        // 0: restart only when a fault point asks for it.
        uint32_t random_period_ms{0};
        uint64_t seed{1};
        // Runs each restart; the VMM passes one that holds its control lock so
        // that no restart lands in the middle of a checkpoint. Empty: direct.
        std::function<void(const std::function<void()>&)> guard{};
    };
    struct Restart {
        size_t device;  // index into the devices given at construction
        bool random;    // a random-instant restart, not a fault point
        bool ok;        // false: restart_io() threw (the device asked for a reset)
        IoRecovery recovery;
    };

    // Takes over the devices' io-lost handlers: call before the driver
    // activates them. The devices must outlive the supervisor.
    IoSupervisor(std::span<VirtioMmioTransport* const> devices, Options options);
    ~IoSupervisor();
    IoSupervisor(const IoSupervisor&) = delete;
    IoSupervisor& operator=(const IoSupervisor&) = delete;

    // Stops the thread (a restart in progress finishes first). Idempotent.
    void stop() noexcept;

    std::vector<Restart> restarts() const;
    // Waits until at least `n` restarts were recorded; false on timeout.
    bool wait_restarts(size_t n, std::chrono::milliseconds timeout) const;

  private:
    void run();
    void restart(size_t index, bool random);

    std::vector<VirtioMmioTransport*> devices_;
    Options options_;
    mutable std::mutex mu_;
    mutable std::condition_variable cv_;
    std::deque<size_t> lost_; // devices whose I/O thread stopped itself
    std::vector<Restart> restarts_;
    bool stopping_{false};
    std::thread thread_;
};

} // namespace ember
