// The io_uring engine, through liburing directly: Debian 12's Asio has an
// io_uring backend only as a global compile-time switch (ASIO_HAS_IO_URING),
// so instead the ring's completion eventfd is registered and the I/O thread's
// io_context waits on it like on any other descriptor.
#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "devices/block/io_engine.h"
#include "devices/block/uring_restrictions.h"
#include "vmm/errors.h"
#include "vmm/log.h"
#include "vmm/unique_fd.h"

namespace ember {

namespace {
// Deferred task running: a completion is queued for the ring's one thread
// and posted when that thread next asks (io_uring_get_events). Without it
// the kernel interrupts the I/O thread with an IPI for each completion while
// it runs; for buffered writes, which io_uring hands to a worker that
// completes them one at a time, that cost bench-blk more than half its
// IOPS. SINGLE_ISSUER is required with it; R_DISABLED defers the choice of
// that thread to bind_to_current_thread(), on the I/O thread.
constexpr unsigned kDeferredFlags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                    IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED;

class UringEngine final : public IoEngine {
  public:
    UringEngine(int fd, unsigned depth, UringSetup setup) : fd_(fd) {
        int r = -EINVAL;
        if (setup != UringSetup::plain) {
            r = io_uring_queue_init(depth, &ring_, kDeferredFlags);
            if (r < 0 && setup == UringSetup::deferred)
                throw SystemError("io_uring_queue_init (deferred task running)", -r);
            deferred_ = r == 0;
            if (!deferred_) {
                static std::once_flag once;
                std::call_once(once, [r] {
                    log::info("io_uring without deferred task running ({}; it needs Linux 6.1): "
                              "each host completion interrupts the I/O thread",
                              std::strerror(-r));
                });
            }
        }
        if (!deferred_) { // plain, or best on a kernel before 6.1
            // Disabled too, for the restrictions below; before Linux 5.10
            // (EINVAL) the ring runs unrestricted.
            r = io_uring_queue_init(depth, &ring_, IORING_SETUP_R_DISABLED);
            if (r == -EINVAL)
                r = io_uring_queue_init(depth, &ring_, 0);
            else
                disabled_ = r == 0;
            if (r < 0) throw SystemError("io_uring_queue_init", -r);
        } else {
            disabled_ = true;
        }
        try {
            if (r = io_uring_register_eventfd(&ring_, event_.fd()); r < 0)
                throw SystemError("io_uring_register_eventfd", -r);
            if (disabled_) restrict_block_ring(ring_.ring_fd);
        } catch (...) {
            io_uring_queue_exit(&ring_);
            throw;
        }
    }
    ~UringEngine() override {
        // The I/O thread drained the ring before it ended (BlockIoThread::
        // run()); with deferred task running no other thread could.
        std::vector<HostCompletion> ignored;
        drain(ignored);
        io_uring_queue_exit(&ring_);
    }
    UringEngine(const UringEngine&) = delete;
    UringEngine& operator=(const UringEngine&) = delete;

    void bind_to_current_thread() override {
        if (!disabled_ || bound_) return;
        enable_ring(ring_.ring_fd);
        bound_ = true;
    }

    std::string_view name() const override { return "io_uring"; }

    void enqueue(const HostIo& io) override {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (sqe == nullptr) {
            // The submission queue is full: hand what we have to the kernel.
            submit();
            sqe = io_uring_get_sqe(&ring_);
        }
        if (sqe == nullptr) {
            early_.push_back(HostCompletion{io.cookie, -EBUSY});
            return;
        }
        switch (io.op) {
        // One buffer (the common 4 KiB case): the non-vectored opcodes skip
        // the iovec import.
        case HostIo::Op::read:
            if (io.iov.size() == 1)
                io_uring_prep_read(sqe, fd_, io.iov[0].iov_base,
                                   static_cast<unsigned>(io.iov[0].iov_len), io.offset);
            else
                io_uring_prep_readv(sqe, fd_, io.iov.data(), static_cast<unsigned>(io.iov.size()),
                                    io.offset);
            break;
        case HostIo::Op::write:
            if (io.iov.size() == 1)
                io_uring_prep_write(sqe, fd_, io.iov[0].iov_base,
                                    static_cast<unsigned>(io.iov[0].iov_len), io.offset);
            else
                io_uring_prep_writev(sqe, fd_, io.iov.data(), static_cast<unsigned>(io.iov.size()),
                                     io.offset);
            break;
        case HostIo::Op::flush:
            io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
            break;
        }
        io_uring_sqe_set_data64(sqe, io.cookie);
        ++queued_;
    }

    void submit() override {
        if (queued_ == 0) return;
        int r = 0;
        do {
            // With deferred task running, one system call both submits and
            // posts the completions the kernel queued for this thread since
            // it last asked (as io_uring_get_events would): reap() then finds
            // them in the CQ without entering the kernel again.
            r = deferred_ ? io_uring_submit_and_get_events(&ring_) : io_uring_submit(&ring_);
        } while (r == -EINTR);
        if (r > 0) {
            in_flight_ += static_cast<size_t>(r);
            queued_ -= static_cast<size_t>(r) < queued_ ? static_cast<size_t>(r) : queued_;
        }
        // On -EAGAIN/-EBUSY the SQEs stay queued; the next submit retries them
        // once completions freed room.
    }

    void reap(std::vector<HostCompletion>& out) override {
        out.insert(out.end(), early_.begin(), early_.end());
        early_.clear();
        // The kernel sets TASKRUN before it signals the eventfd, for the
        // first completion it queues after the last get_events: a wakeup on
        // the eventfd always finds it set.
        if (taskrun_pending()) io_uring_get_events(&ring_); // posts the queued completions
        io_uring_cqe* cqe = nullptr;
        unsigned head = 0, n = 0;
        io_uring_for_each_cqe(&ring_, head, cqe) {
            out.push_back(HostCompletion{io_uring_cqe_get_data64(cqe), cqe->res});
            ++n;
        }
        io_uring_cq_advance(&ring_, n);
        in_flight_ -= n;
    }

    void drain(std::vector<HostCompletion>& out) override {
        submit();
        reap(out);
        // Waiting also runs deferred completions (it enters with GETEVENTS).
        while (in_flight_ > 0) {
            io_uring_cqe* cqe = nullptr;
            const int r = io_uring_wait_cqe(&ring_, &cqe);
            if (r == -EINTR) continue;
            if (r < 0) break; // the ring is unusable; nothing more will complete
            reap(out);
        }
    }

    int completion_fd() const noexcept override { return event_.fd(); }
    bool completions_ready() const noexcept override {
        return !early_.empty() || taskrun_pending() || io_uring_cq_ready(&ring_) != 0;
    }
    size_t in_flight() const noexcept override { return in_flight_ + queued_; }

  private:
    // Completions the kernel queued for this thread, not yet in the CQ.
    bool taskrun_pending() const noexcept {
        return deferred_ && (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN) != 0;
    }

    int fd_;
    io_uring ring_{};
    EventFd event_;
    bool deferred_{false}; // kDeferredFlags took
    bool disabled_{false}; // created disabled, restricted (uring_restrictions.h)
    bool bound_{false};    // bind_to_current_thread() enabled the ring
    size_t queued_{0};
    size_t in_flight_{0};
    std::vector<HostCompletion> early_;
};
} // namespace

std::unique_ptr<IoEngine> make_uring_engine(int fd, unsigned depth, UringSetup setup) {
    return std::make_unique<UringEngine>(fd, depth, setup);
}

} // namespace ember
