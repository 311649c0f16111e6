// Runs a batch of independent I/O jobs with up to `depth` of them in flight,
// one synchronous job per worker thread: with --qd N the device sees up to N
// outstanding requests without needing io_uring or libaio in the guest.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ember::verify {

class IoPool final {
public:
    // job(index, worker): worker is in [0, depth) and owns per-worker buffers.
    using Job = std::function<void(uint64_t index, unsigned worker)>;

    explicit IoPool(unsigned depth);
    ~IoPool();
    IoPool(const IoPool&) = delete;
    IoPool& operator=(const IoPool&) = delete;

    unsigned depth() const noexcept { return depth_; }

    // Runs job(i, w) for every i in [0, count) and returns when all have finished.
    // Jobs of one batch must not depend on each other's order. Depth 1 runs inline.
    void run(uint64_t count, const Job& job);

private:
    void worker_loop(unsigned worker);

    unsigned depth_;
    std::mutex mutex_;
    std::condition_variable work_ready_;
    std::condition_variable work_done_;
    const Job* job_{nullptr};    // guarded by mutex_
    uint64_t count_{0};          // guarded by mutex_
    uint64_t next_{0};           // guarded by mutex_
    uint64_t finished_{0};       // guarded by mutex_
    uint64_t batch_{0};          // guarded by mutex_: bumped per run() so workers see new work
    bool quit_{false};           // guarded by mutex_
    std::vector<std::thread> workers_;
};

} // namespace ember::verify
