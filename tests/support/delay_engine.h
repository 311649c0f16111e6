// A host I/O engine with random latency for the checkpoint tests and
// bench-checkpoint: a slow disk. Each submitted operation runs on a worker
// thread at a random instant in [min, max] after submit() and then shows up
// on the completion eventfd, so many requests are in flight at once and host
// I/O keeps writing guest memory while the I/O thread is parked, exactly as
// io_uring would.
#pragma once

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <queue>
#include <random>
#include <thread>
#include <vector>

#include "devices/block/io_engine.h"
#include "vmm/unique_fd.h"

namespace ember::testing {

class DelayEngine final : public IoEngine {
  public:
    using Clock = std::chrono::steady_clock;

    // `log`, when given, receives the cookie (head) of every operation in
    // enqueue order (written on the I/O thread; read it while quiesced).
    using Log = std::shared_ptr<std::vector<uint64_t>>;

    DelayEngine(int fd, std::chrono::microseconds min, std::chrono::microseconds max,
                uint64_t seed = 1, Log log = nullptr)
        : fd_(fd), min_(min), max_(max), rng_(seed), log_(std::move(log)) {
        worker_ = std::thread([this] { work(); });
    }
    ~DelayEngine() override {
        std::vector<HostCompletion> ignored;
        drain(ignored);
        {
            std::lock_guard lock(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        worker_.join();
    }
    DelayEngine(const DelayEngine&) = delete;
    DelayEngine& operator=(const DelayEngine&) = delete;

    // An IoEngineFactory for VirtioBlock::set_engine_factory.
    static IoEngineFactory factory(std::chrono::microseconds min, std::chrono::microseconds max,
                                   uint64_t seed = 1, Log log = nullptr) {
        return [=](int fd, unsigned) {
            return std::make_unique<DelayEngine>(fd, min, max, seed, log);
        };
    }

    std::string_view name() const override { return "delay"; }

    void enqueue(const HostIo& io) override {
        if (log_) log_->push_back(io.cookie);
        queued_.push_back(Op{io.op, io.offset, {io.iov.begin(), io.iov.end()}, io.cookie, {}});
    }

    void submit() override {
        if (queued_.empty()) return;
        {
            std::lock_guard lock(mu_);
            const auto now = Clock::now();
            for (auto& op : queued_) {
                const auto span = static_cast<uint64_t>((max_ - min_).count()) + 1;
                op.due = now + min_ + std::chrono::microseconds(rng_() % span);
                timers_.push(std::move(op));
                ++pending_;
            }
        }
        outstanding_ += queued_.size();
        queued_.clear();
        cv_.notify_all();
    }

    void reap(std::vector<HostCompletion>& out) override {
        std::lock_guard lock(mu_);
        out.insert(out.end(), done_.begin(), done_.end());
        outstanding_ -= done_.size();
        done_.clear();
    }

    void drain(std::vector<HostCompletion>& out) override {
        submit();
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [this] { return pending_ == 0; });
        }
        reap(out);
    }

    int completion_fd() const noexcept override { return event_.fd(); }
    bool completions_ready() const noexcept override {
        std::lock_guard lock(mu_);
        return !done_.empty();
    }
    size_t in_flight() const noexcept override { return outstanding_ + queued_.size(); }

  private:
    struct Op {
        HostIo::Op op;
        uint64_t offset;
        std::vector<iovec> iov;
        uint64_t cookie;
        Clock::time_point due;
        bool operator>(const Op& o) const { return due > o.due; }
    };

    void work() {
        std::unique_lock lock(mu_);
        for (;;) {
            if (stopping_ && timers_.empty()) return;
            if (timers_.empty()) {
                cv_.wait(lock);
                continue;
            }
            // A copy: wait_until keeps a reference to its deadline while the
            // lock is released, and submit() may reallocate timers_ meanwhile.
            const Clock::time_point due = timers_.top().due;
            if (Clock::now() < due) {
                cv_.wait_until(lock, due);
                continue;
            }
            Op op = timers_.top();
            timers_.pop();
            lock.unlock();
            int64_t r = 0;
            switch (op.op) {
            case HostIo::Op::read:
                r = ::preadv(fd_, op.iov.data(), static_cast<int>(op.iov.size()),
                             static_cast<off_t>(op.offset));
                break;
            case HostIo::Op::write:
                r = ::pwritev(fd_, op.iov.data(), static_cast<int>(op.iov.size()),
                              static_cast<off_t>(op.offset));
                break;
            case HostIo::Op::flush:
                r = ::fdatasync(fd_);
                break;
            }
            if (r < 0) r = -errno;
            lock.lock();
            done_.push_back(HostCompletion{op.cookie, r});
            --pending_;
            event_.signal();
            cv_.notify_all();
        }
    }

    const int fd_;
    const std::chrono::microseconds min_, max_;
    std::mt19937_64 rng_;
    Log log_;
    EventFd event_;
    std::vector<Op> queued_; // I/O thread only
    size_t outstanding_{0};  // I/O thread only: submitted, not yet reaped
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::priority_queue<Op, std::vector<Op>, std::greater<>> timers_;
    std::vector<HostCompletion> done_;
    size_t pending_{0}; // submitted, not yet executed
    bool stopping_{false};
    std::thread worker_;
};

} // namespace ember::testing
