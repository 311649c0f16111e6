// virtio entropy device (virtio 1.2 §5.4): one request queue of writable
// buffers, which the device fills from the host's getrandom().
//
//   auto dev = std::make_shared<ember::VirtioMmioTransport>(
//       mem, std::make_unique<ember::VirtioRng>(), ember::EventFd{});
//   // KVM_IRQFD: dev->interrupt_event().fd(); no KVM_IOEVENTFD (kicks_inline)
//
// Threads: none of its own. A kick exits to the vcpu that wrote QueueNotify,
// which fills the buffers before it returns to the guest. A request costs a
// few microseconds of getrandom, and the guest pays for it with its own vcpu's
// time, so a guest that reads without end slows only itself: no host thread
// works for it, which is what Firecracker's rate limiter on this device is
// for. And a request is popped, filled and published within one exit, so none
// is ever in flight at a checkpoint (the vcpus park between exits).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "devices/virtio/virtio_device.h"
#include "devices/virtio/virtqueue.h"

namespace ember {

struct RngStatsSnapshot {
    uint64_t requests;     // chains completed, with or without bytes
    uint64_t bytes;        // random bytes written into guest buffers
    uint64_t bad_requests; // malformed chains, or chains with device-readable buffers
    uint64_t host_errors;  // getrandom() failures
    uint64_t interrupts;
};

class VirtioRng final : public VirtioDevice {
  public:
    // Fills `out` with random bytes; returns how many (fewer only when it can
    // give no more), or -errno. getrandom(2) by default, retried when a signal
    // cuts a read short; tests give one that fails.
    using RandomSource = std::function<long(std::span<uint8_t> out)>;

    // Bytes written into one chain at most: a guest asking for more gets this
    // much (used.len says so, §5.4.6.2), which bounds the time one exit takes.
    static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;

    // `queue_size`: the queue's maximum (QueueNumMax), a power of two <= 256.
    explicit VirtioRng(uint16_t queue_size = kMaxQueueSize, RandomSource source = {});
    ~VirtioRng() override;

    std::string_view name() const override { return "virtio-rng"; }
    uint32_t device_id() const override { return virtio::kDeviceIdEntropy; }
    uint64_t device_features() const override;
    // §5.4.4: no configuration space.
    void read_config(uint64_t offset, std::span<uint8_t> data) const override;
    void write_config(uint64_t offset, std::span<const uint8_t> data) override;
    uint16_t queue_count() const override { return 1; }
    uint16_t queue_max_size(uint16_t index) const override { return index == 0 ? queue_size_ : 0; }
    void activate(const ActivationContext& ctx) override;
    void reset() noexcept override;
    bool kicks_inline() const override { return true; }
    void kick(uint16_t queue) override;
    std::string describe() override;

    RngStatsSnapshot stats() const noexcept;

  private:
    struct Running {
        Virtqueue queue;
        InflightRegion* region;
        DeviceSignals* signals;
        const GuestMemory* memory;
    };
    void drain();
    void serve(DescriptorChain&& chain);
    uint32_t fill(const DescriptorChain& chain);
    void publish();
    void count_bad(std::string_view why, uint16_t head);

    uint16_t queue_size_;
    RandomSource source_;
    std::optional<Running> running_;
    // Written under the transport's register lock, read by metrics and dumps
    // from any thread.
    std::atomic<uint64_t> requests_{0};
    std::atomic<uint64_t> bytes_{0};
    std::atomic<uint64_t> bad_requests_{0};
    std::atomic<uint64_t> host_errors_{0};
    std::atomic<uint64_t> interrupts_{0};
};

} // namespace ember
