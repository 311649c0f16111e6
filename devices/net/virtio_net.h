// virtio network device (virtio 1.2 §5.1) over a host TAP: receiveq 0,
// transmitq 1, no control queue, no offloads (tap.h), one queue pair.
//
//   auto dev = std::make_shared<ember::VirtioMmioTransport>(
//       mem, std::make_unique<ember::VirtioNet>(spec, ember::open_tap(spec.tap)), irq);
//   // one KVM_IOEVENTFD per queue on dev->notify_event(q), as for a disk
//
// Threads: one I/O thread per device while the driver has it running
// (net_io_thread.h); vcpus only write registers. Checkpoints park that
// thread between handlers, where no chain is in flight.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "devices/net/net_io_thread.h"
#include "devices/net/net_spec.h"
#include "devices/virtio/virtio_device.h"
#include "vmm/unique_fd.h"

namespace ember {

namespace virtio::net {
inline constexpr uint64_t kFeatureMac = 1ull << 5;     // config.mac is valid
inline constexpr uint64_t kFeatureStatus = 1ull << 16; // config.status is valid
inline constexpr uint16_t kStatusLinkUp = 1;
inline constexpr uint16_t kReceiveQueue = 0;
inline constexpr uint16_t kTransmitQueue = 1;
inline constexpr uint16_t kConfigSize = 8; // mac[6], status (le16)
} // namespace virtio::net

struct NetStatsSnapshot {
    uint64_t rx_frames, rx_bytes, tx_frames, tx_bytes, rx_dropped, tx_errors, bad_requests,
        interrupts, rx_throttled, tx_throttled;
};

// What a network device's buckets hold, for a checkpoint: empty for a
// direction whose buckets are full as a new limit's are (or that has none).
struct NetRateLimitFills {
    std::optional<RateLimitFill> rx;
    std::optional<RateLimitFill> tx;
    bool operator==(const NetRateLimitFills&) const = default;
};

class VirtioNet final : public VirtioDevice {
  public:
    // `backend`: the tap from open_tap(), or a test's socket (one frame per
    // read/write, non-blocking). `queue_size`: QueueNumMax of both queues, a
    // power of two <= 256.
    VirtioNet(NetSpec spec, UniqueFd backend, uint16_t queue_size = kMaxQueueSize);
    ~VirtioNet() override;

    std::string_view name() const override { return name_; }
    uint32_t device_id() const override { return virtio::kDeviceIdNet; }
    uint64_t device_features() const override;
    void read_config(uint64_t offset, std::span<uint8_t> data) const override;
    void write_config(uint64_t offset, std::span<const uint8_t> data) override;
    uint16_t queue_count() const override { return 2; }
    uint16_t queue_max_size(uint16_t index) const override { return index < 2 ? queue_size_ : 0; }
    void activate(const ActivationContext& ctx) override;
    void reset() noexcept override;
    void quiesce() override;
    void unquiesce() noexcept override;
    uint16_t config_size() const override { return virtio::net::kConfigSize; }
    std::string describe() override;

    // As created: its rx_limit and tx_limit are the limits it started with
    // (rx_rate_limit()/tx_rate_limit() are the current ones).
    const NetSpec& spec() const noexcept { return spec_; }
    // The limits from now on, from any thread; the new buckets start full.
    void set_rx_rate_limit(const RateLimit& limit) { rx_limit_.replace(limit); }
    void set_tx_rate_limit(const RateLimit& limit) { tx_limit_.replace(limit); }
    RateLimit rx_rate_limit() const { return rx_limit_.current(); }
    RateLimit tx_rate_limit() const { return tx_limit_.current(); }
    // Quiesced or not running: the fills for a checkpoint, with the held
    // transmit frame charged (the restore sends it without asking).
    NetRateLimitFills rate_limit_fills(LiveRateLimit::Clock::time_point now) const;
    // A restore, before activate(). Throws Error when a fill does not fit
    // its limit.
    void restore_rate_limit_fills(const NetRateLimitFills& fills);
    int backend_fd() const noexcept { return backend_.get(); }
    NetStatsSnapshot stats() const noexcept;

  private:
    NetSpec spec_;
    std::string name_;
    UniqueFd backend_;
    uint16_t queue_size_;
    NetStats stats_;
    // Kept here, not by the I/O thread, so a reset does not refill them.
    LiveRateLimit rx_limit_;
    LiveRateLimit tx_limit_;
    std::unique_ptr<NetIoThread> io_;
};

} // namespace ember
