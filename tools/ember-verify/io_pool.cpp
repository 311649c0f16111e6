#include "tools/ember-verify/io_pool.h"

namespace ember::verify {

IoPool::IoPool(unsigned depth) : depth_{depth == 0 ? 1 : depth} {
    if (depth_ > 1) {
        workers_.reserve(depth_);
        for (unsigned w = 0; w < depth_; ++w) workers_.emplace_back([this, w] { worker_loop(w); });
    }
}

IoPool::~IoPool() {
    {
        std::lock_guard lock{mutex_};
        quit_ = true;
    }
    work_ready_.notify_all();
    for (auto& t : workers_) t.join();
}

void IoPool::run(uint64_t count, const Job& job) {
    if (count == 0) return;
    if (workers_.empty()) {
        for (uint64_t i = 0; i < count; ++i) job(i, 0);
        return;
    }
    std::unique_lock lock{mutex_};
    job_ = &job;
    count_ = count;
    next_ = 0;
    finished_ = 0;
    ++batch_;
    work_ready_.notify_all();
    work_done_.wait(lock, [&] { return finished_ == count_; });
    job_ = nullptr;
}

void IoPool::worker_loop(unsigned worker) {
    uint64_t seen_batch = 0;
    std::unique_lock lock{mutex_};
    for (;;) {
        work_ready_.wait(lock, [&] { return quit_ || (batch_ != seen_batch && next_ < count_); });
        if (quit_) return;
        // Take indices one at a time; the I/O itself runs unlocked.
        while (job_ != nullptr && next_ < count_) {
            const uint64_t index = next_++;
            const Job* job = job_;
            lock.unlock();
            (*job)(index, worker);
            lock.lock();
            if (++finished_ == count_) work_done_.notify_one();
        }
        seen_batch = batch_;
    }
}

} // namespace ember::verify
