#include "vmm/vcpu_thread.h"

#include <signal.h>

#include <fmt/format.h>

#include "vmm/cpu_affinity.h"
#include "vmm/errors.h"
#include "vmm/fault/fault_points.h"
#include "vmm/log.h"
#include "vmm/synchronous_signals.h"
#include "vmm/thread_confinement.h"

namespace ember {

int VcpuThread::kick_signal() noexcept { return SIGRTMIN; }

void VcpuThread::install_kick_handler() {
    struct sigaction sa{};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; // no SA_RESTART: KVM_RUN must return EINTR
    if (::sigaction(kick_signal(), &sa, nullptr) != 0) throw_errno("sigaction(vcpu kick)");
}

VcpuThread::~VcpuThread() {
    stop();
    join();
}

void VcpuThread::start() {
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), fmt::format("vcpu{}", vcpu_->id()).c_str());
        try {
            // Before the first KVM_RUN, so the guest never runs elsewhere.
            if (host_cpu_) pin_thread(pthread_self(), *host_cpu_);
            // Before the first exit is taken: what a thread that serves the
            // guest's port and MMIO accesses may do (the ember command's filter).
            confine_this_thread(ConfinedThread::vcpu);
            loop();
        } catch (const std::exception& e) {
            exits_.report(ExitReason::error, fmt::format("vcpu {}: {}", vcpu_->id(), e.what()));
        }
        std::lock_guard lock(mu_);
        exited_ = true;
        cv_.notify_all();
    });
}

void VcpuThread::request(State s) {
    {
        std::lock_guard lock(mu_);
        if (state_.load() == State::stopped) return; // stopping is final
        state_.store(s, std::memory_order_release);
    }
    cv_.notify_all();
    if (s == State::running || !vcpu_) return;
    // immediate_exit covers the window between the state check and the
    // KVM_RUN ioctl; the signal covers a vcpu already inside the guest.
    __atomic_store_n(&vcpu_->run_data()->immediate_exit, 1, __ATOMIC_RELEASE);
    if (thread_.joinable()) ::pthread_kill(thread_.native_handle(), kick_signal());
}

void VcpuThread::stop() { request(State::stopped); }

void VcpuThread::pause() {
    request(State::paused);
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return parked_ || exited_ || !thread_.joinable(); });
}

void VcpuThread::resume() { request(State::running); }

void VcpuThread::park() {
    // One more KVM_RUN with immediate_exit set completes a pending PIO/MMIO
    // read (its data is only copied into the guest on the next entry) and
    // returns at once with EINTR: the saved registers are then consistent.
    __atomic_store_n(&vcpu_->run_data()->immediate_exit, 1, __ATOMIC_RELEASE);
    vcpu_->run();
    std::unique_lock lock(mu_);
    parked_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return state_.load() != State::paused; });
    parked_ = false;
    __atomic_store_n(&vcpu_->run_data()->immediate_exit, 0, __ATOMIC_RELEASE);
}

void VcpuThread::join() {
    if (thread_.joinable()) thread_.join();
}

void VcpuThread::loop() {
    // Only the kick signal may interrupt this thread; everything else is the
    // main thread's business.
    sigset_t set;
    sigfillset(&set);
    sigdelset(&set, kick_signal());
    remove_synchronous_signals(set);
    pthread_sigmask(SIG_SETMASK, &set, nullptr);

    for (;;) {
        const State s = state_.load(std::memory_order_acquire);
        if (s == State::stopped) return;
        if (s == State::paused) {
            park();
            continue;
        }
        if (!vcpu_->run()) {
            interrupted_count_.fetch_add(1, std::memory_order_relaxed);
            // Interrupted. A pause that was withdrawn before this thread saw
            // it leaves immediate_exit set; clear it, then re-check the state
            // (a new request sets it again after changing the state).
            if (state_.load(std::memory_order_acquire) == State::running)
                __atomic_store_n(&vcpu_->run_data()->immediate_exit, 0, __ATOMIC_RELEASE);
            continue;
        }
        handle_exit();
    }
}

std::string VcpuThread::describe_exits() const {
    return fmt::format("{} exits to ember ({} KVM_RUN interrupted), last reason {}, last MMIO {:#x}",
                       exit_count_.load(std::memory_order_relaxed),
                       interrupted_count_.load(std::memory_order_relaxed), last_exit_.load(std::memory_order_relaxed),
                       last_mmio_.load(std::memory_order_relaxed));
}

VcpuThread::ExitCounts VcpuThread::exit_counts() const noexcept {
    return {exit_count_.load(std::memory_order_relaxed), pio_count_.load(std::memory_order_relaxed),
            mmio_count_.load(std::memory_order_relaxed)};
}

void VcpuThread::handle_exit() {
    kvm_run* run = vcpu_->run_data();
    // Relaxed: counters for state dumps and metrics, read by nobody on this path.
    exit_count_.fetch_add(1, std::memory_order_relaxed);
    last_exit_.store(run->exit_reason, std::memory_order_relaxed);
    if (run->exit_reason == KVM_EXIT_MMIO) last_mmio_.store(run->mmio.phys_addr, std::memory_order_relaxed);
    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
        pio_count_.fetch_add(1, std::memory_order_relaxed);
        auto* base = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
        for (uint32_t i = 0; i < run->io.count; ++i) {
            std::span<uint8_t> data(base + i * run->io.size, run->io.size);
            if (run->io.direction == KVM_EXIT_IO_OUT) pio_.write(run->io.port, data);
            else pio_.read(run->io.port, data);
        }
        return;
    }
    case KVM_EXIT_MMIO: {
        mmio_count_.fetch_add(1, std::memory_order_relaxed);
        fault::hit(fault::Point::vcpu_mmio);
        const uint32_t len = std::min<uint32_t>(run->mmio.len, sizeof run->mmio.data);
        std::span<uint8_t> data(run->mmio.data, len);
        if (run->mmio.is_write) mmio_.write(run->mmio.phys_addr, data);
        else mmio_.read(run->mmio.phys_addr, data);
        return;
    }
    case KVM_EXIT_HLT:
        // With the in-kernel LAPIC, HLT only exits if the guest halted with
        // interrupts off: nothing can wake it.
        exits_.report(ExitReason::poweroff, fmt::format("vcpu {} halted with interrupts disabled", vcpu_->id()));
        state_.store(State::stopped);
        return;
    case KVM_EXIT_SHUTDOWN:
        // Triple fault: how a PC resets when nothing else works.
        exits_.report(ExitReason::reboot, "triple fault");
        state_.store(State::stopped);
        return;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) exits_.report(ExitReason::reboot);
        else exits_.report(ExitReason::poweroff);
        state_.store(State::stopped);
        return;
    case KVM_EXIT_INTR:
        return;
    case KVM_EXIT_FAIL_ENTRY:
        exits_.report(ExitReason::error,
                      fmt::format("vcpu {}: KVM could not enter the guest (hardware reason {:#x})", vcpu_->id(),
                                  run->fail_entry.hardware_entry_failure_reason));
        state_.store(State::stopped);
        return;
    case KVM_EXIT_INTERNAL_ERROR:
        exits_.report(ExitReason::error, fmt::format("vcpu {}: KVM internal error, suberror {}", vcpu_->id(),
                                                     run->internal.suberror));
        state_.store(State::stopped);
        return;
    default:
        exits_.report(ExitReason::error,
                      fmt::format("vcpu {}: unexpected KVM exit reason {}", vcpu_->id(), run->exit_reason));
        state_.store(State::stopped);
        return;
    }
}

} // namespace ember
