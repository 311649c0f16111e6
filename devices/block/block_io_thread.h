// The I/O thread of one virtio-blk device (DESIGN.md "Processes and threads").
//
// Lifecycle: created by VirtioBlock::activate() on the vcpu thread that wrote
// DRIVER_OK (or by restore / restart_io); the thread starts at once and owns
// the virtqueue, the host I/O engine and the request table from then on.
// stop() (device reset, VMM shutdown, restart_io, destructor) abandons the
// thread: nothing more becomes visible to the guest (no used entry, no region
// update, no interrupt), host I/O still in flight is waited for and its
// results dropped, so once stop() returns nothing touches guest memory.
// Requests it leaves behind are still marked in the in-flight region, which
// is how restart_io and restore find them again.
//
// No lock is shared with vcpu threads: kicks arrive on the queue's notify
// eventfd, the stop request on the stop eventfd, and the thread talks back
// only through DeviceSignals (atomics + irqfd).
//
// Checkpoints (DESIGN.md "Signal-masked completion"): the thread runs with
// the quiesce signal blocked and opens it only at park points, between event
// handlers and after each started request, never inside pop + mark or a
// completion batch (quiesce.h). quiesce() parks it at the next one; host I/O
// is not drained.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <span>

#include "devices/block/block_disk.h"
#include "devices/block/block_request.h"
#include "devices/block/io_engine.h"
#include "devices/virtio/inflight_region.h"
#include "devices/virtio/live_rate_limit.h"
#include "devices/virtio/quiesce.h"
#include "devices/virtio/virtio_device.h"
#include "devices/virtio/virtqueue.h"
#include "vmm/cpu_affinity.h"

namespace ember {

struct BlockStats {
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> bad_requests{0}; // guest errors: IOERR/UNSUPP without a host failure
    std::atomic<uint64_t> host_errors{0};  // failed host operations (IOERR to the guest)
    std::atomic<uint64_t> bytes_read{0};
    std::atomic<uint64_t> bytes_written{0};
    // Requests of each kind that succeeded (metrics); written like
    // park_points.
    std::atomic<uint64_t> reads{0};
    std::atomic<uint64_t> writes{0};
    std::atomic<uint64_t> flushes{0};
    std::atomic<uint64_t> discards{0};
    std::atomic<uint64_t> write_zeroes{0};
    std::atomic<uint64_t> interrupts{0};
    // Requests the rate limit held back until its buckets refilled; written
    // like park_points.
    std::atomic<uint64_t> throttled{0};
    // Park points passed (one per handler, one per started request);
    // bench-blk turns these into the masking cost per request. Written only
    // by the device's one I/O thread at a time (a successor starts after
    // the join), so it is bumped with a plain load and store.
    std::atomic<uint64_t> park_points{0};
    // Rounds of poll= spinning that found a completion or a new request
    // before the thread slept; written like park_points.
    std::atomic<uint64_t> poll_hits{0};
};

class BlockIoThread final {
  public:
    struct Params {
        const BlockDisk& disk;
        const GuestMemory& memory;
        // Validated by the transport; next_avail/next_used are where this
        // thread starts (from the region: activation or recovery).
        const QueueState& queue;
        int notify_fd; // the queue's notify eventfd (dup'ed here)
        DeviceSignals& signals;
        uint64_t features;
        BlockLimits limits;
        BlockStats& stats;
        QueueObserver* observer;              // may be null
        InflightRegion& inflight;             // activated or recovered already
        std::span<const uint16_t> resubmit;   // in-flight heads, oldest first
        MaskingMode masking;                  // off: negative control only
        const IoEngineFactory* engine_factory; // null: io_uring or sync per disk spec
        const cpu_set_t& default_cpus;         // without iothread-cpu=: where the thread may run
        // The disk's rate limit (maybe none). It outlives this thread (the
        // device keeps it, so a reset does not refill it).
        LiveRateLimit& rate_limit;
    };
    // Sets up the engine (io_uring, or sync as asked or as fallback) and
    // starts the thread. Throws ember::Error.
    explicit BlockIoThread(const Params& p);
    ~BlockIoThread();
    BlockIoThread(const BlockIoThread&) = delete;
    BlockIoThread& operator=(const BlockIoThread&) = delete;

    // Abandons the thread (see above). Idempotent; safe from any thread but
    // the I/O thread itself, also while it is parked.
    void stop() noexcept;
    std::string_view engine_name() const noexcept { return engine_->name(); }

    // Parks the thread at its next park point; host I/O keeps running.
    // Returns false when the thread has already exited. Throws ember::Error
    // when it does not park in time. Not from the I/O thread itself.
    bool quiesce(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        return quiesce_.park(timeout);
    }
    void unquiesce() noexcept { quiesce_.unpark(); }
    bool quiesced() const noexcept { return quiesce_.parked(); }
    // What the request the rate limit holds back would cost, if one is held.
    // Only while the thread is parked (its own state, stable there).
    std::optional<RequestCost> held_cost() const noexcept {
        return holding_ ? std::optional<RequestCost>(held_cost_) : std::nullopt;
    }

    // The queue, the host I/O and the wakeups in one line, asked of the I/O
    // thread itself (its state is its own); says so when the thread does not
    // answer within `timeout`. For diagnosing a stalled guest (`kill -USR2`).
    // Not from the I/O thread.
    std::string describe(std::chrono::milliseconds timeout = std::chrono::seconds(1));

  private:
    // Thrown inside the thread once stop() was asked: unwinds to run()
    // before anything guest-visible happens.
    struct Abandoned {};

    void run() noexcept;
    size_t step();
    void arm_notify();
    void arm_completions();
    void settle_completion_signal();
    void count_host_error(std::string_view op, uint64_t offset, int err);
    void arm_wake();
    // A park point (quiesce.h), then a check for stop().
    void park_point();
    void resubmit_inflight();
    void process_avail();
    bool pop_and_mark(); // false when the ring broke
    // Whether the rate limit lets `chain` go now; if not, the chain is held
    // (taken from `chain`) and the timer armed.
    bool admit(DescriptorChain& chain);
    void arm_throttle(std::chrono::nanoseconds wait);
    // A new limit was handed in: a held chain is asked again at once.
    void arm_limit_update();
    // The timer's handler: starts the held chain once the buckets have it,
    // then serves the ring again.
    void release_held();
    // Takes the chain, leaving `chain` with the request's old (empty) one.
    void start(DescriptorChain& chain);
    void submit_host(BlockRequest& req);
    void submit_engine(); // engine_->submit(), then the blk.submitted fault point
    void reap_host();
    void host_done(const HostCompletion& c);
    void complete(BlockRequest& req, uint8_t status);
    void publish();

    void check_abandoned() const {
        if (abandoned_.load(std::memory_order_acquire)) throw Abandoned{};
    }

    const BlockDisk& disk_;
    const GuestMemory& mem_;
    DeviceSignals& signals_;
    const uint64_t features_;
    const BlockLimits limits_;
    BlockStats& stats_;
    Virtqueue queue_;
    std::unique_ptr<IoEngine> engine_;
    std::vector<BlockRequest> requests_; // indexed by head: a head is in flight once
    std::vector<HostCompletion> completions_;
    size_t enqueued_{0}; // host operations enqueued since the last submit
    std::chrono::nanoseconds poll_{0};
    uint64_t kick_wakeups_{0};       // for describe()
    uint64_t completion_wakeups_{0}; // for describe()
    bool resubmit_{false};
    InflightRegion& region_;
    std::vector<uint16_t> inflight_heads_; // to resubmit at start
    // popped_[0, popped_n_): this round's chains; the slots past it are
    // kept with their storage for the next round.
    std::vector<DescriptorChain> popped_;
    size_t popped_n_{0};
    std::string ring_error_;
    // Rate limiting: at most one chain is held back (popped and marked in
    // flight, so a checkpoint resubmits it); while it is, nothing more is
    // popped, and the timer brings it back.
    LiveRateLimit& rate_limit_;
    DescriptorChain held_;
    RequestCost held_cost_{};
    bool holding_{false};
    QuiescePoint quiesce_;
    std::atomic<bool> abandoned_{false};

    EventFd stop_event_;
    asio::io_context io_{1};
    asio::posix::stream_descriptor notify_sd_;
    asio::posix::stream_descriptor completion_sd_;
    asio::posix::stream_descriptor stop_sd_;
    asio::posix::stream_descriptor wake_sd_; // quiesce_.wake_fd()
    asio::posix::stream_descriptor limit_sd_; // rate_limit_.update_fd()
    asio::steady_timer throttle_timer_;
    // Set by the thread once it has named itself; the constructor waits for
    // it, so whoever looks the thread up by name finds it.
    std::atomic<bool> named_{false};
    std::thread thread_;
};

} // namespace ember
