// The I/O thread of one virtio-blk device (DESIGN.md "Processes and threads").
//
// Lifecycle: created by VirtioBlock::activate() on the vcpu thread that wrote
// DRIVER_OK; the thread starts at once and owns the virtqueue, the host I/O
// engine and the request table from then on. stop() (device reset, VMM
// shutdown, destructor) signals a private eventfd and joins; the thread waits
// for host I/O still in flight before it exits, so once stop() returns nothing
// touches guest memory. No lock is shared with vcpu threads: kicks arrive on
// the queue's notify eventfd, the stop request on the stop eventfd, and the
// thread talks back only through DeviceSignals (atomics + irqfd).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>

#include "devices/block/block_disk.h"
#include "devices/block/block_request.h"
#include "devices/block/io_engine.h"
#include "devices/virtio/virtio_device.h"
#include "devices/virtio/virtqueue.h"

namespace ember {

struct BlockStats {
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> bad_requests{0}; // guest errors: IOERR/UNSUPP without a host failure
    std::atomic<uint64_t> host_errors{0};  // failed host operations (IOERR to the guest)
    std::atomic<uint64_t> bytes_read{0};
    std::atomic<uint64_t> bytes_written{0};
    std::atomic<uint64_t> interrupts{0};
};

class BlockIoThread final {
  public:
    struct Params {
        const BlockDisk& disk;
        const GuestMemory& memory;
        const QueueState& queue; // validated by the transport
        int notify_fd;           // the queue's notify eventfd (dup'ed here)
        DeviceSignals& signals;
        uint64_t features;
        BlockLimits limits;
        BlockStats& stats;
        QueueObserver* observer; // may be null
    };
    // Sets up the engine (io_uring, or sync as asked or as fallback) and
    // starts the thread. Throws ember::Error.
    explicit BlockIoThread(const Params& p);
    ~BlockIoThread();
    BlockIoThread(const BlockIoThread&) = delete;
    BlockIoThread& operator=(const BlockIoThread&) = delete;

    // Idempotent; safe from any thread but the I/O thread itself.
    void stop() noexcept;
    std::string_view engine_name() const noexcept { return engine_->name(); }

  private:
    void run() noexcept;
    void arm_notify();
    void arm_completions();
    void process_avail();
    void start(DescriptorChain&& chain);
    void submit_host(BlockRequest& req);
    void reap_host();
    void host_done(const HostCompletion& c);
    void complete(BlockRequest& req, uint8_t status);
    void publish();

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
    bool resubmit_{false};

    EventFd stop_event_;
    asio::io_context io_{1};
    asio::posix::stream_descriptor notify_sd_;
    asio::posix::stream_descriptor completion_sd_;
    asio::posix::stream_descriptor stop_sd_;
    std::thread thread_;
};

} // namespace ember
