// virtio-blk (virtio 1.2 §5.2): one request queue served by its own I/O thread.
//
//   auto disk = ember::BlockDisk::open(ember::parse_disk_spec("disk.img,id=root"));
//   auto dev = std::make_shared<ember::VirtioMmioTransport>(
//       mem, std::make_unique<ember::VirtioBlock>(std::move(disk)), ember::EventFd{});
//   // KVM_IRQFD: dev->interrupt_event().fd(); KVM_IOEVENTFD: dev->notify_event(0).fd()
//   dev->shutdown(); // before exit (the destructor also does it)
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "devices/block/block_disk.h"
#include "devices/block/block_io_thread.h"
#include "devices/block/block_request.h"
#include "devices/block/virtio_blk_spec.h"
#include "devices/virtio/virtio_device.h"
#include "vmm/cpu_affinity.h"

namespace ember {

struct BlockStatsSnapshot {
    uint64_t requests;
    uint64_t bad_requests;
    uint64_t host_errors;
    uint64_t bytes_read;
    uint64_t bytes_written;
    uint64_t interrupts;
    uint64_t park_points; // places a checkpoint could have parked the I/O thread
    uint64_t poll_hits;   // poll= spins that found work before sleeping
    uint64_t reads;       // requests of each kind that succeeded
    uint64_t writes;
    uint64_t flushes;
    uint64_t discards;
    uint64_t write_zeroes;
    uint64_t throttled; // requests the rate limit held back
};

class VirtioBlock final : public VirtioDevice {
  public:
    // `queue_size`: the queue's maximum (QueueNumMax), a power of two <= 256.
    explicit VirtioBlock(BlockDisk disk, uint16_t queue_size = kMaxQueueSize);
    ~VirtioBlock() override;

    std::string_view name() const override { return name_; }
    uint32_t device_id() const override { return virtio::kDeviceIdBlock; }
    uint64_t device_features() const override { return features_; }
    void read_config(uint64_t offset, std::span<uint8_t> data) const override;
    void write_config(uint64_t offset, std::span<const uint8_t> data) override;
    uint16_t queue_count() const override { return 1; }
    uint16_t queue_max_size(uint16_t index) const override { return index == 0 ? queue_size_ : 0; }
    void activate(const ActivationContext& ctx) override;
    void reset() noexcept override;
    void quiesce() override;
    void unquiesce() noexcept override;
    // The old thread is stopped first (its host I/O waited for, results
    // dropped); the new one recovers from the region and resubmits.
    IoRecovery restart_io() override;
    uint16_t config_size() const override { return sizeof(virtio::blk::Config); }
    std::string describe() override;

    // Observe pops and published batches (tests, fault points). Takes effect
    // at the next activation.
    void set_queue_observer(QueueObserver* observer) noexcept { observer_ = observer; }
    // Tests and benchmarks only; take effect at the next activation or restart.
    // A substitute host I/O engine (e.g. with random latency).
    void set_engine_factory(IoEngineFactory factory) { engine_factory_ = std::move(factory); }
    // How completions keep the quiesce signal out (quiesce.h). ember uses
    // the default; `off` is the invariant test's negative control and
    // bench-blk's "no masking" column.
    void set_completion_masking(MaskingMode mode) noexcept { masking_ = mode; }

    const BlockDisk& disk() const noexcept { return disk_; }
    const virtio::blk::Config& config() const noexcept { return config_; }
    BlockStatsSnapshot stats() const noexcept;
    // "io_uring" or "sync" while running, "" when not activated.
    std::string_view engine() const noexcept { return io_ ? io_->engine_name() : ""; }
    bool running() const noexcept { return io_ != nullptr; }
    // The limit from now on, from any thread (its buckets start full); a
    // request held under the old one is asked again at once.
    void set_rate_limit(const RateLimit& limit) { rate_limit_.replace(limit); }
    RateLimit rate_limit() const { return rate_limit_.current(); }
    // The buckets' fill for a checkpoint (quiesced or not running; empty:
    // full) and back on a restore (before the I/O thread runs).
    std::optional<RateLimitFill> rate_limit_fill(LiveRateLimit::Clock::time_point now) const;
    void restore_rate_limit_fill(const RateLimitFill& fill) { rate_limit_.restore_fill(fill); }

  private:
    BlockDisk disk_;
    uint16_t queue_size_;
    uint64_t features_{0};
    BlockLimits limits_{};
    virtio::blk::Config config_{};
    std::string name_;
    BlockStats stats_;
    // The disk's rate limit (--disk ...,bw=,iops=), kept by the device so
    // that a reset or a restarted I/O thread does not refill it.
    LiveRateLimit rate_limit_;
    QueueObserver* observer_{nullptr};
    IoEngineFactory engine_factory_;
    // Where an I/O thread without iothread-cpu= may run: the mask of the
    // thread that built the device, not that of the vcpu that activates it.
    cpu_set_t default_cpus_{ember_cpus()};
    MaskingMode masking_{MaskingMode::sigmask};
    // What activation handed over, kept for restart_io().
    struct Running {
        const GuestMemory* memory;
        QueueState queue;
        int notify_fd;
        DeviceSignals* signals;
        uint64_t features;
        InflightRegion* inflight;
    };
    std::optional<Running> running_;
    IoRecovery start_io(bool recover);
    std::unique_ptr<BlockIoThread> io_;
};

} // namespace ember
