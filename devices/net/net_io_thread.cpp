#include "devices/net/net_io_thread.h"

#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <memory>

#include <asio/post.hpp>
#include <fmt/format.h>

#include "devices/virtio/io_thread_util.h"
#include "vmm/log.h"
#include "vmm/thread_confinement.h"

namespace ember {

namespace {
// Frames handled per handler run before the others get their turn (a guest
// or a host flooding one direction cannot starve the other or a checkpoint).
constexpr unsigned kBudget = 64;

} // namespace

NetIoThread::NetIoThread(const Params& p)
    : mem_(p.memory), name_(p.name), signals_(p.signals), stats_(p.stats), rx_limit_(p.rx_limit),
      tx_limit_(p.tx_limit), rx_{Virtqueue(p.memory, p.rx), p.rx_region}, tx_{Virtqueue(p.memory,
                                                                                        p.tx),
                                                                              p.tx_region},
      frame_(kMaxFrame), rx_resubmit_(p.rx_resubmit.begin(), p.rx_resubmit.end()),
      tx_resubmit_(p.tx_resubmit.begin(), p.tx_resubmit.end()), quiesce_(MaskingMode::sigmask),
      backend_sd_(io_, dup_or_throw(p.backend_fd, "tap")),
      rx_notify_sd_(io_, dup_or_throw(p.rx_notify_fd, "receiveq notify eventfd")),
      tx_notify_sd_(io_, dup_or_throw(p.tx_notify_fd, "transmitq notify eventfd")),
      stop_sd_(io_, dup_or_throw(stop_event_.fd(), "stop eventfd")),
      wake_sd_(io_, dup_or_throw(quiesce_.wake_fd(), "quiesce wake eventfd")),
      rx_limit_sd_(io_, dup_or_throw(p.rx_limit.update_fd(), "receive rate limit eventfd")),
      tx_limit_sd_(io_, dup_or_throw(p.tx_limit.update_fd(), "transmit rate limit eventfd")),
      rx_timer_(io_), tx_timer_(io_) {
    if (p.rx_region.queue_size() != p.rx.size || p.tx_region.queue_size() != p.tx.size)
        throw Error(fmt::format("{}: in-flight regions do not match the queues", name_));
    thread_ = quiesce_.spawn([this] { run(); });
    // Acquire: pairs with the release store in run(), after the name is set.
    named_.wait(false, std::memory_order_acquire);
}

NetIoThread::~NetIoThread() {
    stop();
}

void NetIoThread::stop() noexcept {
    if (!thread_.joinable()) return;
    // Release: pairs with check_abandoned().
    abandoned_.store(true, std::memory_order_release);
    stop_event_.signal();
    quiesce_.unpark();
    thread_.join();
}

void NetIoThread::run() noexcept {
    ::pthread_setname_np(::pthread_self(), "ember-net-io");
    named_.store(true, std::memory_order_release);
    named_.notify_all();
    quiesce_.attach_current_thread();
    try {
        // Before the first guest byte is read: the guest-facing filter.
        confine_this_thread(ConfinedThread::net_io);
        stop_sd_.async_wait(asio::posix::stream_descriptor::wait_read,
                            [this](const std::error_code&) { io_.stop(); });
        arm_kick(rx_notify_sd_, rx_kicks_, rx_, &NetIoThread::receive);
        arm_kick(tx_notify_sd_, tx_kicks_, tx_, &NetIoThread::transmit);
        arm_wake();
        arm_limit_update(rx_limit_sd_);
        arm_limit_update(tx_limit_sd_);
        resubmit(rx_resubmit_, tx_resubmit_);
        // Buffers may have been made available before the first kick, and
        // frames may be waiting in the tap.
        asio::post(io_, [this] { serve(tx_, &NetIoThread::transmit); });
        asio::post(io_, [this] { serve(rx_, &NetIoThread::receive); });
        do
            park_point();
        while (io_.run_one() != 0);
    } catch (const Abandoned&) {
    } catch (const std::exception& e) {
        if (!abandoned_.load(std::memory_order_acquire))
            signals_.needs_reset(fmt::format("{}: I/O thread failed: {}", name_, e.what()));
    }
    quiesce_.detach_current_thread();
}

void NetIoThread::park_point() {
    quiesce_.park_point();
    check_abandoned(); // stop() releases a parked thread
}

std::string NetIoThread::describe(std::chrono::milliseconds timeout) {
    return ask_io_thread(
        io_,
        [this] {
            return fmt::format("receiveq {}; transmitq {}; wakeups: {} receive kicks, {} transmit "
                               "kicks, {} backend; a frame {}waiting for {}{}",
                               rx_.vq.describe(), tx_.vq.describe(), rx_kicks_, tx_kicks_,
                               backend_wakeups_, frame_waiting_ ? "" : "not ",
                               rx_throttled_ ? "the receive rate limit" : "a buffer",
                               tx_holding_ ? fmt::format("; the transmit rate limit holds head {}",
                                                         held_tx_.head())
                                           : std::string());
        },
        timeout, "the net I/O thread", "parked or gone");
}

// A kick on `sd` (the queue's ioeventfd) serves the queue.
void NetIoThread::arm_kick(asio::posix::stream_descriptor& sd, uint64_t& kicks, Queue& q,
                           void (NetIoThread::*work)()) {
    sd.async_wait(asio::posix::stream_descriptor::wait_read,
                  [this, &sd, &kicks, &q, work](const std::error_code& ec) {
                      if (ec) return;
                      // Drain first: a kick after this point makes the fd
                      // readable again.
                      drain_eventfd(sd.native_handle());
                      ++kicks;
                      serve(q, work);
                      arm_kick(sd, kicks, q, work);
                  });
}

// Runs `work` on `q`; a broken ring stops the device (ring_broken).
void NetIoThread::serve(Queue& q, void (NetIoThread::*work)()) {
    try {
        (this->*work)();
    } catch (const VirtqueueError& e) {
        ring_broken(q, e);
    }
}

// Only while no frame waits for a buffer: the backend is read only when the
// frame read can go somewhere.
void NetIoThread::arm_backend() {
    if (backend_armed_ || frame_waiting_ || backend_failed_ || rx_.vq.broken()) return;
    backend_armed_ = true;
    backend_sd_.async_wait(asio::posix::stream_descriptor::wait_read,
                           [this](const std::error_code& ec) {
                               backend_armed_ = false;
                               if (ec) return;
                               ++backend_wakeups_;
                               serve(rx_, &NetIoThread::receive);
                           });
}

// A new limit (PATCH /network-interfaces, libember): what waits under the
// old one asks the new one at once.
void NetIoThread::arm_limit_update(asio::posix::stream_descriptor& sd) {
    sd.async_wait(asio::posix::stream_descriptor::wait_read,
                  [this, &sd](const std::error_code& ec) {
                      if (ec) return;
                      drain_eventfd(sd.native_handle());
                      if (&sd == &rx_limit_sd_ && rx_throttled_) {
                          rx_timer_.cancel(); // its handler sees the abort
                          rx_throttled_ = false;
                          serve(rx_, &NetIoThread::receive);
                      } else if (&sd == &tx_limit_sd_ && tx_holding_) {
                          tx_timer_.cancel();
                          serve(tx_, &NetIoThread::transmit);
                      }
                      arm_limit_update(sd);
                  });
}

std::chrono::nanoseconds NetIoThread::ask(LiveRateLimit& limit, uint64_t bytes) {
    RateLimiter* limiter = limit.limiter(); // null: no limit (one atomic load)
    return limiter ? limiter->take(1, bytes, std::chrono::steady_clock::now())
                   : std::chrono::nanoseconds{0};
}

// The waiting frame waits for the receive buckets; the tap is not read
// meanwhile (arm_backend), so the host's side queues, then drops, as it
// would for a slow NIC.
void NetIoThread::throttle_rx(std::chrono::nanoseconds wait) {
    rx_throttled_ = true;
    bump(stats_.rx_throttled);
    rx_timer_.expires_after(wait);
    rx_timer_.async_wait([this](const std::error_code& ec) {
        if (ec) return;
        rx_throttled_ = false;
        serve(rx_, &NetIoThread::receive);
    });
}

void NetIoThread::throttle_tx(std::chrono::nanoseconds wait) {
    bump(stats_.tx_throttled);
    tx_timer_.expires_after(wait);
    tx_timer_.async_wait([this](const std::error_code& ec) {
        if (!ec) serve(tx_, &NetIoThread::transmit);
    });
}

void NetIoThread::arm_wake() {
    wake_sd_.async_wait(asio::posix::stream_descriptor::wait_read,
                        [this](const std::error_code& ec) {
                            if (ec) return;
                            // The park point after this handler parks.
                            drain_eventfd(wake_sd_.native_handle());
                            arm_wake();
                        });
}

// What a region says was in flight (after a restore). From one of ember's
// checkpoints: at most the transmit chain the rate limit held (header),
// which was not sent: it is sent now, without asking the buckets (its cost
// is in the fill the checkpoint saved). A receive chain is never in flight
// between handlers; one from elsewhere comes back empty, which the driver
// drops as a short frame.
void NetIoThread::resubmit(std::span<const uint16_t> rx, std::span<const uint16_t> tx) {
    for (auto* q : {&rx_, &tx_}) {
        const auto heads = q == &rx_ ? rx : tx;
        if (heads.empty()) continue;
        try {
            for (uint16_t head : heads) {
                DescriptorChain chain = q->vq.resubmit(head);
                if (q == &tx_) send(chain, frame_bytes(chain));
                q->vq.add_used(std::move(chain), 0);
            }
        } catch (const VirtqueueError& e) {
            ring_broken(*q, e);
            continue;
        }
        log::debug("{}: {} {} chains in flight at the checkpoint {}", name_, heads.size(),
                   q == &rx_ ? "receive" : "transmit",
                   q == &rx_ ? "completed empty" : "sent and completed");
        publish(*q);
    }
}

void NetIoThread::receive() {
    auto& q = rx_.vq;
    // Throttled: the waiting frame goes when rx_timer_ fires, not at a kick.
    if (q.broken() || rx_throttled_) return;
    // Until nothing more can be done now (no frame, or no buffer), or the
    // budget is spent: then the rest waits for the other handlers' turn,
    // without waiting for a kick the guest may never send (with EVENT_IDX it
    // kicks only past the avail_event it was last given).
    bool idle = false;
    for (unsigned n = 0; n < kBudget && !idle; ++n) {
        if (!frame_waiting_) {
            const ssize_t got = ::read(backend_sd_.native_handle(), frame_.data(), frame_.size());
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                // EAGAIN: nothing more now. Anything else means the tap is
                // unusable (e.g. EBADFD: detached); reading it again would
                // only spin, so receiving stops and says why.
                if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                    log::warn("{}: reading the tap failed: {}; the guest receives nothing more",
                              name_, std::strerror(errno));
                    backend_failed_ = true;
                }
                idle = true;
                break;
            }
            frame_len_ = static_cast<size_t>(got);
            frame_waiting_ = true;
            frame_admitted_ = false;
        }
        if (!frame_admitted_) {
            if (const auto wait = ask(rx_limit_, frame_len_); wait.count() != 0) {
                throttle_rx(wait);
                idle = true;
                break;
            }
            frame_admitted_ = true;
        }
        if (!q.pop(chain_)) {
            // EVENT_IDX: ask for a kick past what we saw; buffers that
            // arrived meanwhile are taken at once.
            if (q.enable_notifications()) continue;
            idle = true;
            break;
        }
        rx_.region.mark_popped(q, chain_.head());
        if (!chain_.valid() || chain_.readable_bytes() != 0 ||
            chain_.writable_bytes() < kHeaderBytes) {
            count_bad(!chain_.valid()                ? to_string(chain_.error())
                      : chain_.readable_bytes() != 0 ? "a device-readable buffer"
                                                     : "no room for the virtio-net header",
                      chain_.head(), "receiveq");
            q.add_used(std::move(chain_), 0); // the frame waits for the next buffer
            continue;
        }
        uint32_t written = 0;
        if (deliver(chain_)) {
            bump(stats_.rx_frames);
            bump(stats_.rx_bytes, frame_len_);
            written = static_cast<uint32_t>(kHeaderBytes + frame_len_);
        } else {
            // Every buffer of a Linux driver has the same size: the frame
            // would fit no other either. The buffer goes back empty (the
            // driver counts a length error), so no chain stays popped
            // between handlers, where a checkpoint would find it in flight.
            bump(stats_.rx_dropped);
            if (log::worth_logging(stats_.rx_dropped.load(std::memory_order_relaxed)))
                log::warn("{}: a {}-byte frame from the tap does not fit the guest's {}-byte "
                          "receive buffer: dropped (raise the guest's buffers or lower the "
                          "tap's MTU)",
                          name_, frame_len_, chain_.writable_bytes() - kHeaderBytes);
        }
        q.add_used(std::move(chain_), written);
        frame_waiting_ = false;
        frame_admitted_ = false;
    }
    publish(rx_);
    if (rx_throttled_) return; // rx_timer_ resumes
    if (!idle) {
        asio::post(io_, [this] { serve(rx_, &NetIoThread::receive); });
        return;
    }
    arm_backend();
}

// virtio_net_hdr_v1 (§5.1.6): flags 0, gso_type NONE, num_buffers 1; the rest
// 0 (no offloads were offered, so the driver reads nothing else from it).
bool NetIoThread::deliver(const DescriptorChain& chain) {
    if (chain.writable_bytes() - kHeaderBytes < frame_len_) return false;
    std::array<uint8_t, kHeaderBytes> header{};
    header[10] = 1; // num_buffers, little-endian u16
    size_t hdr_done = 0, data_done = 0;
    for (const auto& seg : chain.segments()) {
        auto out = mem_.span(seg.addr, seg.len); // validated: inside guest RAM
        size_t at = 0;
        if (hdr_done < header.size()) {
            const size_t n = std::min(out.size(), header.size() - hdr_done);
            std::memcpy(out.data(), header.data() + hdr_done, n);
            hdr_done += n;
            at = n;
        }
        const size_t n = std::min(out.size() - at, frame_len_ - data_done);
        std::memcpy(out.data() + at, frame_.data() + data_done, n);
        data_done += n;
        if (data_done == frame_len_ && hdr_done == header.size()) break;
    }
    return true;
}

void NetIoThread::transmit() {
    auto& q = tx_.vq;
    if (q.broken()) return;
    // The ring waits behind a held chain: frames leave in the guest's order.
    if (tx_holding_ && !release_held_tx()) return;
    DescriptorChain chain;
    unsigned n = 0;
    for (;;) {
        while (n < kBudget && q.pop(chain)) {
            tx_.region.mark_popped(q, chain.head());
            const uint64_t bytes = frame_bytes(chain);
            // A refused chain (0 bytes) costs nothing: it reaches no host.
            if (bytes != 0) {
                if (const auto wait = ask(tx_limit_, bytes); wait.count() != 0) {
                    std::swap(held_tx_, chain); // both keep their storage
                    held_tx_bytes_ = bytes;
                    tx_holding_ = true;
                    throttle_tx(wait);
                    publish(tx_); // what went before it
                    return;
                }
            }
            send(chain, bytes);
            q.add_used(std::move(chain), 0);
            ++n;
        }
        if (n >= kBudget) {
            publish(tx_);
            asio::post(io_, [this] { serve(tx_, &NetIoThread::transmit); });
            return;
        }
        if (!q.enable_notifications()) break;
    }
    publish(tx_);
}

bool NetIoThread::release_held_tx() {
    if (const auto wait = ask(tx_limit_, held_tx_bytes_); wait.count() != 0) {
        throttle_tx(wait); // early, or under a new limit
        return false;
    }
    tx_holding_ = false;
    send(held_tx_, held_tx_bytes_);
    tx_.vq.add_used(std::move(held_tx_), 0);
    return true;
}

std::string_view NetIoThread::tx_refusal(const DescriptorChain& chain) {
    if (!chain.valid()) return to_string(chain.error());
    if (chain.writable_bytes() != 0) return "a device-writable buffer";
    if (chain.readable_bytes() < kHeaderBytes + kMinFrame)
        return "shorter than the virtio-net header and an Ethernet header";
    if (chain.readable_bytes() - kHeaderBytes > kMaxFrame) return "a frame larger than 64 KiB";
    return {};
}

uint64_t NetIoThread::frame_bytes(const DescriptorChain& chain) {
    return tx_refusal(chain).empty() ? chain.readable_bytes() - kHeaderBytes : 0;
}

// The guest's header is skipped, not passed on (tap.h): the frame is what
// follows its first 12 bytes.
void NetIoThread::send(const DescriptorChain& chain, uint64_t len) {
    if (len == 0) {
        count_bad(tx_refusal(chain), chain.head(), "transmitq");
        return;
    }
    iov_.clear();
    uint32_t skip = kHeaderBytes;
    for (const auto& seg : chain.segments()) {
        if (seg.len <= skip) {
            skip -= seg.len;
            continue;
        }
        auto in = mem_.span(seg.addr, seg.len);
        iov_.push_back({in.data() + skip, in.size() - skip});
        skip = 0;
    }
    ssize_t r;
    do
        r = ::writev(backend_sd_.native_handle(), iov_.data(), static_cast<int>(iov_.size()));
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        // A tap that is down, or full (EAGAIN): the frame is dropped, as a
        // NIC whose link is down drops it. The guest's stack retransmits.
        bump(stats_.tx_errors);
        const uint64_t errors = stats_.tx_errors.load(std::memory_order_relaxed);
        if (log::worth_logging(errors))
            log::warn("{}: sending a {}-byte frame failed: {} (dropped; failed sends so far: {})",
                      name_, len, std::strerror(errno), errors);
        return;
    }
    bump(stats_.tx_frames);
    bump(stats_.tx_bytes, len);
}

// The completion order of DESIGN.md "The two seeds": used elements, the
// region's batch link, used.idx, the region cleared, then the interrupt.
// The quiesce signal is blocked throughout (the thread opens it only at
// park points), so a checkpoint sees all of it or none.
void NetIoThread::publish(Queue& q) {
    if (q.region.publish_batch(q.vq)) {
        bump(stats_.interrupts);
        signals_.used_buffer_notification();
    }
}

void NetIoThread::count_bad(std::string_view why, uint16_t head, std::string_view queue) {
    bump(stats_.bad_requests);
    const uint64_t n = stats_.bad_requests.load(std::memory_order_relaxed);
    if (log::worth_logging(n))
        log::warn("{}: {} chain {} refused: {}; completed with no bytes (bad requests so far: {})",
                  name_, queue, head, why, n);
}

// Publish what was handled, then stop this device only (§2.1.2).
void NetIoThread::ring_broken(Queue& q, const VirtqueueError& e) {
    publish(q);
    signals_.needs_reset(fmt::format("{}: {}", name_, e.what()));
}

} // namespace ember
