#include "devices/block/block_io_thread.h"

#include <pthread.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <optional>

#include <asio/post.hpp>
#include <fmt/format.h>

#include "devices/block/virtio_blk_spec.h"
#include "devices/virtio/io_thread_util.h"
#include "vmm/cpu_affinity.h"
#include "vmm/fault/fault_points.h"
#include "vmm/log.h"
#include "vmm/thread_confinement.h"

namespace ember {

using namespace virtio::blk;

namespace {
// Requests started between two publishes within one batch (process_avail).
constexpr size_t kPublishEvery = 8;

void signal_eventfd(int fd) noexcept {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(fd, &one, sizeof one);
}

std::unique_ptr<IoEngine> make_engine(const BlockDisk& disk, unsigned depth) {
    if (disk.spec().engine == DiskSpec::Engine::uring) {
        try {
            return make_uring_engine(disk.fd(), depth);
        } catch (const SystemError& e) {
            static std::once_flag once;
            std::call_once(once, [&] {
                log::warn("io_uring is not available ({}); block devices use the synchronous "
                          "engine",
                          e.what());
            });
        }
    }
    return make_sync_engine(disk.fd());
}
} // namespace

BlockIoThread::BlockIoThread(const Params& p)
    : disk_(p.disk), mem_(p.memory), signals_(p.signals), features_(p.features), limits_(p.limits),
      stats_(p.stats), queue_(p.memory, p.queue),
      engine_(p.engine_factory != nullptr && *p.engine_factory
                  ? (*p.engine_factory)(p.disk.fd(), p.queue.size)
                  : make_engine(p.disk, p.queue.size)),
      requests_(p.queue.size), poll_(std::chrono::microseconds(p.disk.spec().poll_us)),
      region_(p.inflight), inflight_heads_(p.resubmit.begin(), p.resubmit.end()),
      rate_limit_(p.rate_limit), quiesce_(p.masking),
      notify_sd_(io_, dup_or_throw(p.notify_fd, "queue notify eventfd")), completion_sd_(io_),
      stop_sd_(io_, dup_or_throw(stop_event_.fd(), "stop eventfd")),
      wake_sd_(io_, dup_or_throw(quiesce_.wake_fd(), "quiesce wake eventfd")),
      limit_sd_(io_, dup_or_throw(p.rate_limit.update_fd(), "rate limit eventfd")),
      throttle_timer_(io_) {
    if (p.inflight.queue_size() != p.queue.size)
        throw Error(fmt::format("in-flight region for {} heads, queue of {}",
                                p.inflight.queue_size(), p.queue.size));
    queue_.set_observer(p.observer);
    completions_.reserve(p.queue.size);
    popped_.resize(p.queue.size); // a round pops at most size chains
    if (engine_->completion_fd() >= 0)
        completion_sd_.assign(dup_or_throw(engine_->completion_fd(), "io_uring eventfd"));
    thread_ = quiesce_.spawn([this] { run(); });
    // Acquire: pairs with the release store in run(), after the name is set.
    named_.wait(false, std::memory_order_acquire);
    // The kernel moves a running thread at once, so placing it after the
    // start only lets its first steps run elsewhere. Unplaced, it gets the
    // CPUs of the thread that built the device, not those of the vcpu thread
    // that started it (which --vcpu-cpus may have confined to one).
    const auto cpu = disk_.spec().iothread_cpu;
    try {
        if (cpu)
            pin_thread(thread_.native_handle(), *cpu);
        else
            allow_thread_cpus(thread_.native_handle(), p.default_cpus);
    } catch (const Error& e) {
        stop(); // what it took stays marked in the region, for a restart
        throw Error(fmt::format("disk {}: placing its I/O thread{}: {}", disk_.spec().path,
                                cpu ? fmt::format(" (iothread-cpu={})", *cpu) : std::string(),
                                e.what()));
    }
}

BlockIoThread::~BlockIoThread() {
    stop();
}

void BlockIoThread::stop() noexcept {
    if (!thread_.joinable()) return;
    // Release: pairs with check_abandoned(); from here on the thread makes
    // nothing guest-visible, even if it was parked mid-request.
    abandoned_.store(true, std::memory_order_release);
    stop_event_.signal();
    quiesce_.unpark();
    thread_.join();
}

void BlockIoThread::run() noexcept {
    // On itself: naming another thread opens its /proc comm file, which the
    // vcpu thread that starts this one may not do (seccomp::confine_thread).
    ::pthread_setname_np(::pthread_self(), "ember-blk-io");
    named_.store(true, std::memory_order_release);
    named_.notify_all();
    quiesce_.attach_current_thread();
    std::optional<fault::Point> lost;
    try {
        // Before the first guest byte is read: what a thread that parses
        // guest descriptors may do (the ember command's seccomp filter).
        confine_this_thread(ConfinedThread::disk_io);
        engine_->bind_to_current_thread();
        stop_sd_.async_wait(asio::posix::stream_descriptor::wait_read,
                            [this](const std::error_code&) { io_.stop(); });
        arm_notify();
        arm_completions();
        arm_wake();
        arm_limit_update();
        // DESIGN.md "Recover": what was in flight goes first, oldest first,
        // before any new avail entry.
        resubmit_inflight();
        // Buffers may have been made available before the first kick.
        process_avail();
        // One handler at a time, each followed by a park point: the only
        // places a checkpoint can find this thread (quiesce.h).
        do
            park_point();
        while (step() != 0);
    } catch (const Abandoned&) {
        // stop(): leave everything as the region describes it.
    } catch (const fault::IoRestart& f) {
        // A restart-io fault: the same as stop(), but asked for from inside.
        // Everything in memory is dropped here; only guest memory and the
        // region survive, for the fresh thread.
        lost = f.point;
    } catch (const std::exception& e) {
        if (!abandoned_.load(std::memory_order_acquire))
            signals_.needs_reset(fmt::format("block I/O thread failed: {}", e.what()));
    }
    // Host I/O still in flight writes into guest memory: wait for it. Its
    // results are dropped: the driver reset the device, the VMM is exiting,
    // or a fresh thread resubmits these requests (restart_io, restore).
    completions_.clear();
    engine_->drain(completions_);
    completions_.clear();
    quiesce_.detach_current_thread();
    // Last: whoever restarts the device joins this thread.
    if (lost)
        signals_.io_thread_lost(fmt::format("fault {}", fault::info(*lost).name));
}

std::string BlockIoThread::describe(std::chrono::milliseconds timeout) {
    return ask_io_thread(
        io_,
        [this] {
            return fmt::format("{}; engine {}: {} in flight; wakeups: {} kicks, {} completions; "
                               "region: {} in flight{}",
                               queue_.describe(), engine_->name(), engine_->in_flight(),
                               kick_wakeups_, completion_wakeups_, region_.count_inflight(),
                               holding_ ? fmt::format("; rate limit holds head {}", held_.head())
                                        : std::string());
        },
        timeout, "the I/O thread", "blocked in host I/O, parked or gone");
}

void BlockIoThread::resubmit_inflight() {
    if (inflight_heads_.empty()) return;
    log::debug("virtio-blk {}: resubmitting {} in-flight requests", disk_.path(),
               inflight_heads_.size());
    try {
        for (uint16_t head : inflight_heads_) {
            auto chain = queue_.resubmit(head);
            start(chain);
            park_point(); // the sync engine ran it already
        }
    } catch (const VirtqueueError& e) {
        signals_.needs_reset(e.what());
    }
    inflight_heads_.clear();
    submit_engine();
    reap_host();
    publish();
}

// One handler, or with poll= one round of spinning: while requests are in
// flight the thread checks the completion ring and avail.idx (memory only,
// no system call) for up to poll_ before it sleeps in epoll. Each sleep
// costs a wakeup when the disk answers (~34 us across two vCPUs on our CI
// VM); with the driver polling too, bench-blk's O_DIRECT reads come near
// fio's and writes closer (README "The block device"). The kicks and the
// completion eventfd stay armed: what polling consumed makes their handlers
// find nothing to do.
size_t BlockIoThread::step() {
    if (poll_.count() > 0 && engine_->in_flight() > 0) {
        const auto deadline = std::chrono::steady_clock::now() + poll_;
        for (unsigned spins = 1;; ++spins) {
            if (engine_->completions_ready() || (!holding_ && queue_.has_avail())) {
                bump(stats_.poll_hits);
                process_avail();
                return 1;
            }
            if (spins % 64 == 0) {
                // Stop, park requests and kicks go through the handlers.
                if (const size_t n = io_.poll_one(); n != 0 || io_.stopped()) return n;
                if (std::chrono::steady_clock::now() >= deadline || engine_->in_flight() == 0)
                    break;
            }
            __builtin_ia32_pause();
        }
    }
    return io_.run_one();
}

void BlockIoThread::arm_notify() {
    notify_sd_.async_wait(asio::posix::stream_descriptor::wait_read,
                          [this](const std::error_code& ec) {
                              if (ec) return;
                              // Drain before processing: a kick after this
                              // point makes the fd readable again.
                              drain_eventfd(notify_sd_.native_handle());
                              ++kick_wakeups_;
                              process_avail();
                              settle_completion_signal();
                              arm_notify();
                          });
}

void BlockIoThread::arm_wake() {
    wake_sd_.async_wait(asio::posix::stream_descriptor::wait_read,
                        [this](const std::error_code& ec) {
                            if (ec) return;
                            // Nothing else to do: the park point after
                            // this handler parks the thread.
                            drain_eventfd(wake_sd_.native_handle());
                            arm_wake();
                        });
}

void BlockIoThread::park_point() {
    bump(stats_.park_points);
    quiesce_.park_point();
    check_abandoned(); // stop() releases a parked thread
}

void BlockIoThread::arm_completions() {
    if (!completion_sd_.is_open()) return;
    completion_sd_.async_wait(asio::posix::stream_descriptor::wait_read,
                              [this](const std::error_code& ec) {
                                  if (ec) return;
                                  ++completion_wakeups_;
                                  // Reaps, publishes, and picks up requests
                                  // the driver added without a kick.
                                  process_avail();
                                  settle_completion_signal();
                                  arm_completions();
                              });
}

// io_uring signals the completion eventfd twice for one completion with
// deferred task running: when it queues the completion for this thread, and
// again when reap_host() posts it to the CQ. Draining before the work left
// the second signal pending, so every batch cost a wakeup that found nothing
// to do (and, after a kick, could take a request the driver made available
// but had not kicked for yet). So the signal is drained after the work. What
// completed between the reap and the drain is still queued in the ring, and
// completions_ready() sees it: it is taken here, with a park point before
// each round as between two handlers; after a few rounds the signal is
// raised again, so the other handlers get their turn.
void BlockIoThread::settle_completion_signal() {
    if (!completion_sd_.is_open()) return;
    for (int round = 0; round < 4; ++round) {
        drain_eventfd(completion_sd_.native_handle());
        if (!engine_->completions_ready()) return;
        park_point(); // as between two handlers
        process_avail();
    }
    signal_eventfd(completion_sd_.native_handle());
}

// Drain the avail ring, submit the host I/O, then complete what is already
// done as one batch with (at most) one interrupt. A long run of requests is
// submitted and completed kPublishEvery at a time: page-cache hits complete
// inside submit(), and the driver can refill what completed first while this
// thread copies the rest. Publishing 32 at once left the two threads taking
// turns: bench-blk's page-cache reads at QD32 went from ~0.55 of fio's IOPS
// to ~1.0 with batches of 8 (4 and 16 did no better).
void BlockIoThread::process_avail() {
    check_abandoned();
    if (!queue_.broken()) {
        try {
            // While the rate limit holds a chain, the ring waits: the
            // timer resumes it (release_held).
            while (!holding_) {
                const bool ring_ok = pop_and_mark();
                size_t started = 0;
                for (size_t i = 0; i < popped_n_; ++i) {
                    start(popped_[i]);
                    // A checkpoint need not wait for a batch of synchronous
                    // I/O (the sync engine runs it inside start()).
                    park_point();
                    if (++started % kPublishEvery == 0) {
                        submit_engine();
                        reap_host();
                        publish();
                    }
                }
                popped_n_ = 0;
                if (!ring_ok) throw VirtqueueError(ring_error_);
                submit_engine();
                reap_host(); // page-cache hits often complete inside submit
                if (holding_) break;
                // Notifications stay on while host I/O is in flight, too:
                // what the driver adds after a completion goes to the host
                // at its kick, not at the next completion. A slow disk
                // completes much of the queue at once, and waiting for the
                // next burst left bench-blk's O_DIRECT queue 18.7 of 32 deep
                // on average; with the kick it is 27.7.
                if (!queue_.enable_notifications()) break;
            }
        } catch (const VirtqueueError& e) {
            signals_.needs_reset(e.what());
        }
    }
    reap_host();
    publish();
}

// Pop + mark with no park point in between (DESIGN.md): a checkpoint never
// sees a head taken from the avail ring but not yet marked in flight. The
// chains are started afterwards, with a park point after each one.
bool BlockIoThread::pop_and_mark() {
    check_abandoned();
    try {
        popped_n_ = 0;
        // At most size chains: a ring whose avail.idx ran further ahead is
        // refused by pop(), and a head offered twice by mark_popped().
        while (popped_n_ < popped_.size() && queue_.pop(popped_[popped_n_])) {
            region_.mark_popped(queue_, popped_[popped_n_].head());
            const bool admitted = admit(popped_[popped_n_]);
            if (admitted) ++popped_n_;
            fault::hit(fault::Point::blk_popped);
            if (!admitted) break;
        }
    } catch (const VirtqueueError& e) {
        ring_error_ = e.what();
        return false;
    }
    return true;
}

// Asked after the chain is popped and marked: held back, it is in flight
// like any started request, so a checkpoint or a restart resubmits it
// (resubmitted requests are not charged again: they go first, as they did).
bool BlockIoThread::admit(DescriptorChain& chain) {
    RateLimiter* limiter = rate_limit_.limiter();
    if (limiter == nullptr) return true; // no clock read for a disk without a limit
    const RequestCost cost = block_request_cost(chain, mem_);
    const auto wait = limiter->take(cost.ops, cost.bytes, std::chrono::steady_clock::now());
    if (wait.count() == 0) return true;
    std::swap(held_, chain); // both keep their storage, as in start()
    held_cost_ = cost;
    holding_ = true;
    bump(stats_.throttled);
    arm_throttle(wait);
    return false;
}

void BlockIoThread::arm_throttle(std::chrono::nanoseconds wait) {
    throttle_timer_.expires_after(wait);
    throttle_timer_.async_wait([this](const std::error_code& ec) {
        if (!ec) release_held();
    });
}

void BlockIoThread::arm_limit_update() {
    limit_sd_.async_wait(asio::posix::stream_descriptor::wait_read,
                         [this](const std::error_code& ec) {
                             if (ec) return;
                             drain_eventfd(limit_sd_.native_handle());
                             if (holding_) {
                                 throttle_timer_.cancel(); // its handler sees the abort
                                 release_held();
                             }
                             arm_limit_update();
                         });
}

void BlockIoThread::release_held() {
    check_abandoned();
    RateLimiter* limiter = rate_limit_.limiter(); // null: the limit was lifted
    if (const auto wait = limiter ? limiter->take(held_cost_.ops, held_cost_.bytes,
                                                  std::chrono::steady_clock::now())
                                  : std::chrono::nanoseconds{0};
        wait.count() != 0) {
        arm_throttle(wait); // early, or under a new limit
        return;
    }
    holding_ = false;
    start(held_);
    park_point();    // as after any started request
    process_avail(); // submits it with what else is waiting
    settle_completion_signal();
}

void BlockIoThread::start(DescriptorChain& chain) {
    auto& req = requests_[chain.head()];
    req.clear();
    std::swap(req.chain, chain); // both keep their storage
    stats_.requests.fetch_add(1, std::memory_order_relaxed);
    if (auto status = prepare_block_request(req, mem_, disk_, features_, limits_)) {
        if (req.host_errno != 0)
            count_host_error(req.type == kTypeDiscard ? "discard" : "write-zeroes", req.offset,
                             req.host_errno);
        else if (*status != kStatusOk)
            stats_.bad_requests.fetch_add(1, std::memory_order_relaxed);
        else if (req.type == kTypeDiscard)
            bump(stats_.discards);
        else if (req.type == kTypeWriteZeroes)
            bump(stats_.write_zeroes);
        complete(req, *status);
        return;
    }
    submit_host(req);
}

void BlockIoThread::submit_host(BlockRequest& req) {
    engine_->enqueue(HostIo{req.op, req.offset + req.done, req.iov, req.chain.head()});
    ++enqueued_;
}

void BlockIoThread::submit_engine() {
    engine_->submit();
    if (enqueued_ == 0) return;
    enqueued_ = 0;
    fault::hit(fault::Point::blk_submitted);
}

void BlockIoThread::reap_host() {
    completions_.clear();
    engine_->reap(completions_);
    for (const auto& c : completions_)
        host_done(c);
    if (resubmit_) {
        resubmit_ = false;
        submit_engine();
    }
}

void BlockIoThread::host_done(const HostCompletion& c) {
    fault::hit(fault::Point::blk_host_done);
    auto& req = requests_[c.cookie];
    if (c.result < 0 || (c.result == 0 && req.op != HostIo::Op::flush)) {
        count_host_error(req.op == HostIo::Op::read    ? "read"
                         : req.op == HostIo::Op::write ? "write"
                                                       : "flush",
                         req.offset + req.done, c.result < 0 ? static_cast<int>(-c.result) : 0);
        complete(req, kStatusIoErr);
        return;
    }
    if (req.op != HostIo::Op::flush) {
        req.done += static_cast<uint64_t>(c.result);
        if (req.done < req.length) {
            // A short transfer: resume after the bytes already moved.
            uint64_t skip = static_cast<uint64_t>(c.result);
            while (skip > 0 && !req.iov.empty()) {
                auto& v = req.iov.front();
                if (skip >= v.iov_len) {
                    skip -= v.iov_len;
                    req.iov.erase(req.iov.begin());
                } else {
                    v.iov_base = static_cast<uint8_t*>(v.iov_base) + skip;
                    v.iov_len -= skip;
                    skip = 0;
                }
            }
            submit_host(req);
            resubmit_ = true;
            return;
        }
        if (req.op == HostIo::Op::read) {
            finish_block_read(req);
            req.used_len = static_cast<uint32_t>(req.length);
            stats_.bytes_read.fetch_add(req.length, std::memory_order_relaxed);
            bump(stats_.reads);
        } else {
            stats_.bytes_written.fetch_add(req.length, std::memory_order_relaxed);
            bump(stats_.writes);
        }
    } else {
        bump(stats_.flushes);
    }
    complete(req, kStatusOk);
}

// A guest can make host operations fail at will (discards on a file system
// without hole punching, say), so the log is sampled; the count is exact.
void BlockIoThread::count_host_error(std::string_view op, uint64_t offset, int err) {
    const uint64_t n = stats_.host_errors.fetch_add(1, std::memory_order_relaxed) + 1;
    if (log::worth_logging(n))
        log::warn("virtio-blk {}: host {} at offset {} failed: {} (host errors so far: {})",
                  disk_.path(), op, offset, err != 0 ? std::strerror(err) : "end of file", n);
}

void BlockIoThread::complete(BlockRequest& req, uint8_t status) {
    uint32_t written = 0;
    if (req.status) {
        mem_.write<uint8_t>(*req.status, status);
        written = (status == kStatusOk ? req.used_len : 0) + 1;
    }
    req.bounce.reset();
    queue_.add_used(std::move(req.chain), written);
}

// The completion of one batch, exactly in the order of DESIGN.md "The two
// seeds", with the quiesce signal blocked throughout and no park point in
// between: a checkpoint sees all of it or none of it.
void BlockIoThread::publish() {
    if (queue_.pending_used() == 0) return;
    check_abandoned();
    const auto batch = queue_.write_used_elements(); // 1. used elements
    fault::hit(fault::Point::blk_used_written);
    region_.link_batch(batch); // 2. next links, last_batch_head
    if (fault::negative(fault::NegativeControl::clear_before_publish)) [[unlikely]] {
        // Negative control (tests/crash): the flags cleared before used.idx
        // moves (the header keeps the old used_idx). A crash here forgets
        // the batch: it is neither in flight nor published.
        region_.clear_batch(batch, queue_.state().next_used);
        fault::hit(fault::Point::blk_inflight_cleared);
    }
    queue_.publish_used_idx(); // 3. release-store used.idx
    fault::hit(fault::Point::blk_used_idx_published);
    region_.clear_batch(batch, queue_.state().next_used); // 4. flags, header used_idx
    if (!fault::negative(fault::NegativeControl::clear_before_publish))
        fault::hit(fault::Point::blk_inflight_cleared);
    if (queue_.needs_interrupt()) { // §2.7.10: once per batch
        stats_.interrupts.fetch_add(1, std::memory_order_relaxed);
        signals_.used_buffer_notification(); // 5. InterruptStatus, 6. irqfd
        fault::hit(fault::Point::blk_notified);
    }
}

} // namespace ember
