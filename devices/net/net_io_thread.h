// The I/O thread of one virtio-net device: moves frames between its TAP (or,
// in tests, one end of a SOCK_SEQPACKET socket pair) and the guest's two
// queues, receiveq (0) and transmitq (1) (virtio 1.2 §5.1).
//
// Lifecycle and checkpoints as the disk's I/O thread (block_io_thread.h):
// created by VirtioNet::activate() and owning both virtqueues from then on;
// the quiesce signal stays blocked except at park points, between handlers.
// Each handler pops, copies and publishes within itself, so at a park point
// no chain is in flight: a checkpoint finds the in-flight regions empty.
//
// Receive: a frame is read from the backend into a bounce buffer first, and
// only then is a receive buffer popped, so a frame never waits in a popped
// chain. With no buffer available the frame waits here and the backend is
// not read until the guest kicks receiveq (the tap queues, then drops, what
// arrives meanwhile, as a NIC with a full ring would). Transmit: every chain
// is sent as it is popped, then the batch published.
//
// Rate limits (rx_limit, tx_limit): a received frame is charged when it is
// read; one the receive buckets lack tokens for waits in the bounce buffer,
// and the tap is not read, until they refill. A frame to send is charged
// when its chain is popped; one the transmit buckets lack tokens for is
// held, popped and marked in flight, until they refill, and the transmit
// ring waits behind it. That held chain is the only chain a checkpoint can
// find in flight: a restore sends it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>

#include <asio/steady_timer.hpp>

#include "devices/virtio/inflight_region.h"
#include "devices/virtio/live_rate_limit.h"
#include "devices/virtio/quiesce.h"
#include "devices/virtio/virtio_device.h"
#include "devices/virtio/virtqueue.h"

namespace ember {

struct NetStats {
    std::atomic<uint64_t> rx_frames{0}; // frames given to the guest
    std::atomic<uint64_t> rx_bytes{0};  // their bytes, without the virtio-net header
    std::atomic<uint64_t> tx_frames{0}; // frames the guest sent that reached the backend
    std::atomic<uint64_t> tx_bytes{0};
    // Frames from the host dropped: larger than the guest's receive buffer
    // (which comes back empty).
    std::atomic<uint64_t> rx_dropped{0};
    // Frames of the guest the backend refused (write failed; counted, dropped).
    std::atomic<uint64_t> tx_errors{0};
    // Malformed chains, or chains with the wrong kind of buffers; completed
    // with no bytes (receive) or not sent (transmit).
    std::atomic<uint64_t> bad_requests{0};
    std::atomic<uint64_t> interrupts{0};
    // Times a frame waited for the rate limit's buckets to refill.
    std::atomic<uint64_t> rx_throttled{0};
    std::atomic<uint64_t> tx_throttled{0};
};

class NetIoThread final {
  public:
    // Largest Ethernet frame ember moves: a 64 KiB MTU's (the tap's
    // maximum) with its header. Guest chains carry the 12-byte
    // virtio_net_hdr_v1 first (§5.1.6).
    static constexpr uint32_t kMaxFrame = 65535 + 14;
    static constexpr uint32_t kHeaderBytes = 12;
    // A frame the guest sends must hold at least an Ethernet header.
    static constexpr uint32_t kMinFrame = 14;

    struct Params {
        const GuestMemory& memory;
        std::string name; // "virtio-net ID", for messages
        int backend_fd;   // dup'ed here; non-blocking, one frame per read/write
        // Validated by the transport; where each queue starts (region plans).
        const QueueState& rx;
        const QueueState& tx;
        int rx_notify_fd; // dup'ed here
        int tx_notify_fd;
        DeviceSignals& signals;
        NetStats& stats;
        InflightRegion& rx_region;
        InflightRegion& tx_region;
        std::span<const uint16_t> rx_resubmit; // in flight at a checkpoint
        std::span<const uint16_t> tx_resubmit;
        // Kept by the device, so a reset does not refill them; a resubmitted
        // transmit chain was charged when it was held (held_tx_bytes()).
        LiveRateLimit& rx_limit;
        LiveRateLimit& tx_limit;
    };
    explicit NetIoThread(const Params& p); // starts the thread; throws ember::Error
    ~NetIoThread();
    NetIoThread(const NetIoThread&) = delete;
    NetIoThread& operator=(const NetIoThread&) = delete;

    // Stops and joins the thread: nothing guest-visible happens after it
    // returns. Safe while the thread is parked.
    void stop() noexcept;
    bool quiesce(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        return quiesce_.park(timeout);
    }
    void unquiesce() noexcept { quiesce_.unpark(); }
    // Both queues and the backend in one line; asked of the thread itself.
    std::string describe(std::chrono::milliseconds timeout = std::chrono::seconds(1));
    // The frame bytes of the transmit chain the rate limit holds back, if
    // one is held: for a checkpoint's fill (the restore sends it without
    // asking). Only while the thread is parked or stopped.
    std::optional<uint64_t> held_tx_bytes() const noexcept {
        return tx_holding_ ? std::optional<uint64_t>(held_tx_bytes_) : std::nullopt;
    }

  private:
    struct Abandoned {};
    struct Queue {
        Virtqueue vq;
        InflightRegion& region;
    };

    void run() noexcept;
    void park_point();
    void check_abandoned() const {
        if (abandoned_.load(std::memory_order_acquire)) throw Abandoned{};
    }
    void arm_kick(asio::posix::stream_descriptor& sd, uint64_t& kicks, Queue& q,
                  void (NetIoThread::*work)());
    void serve(Queue& q, void (NetIoThread::*work)());
    void arm_backend();
    void arm_wake();
    void arm_limit_update(asio::posix::stream_descriptor& sd);
    // Takes one frame of `bytes` from `limit`'s buckets and returns 0, or
    // takes nothing and returns how long until they should have it.
    static std::chrono::nanoseconds ask(LiveRateLimit& limit, uint64_t bytes);
    void throttle_rx(std::chrono::nanoseconds wait);
    void throttle_tx(std::chrono::nanoseconds wait);
    void resubmit(std::span<const uint16_t> rx, std::span<const uint16_t> tx);
    // Both may throw VirtqueueError (a broken ring).
    void receive();
    void transmit();
    // `len`: frame_bytes(chain); 0 counts the chain as bad instead.
    void send(const DescriptorChain& chain, uint64_t len);
    // Sends the held transmit chain when the buckets have it now.
    bool release_held_tx();
    // Why a transmit chain cannot be sent (empty: it can).
    static std::string_view tx_refusal(const DescriptorChain& chain);
    // The frame bytes `chain` would send; 0 for a refused one.
    static uint64_t frame_bytes(const DescriptorChain& chain);
    // Copies the waiting frame into `chain`; false when it does not fit.
    bool deliver(const DescriptorChain& chain);
    void publish(Queue& q);
    void count_bad(std::string_view why, uint16_t head, std::string_view queue);
    void ring_broken(Queue& q, const VirtqueueError& e);

    const GuestMemory& mem_;
    const std::string name_;
    DeviceSignals& signals_;
    NetStats& stats_;
    LiveRateLimit& rx_limit_;
    LiveRateLimit& tx_limit_;
    Queue rx_;
    Queue tx_;
    std::vector<uint8_t> frame_; // the bounce buffer, kMaxFrame bytes
    size_t frame_len_{0};
    bool frame_waiting_{false}; // frame_ holds a frame no buffer took yet
    bool frame_admitted_{false}; // ... and the receive rate limit let it in
    bool rx_throttled_{false};   // the waiting frame waits for rx_timer_
    DescriptorChain held_tx_;    // popped, marked, waiting for the tx buckets
    uint64_t held_tx_bytes_{0};
    bool tx_holding_{false};
    bool backend_armed_{false};
    bool backend_failed_{false}; // a read failed other than with EAGAIN
    DescriptorChain chain_;      // the chain being served (its storage reused)
    std::vector<iovec> iov_;
    std::vector<uint16_t> rx_resubmit_, tx_resubmit_;
    uint64_t rx_kicks_{0}, tx_kicks_{0}, backend_wakeups_{0}; // for describe()

    std::atomic<bool> abandoned_{false};
    EventFd stop_event_;
    QuiescePoint quiesce_;
    asio::io_context io_{1};
    asio::posix::stream_descriptor backend_sd_;
    asio::posix::stream_descriptor rx_notify_sd_;
    asio::posix::stream_descriptor tx_notify_sd_;
    asio::posix::stream_descriptor stop_sd_;
    asio::posix::stream_descriptor wake_sd_;
    asio::posix::stream_descriptor rx_limit_sd_; // a new receive limit came
    asio::posix::stream_descriptor tx_limit_sd_;
    asio::steady_timer rx_timer_;
    asio::steady_timer tx_timer_;
    std::atomic<bool> named_{false};
    std::thread thread_;
};

} // namespace ember
