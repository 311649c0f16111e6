// One thread per vcpu running KVM_RUN and dispatching PIO/MMIO exits to the
// buses. Stopping uses immediate_exit plus a signal, so a vcpu in the guest or
// about to enter it leaves KVM_RUN promptly.
#pragma once

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "devices/io_bus.h"
#include "vmm/exit_monitor.h"
#include "vmm/kvm.h"

namespace ember {

class VcpuThread final {
public:
    // host_cpu: the one host CPU the thread runs on (--vcpu-cpus); unset:
    // wherever the process may.
    VcpuThread(std::unique_ptr<KvmVcpu> vcpu, const IoBus& pio, const IoBus& mmio, ExitMonitor& exits,
               std::optional<uint32_t> host_cpu = std::nullopt)
        : vcpu_(std::move(vcpu)), pio_(pio), mmio_(mmio), exits_(exits), host_cpu_(host_cpu) {}
    ~VcpuThread();

    KvmVcpu& vcpu() noexcept { return *vcpu_; }
    void start();
    // Makes the thread leave KVM_RUN and end. Safe from any thread.
    void stop();
    void join();
    // Takes the vcpu out of KVM_RUN (completing any PIO/MMIO it was in) and
    // parks it; returns once it is parked, so its state may be read. A vcpu
    // that already stopped counts as parked.
    void pause();
    void resume();

    // Exits to userspace so far, the last one's KVM_EXIT_* reason and the
    // last MMIO address (state dumps: a vcpu looping on one MMIO access).
    std::string describe_exits() const;

    // Exits to ember since the thread was made (metrics): all of them, and
    // the port I/O and MMIO ones among them.
    struct ExitCounts {
        uint64_t exits = 0;
        uint64_t pio_exits = 0;
        uint64_t mmio_exits = 0;
    };
    ExitCounts exit_counts() const noexcept;

    // The kick signal; its handler does nothing, it only interrupts KVM_RUN.
    static int kick_signal() noexcept;
    static void install_kick_handler();

private:
    enum class State { running, paused, stopped };
    void loop();
    void handle_exit();

    std::unique_ptr<KvmVcpu> vcpu_;
    const IoBus& pio_;
    const IoBus& mmio_;
    ExitMonitor& exits_;
    const std::optional<uint32_t> host_cpu_;
    void request(State s);
    void park();

    std::atomic<State> state_{State::running};
    std::mutex mu_;
    std::condition_variable cv_;
    bool parked_ = false;
    std::atomic<uint64_t> exit_count_{0};
    std::atomic<uint64_t> interrupted_count_{0};
    std::atomic<uint64_t> pio_count_{0};
    std::atomic<uint64_t> mmio_count_{0};
    std::atomic<uint32_t> last_exit_{0};
    std::atomic<uint64_t> last_mmio_{0};
    bool exited_ = false;
    std::thread thread_;
};

} // namespace ember
