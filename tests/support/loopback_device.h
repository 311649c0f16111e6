// A minimal VirtioDevice for transport and queue tests: it records what the
// transport tells it and lets the test thread drive its one queue directly.
#pragma once

#include <array>
#include <cstring>
#include <memory>
#include <optional>

#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/virtio_device.h"
#include "devices/virtio/virtio_spec.h"

namespace ember::testing {

class LoopbackDevice final : public VirtioDevice {
  public:
    static constexpr uint64_t kFeatureDeviceSpecific = 1ull << 5;
    static constexpr uint64_t kFeatures = virtio::kFeatureVersion1 | virtio::kFeatureRingEventIdx |
                                          virtio::kFeatureRingIndirectDesc | kFeatureDeviceSpecific;

    std::string_view name() const override { return "loopback"; }
    uint32_t device_id() const override { return 42; }
    uint64_t device_features() const override { return kFeatures; }
    void read_config(uint64_t offset, std::span<uint8_t> data) const override {
        for (size_t i = 0; i < data.size(); ++i)
            data[i] = offset + i < config.size() ? config[offset + i] : 0;
    }
    void write_config(uint64_t offset, std::span<const uint8_t> data) override {
        for (size_t i = 0; i < data.size() && offset + i < config.size(); ++i)
            config[offset + i] = data[i];
    }
    uint16_t queue_count() const override { return 1; }
    uint16_t queue_max_size(uint16_t) const override { return max_size; }
    void activate(const ActivationContext& ctx) override {
        ++activations;
        features = ctx.features;
        state = ctx.queues[0];
        signals = &ctx.signals;
        if (ctx.queues[0].ready) queue.emplace(ctx.memory, ctx.queues[0]);
    }
    void reset() noexcept override {
        ++resets;
        queue.reset();
        signals = nullptr;
    }

    std::array<uint8_t, 8> config{1, 2, 3, 4, 5, 6, 7, 8};
    uint16_t max_size{256};
    int activations{0};
    int resets{0};
    uint64_t features{0};
    QueueState state{};
    DeviceSignals* signals{nullptr};
    std::optional<Virtqueue> queue;
};

// A transport over a LoopbackDevice, keeping a handle on the device.
struct LoopbackRig {
    explicit LoopbackRig(const GuestMemory& mem) {
        auto d = std::make_unique<LoopbackDevice>();
        device = d.get();
        transport = std::make_unique<VirtioMmioTransport>(mem, std::move(d), EventFd{});
    }
    LoopbackDevice* device;
    std::unique_ptr<VirtioMmioTransport> transport;
};

} // namespace ember::testing
