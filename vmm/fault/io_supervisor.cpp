#include "vmm/fault/io_supervisor.h"

#include <pthread.h>

#include <random>

#include "vmm/log.h"

namespace ember {

IoSupervisor::IoSupervisor(std::span<VirtioMmioTransport* const> devices, Options options)
    : devices_(devices.begin(), devices.end()), options_(std::move(options)) {
    for (size_t i = 0; i < devices_.size(); ++i) {
        // On the I/O thread that stopped itself: only queue and wake.
        devices_[i]->set_io_lost_handler([this, i](VirtioMmioTransport&) {
            {
                std::lock_guard lock(mu_);
                lost_.push_back(i);
            }
            cv_.notify_all();
        });
    }
    thread_ = std::thread([this] { run(); });
    ::pthread_setname_np(thread_.native_handle(), "ember-io-super");
}

IoSupervisor::~IoSupervisor() {
    stop();
}

void IoSupervisor::stop() noexcept {
    {
        std::lock_guard lock(mu_);
        if (stopping_ && !thread_.joinable()) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    // A lost thread after this point makes its device ask for a reset.
    for (auto* d : devices_)
        d->set_io_lost_handler({});
}

void IoSupervisor::run() {
    using Clock = std::chrono::steady_clock;
    std::mt19937_64 rng(options_.seed);
    const uint32_t p = options_.random_period_ms;
    auto next_random = [&] {
        std::uniform_int_distribution<uint32_t> d(p / 2, p + p / 2);
        return Clock::now() + std::chrono::milliseconds(std::max<uint32_t>(1, d(rng)));
    };
    auto due = p != 0 ? next_random() : Clock::time_point::max();
    std::unique_lock lock(mu_);
    for (;;) {
        if (stopping_) return;
        if (!lost_.empty()) {
            const size_t i = lost_.front();
            lost_.pop_front();
            lock.unlock();
            restart(i, false);
            lock.lock();
            continue;
        }
        if (Clock::now() >= due) {
            lock.unlock();
            for (size_t i = 0; i < devices_.size(); ++i)
                restart(i, true);
            lock.lock();
            due = next_random();
            continue;
        }
        if (due == Clock::time_point::max()) cv_.wait(lock);
        else cv_.wait_until(lock, due);
    }
}

void IoSupervisor::restart(size_t index, bool random) {
    Restart r{index, random, true, {}};
    auto body = [&] {
        try {
            r.recovery = devices_[index]->restart_io();
        } catch (const std::exception& e) {
            // The transport already set NEEDS_RESET: the guest driver resets
            // the device, which starts from scratch.
            r.ok = false;
            log::error("{}: restarting the I/O thread failed: {}", devices_[index]->name(),
                       e.what());
        }
    };
    if (options_.guard) options_.guard(body);
    else body();
    {
        std::lock_guard lock(mu_);
        restarts_.push_back(r);
    }
    cv_.notify_all();
}

std::vector<IoSupervisor::Restart> IoSupervisor::restarts() const {
    std::lock_guard lock(mu_);
    return restarts_;
}

bool IoSupervisor::wait_restarts(size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return restarts_.size() >= n; });
}

} // namespace ember
