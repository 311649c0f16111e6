// libember's Vm: a handle over the internal ember::Vm (vmm/vm.h). The
// internal VM is built on the caller's thread, so every setup failure is the
// caller's exception. Once started, one thread of the library ("ember-vm")
// sits in ember::Vm::run() until the guest stops; its vcpus and disk I/O
// threads are the internal VM's own. Control calls (pause, checkpoint, ...)
// are serialised by mu_ and act on the internal VM directly.
#include "ember/vm.h"

#include <pthread.h>

#include <condition_variable>
#include <fmt/format.h>
#include <mutex>
#include <thread>

#include "vmm/embed/config.h"
#include "vmm/embed/life_cycle.h"
#include "vmm/snapshot/restore_config.h"
#include "vmm/log.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/vm.h"

namespace ember::embed {
namespace {

// Library calls throw ember::Error only: anything else that escapes the
// internals (std::system_error from a thread, bad_alloc) is wrapped.
template <typename F> auto as_ember_error(const char* what, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        throw Error(fmt::format("{}: {}", what, e.what()));
    }
}

} // namespace

class Vm::Impl final {
  public:
    Impl(std::unique_ptr<::ember::Vm> vm, ::ember::RunOptions options, bool start_paused = false)
        : vm_(std::move(vm)), options_(options), start_paused_(start_paused) {}
    ~Impl() {
        try {
            stop();
        } catch (...) {
            // A destructor cannot report; stop() already recorded the exit.
        }
    }

    void start() {
        std::lock_guard lock(mu_);
        const State next = checked(Action::start);
        // The vcpus are started here, under mu_, not by run(): a pause()
        // right after start() then always finds them running. A paused
        // restore leaves them (and the disks' I/O threads) for resume().
        if (!start_paused_) vm_->resume();
        runner_ = std::thread([this] { run(); });
        life_.set(start_paused_ ? State::paused : next);
    }

    void pause() {
        std::lock_guard lock(mu_);
        const State next = checked(Action::pause);
        vm_->pause();
        life_.set(next);
    }

    void resume() {
        std::lock_guard lock(mu_);
        const State next = checked(Action::resume);
        vm_->resume();
        life_.set(next);
    }

    void send_ctrl_alt_del() {
        std::lock_guard lock(mu_);
        checked(Action::ctrl_alt_del);
        vm_->send_ctrl_alt_del();
    }

    void set_rate_limit(std::string_view disk_id, const RateLimit& limit) {
        std::lock_guard lock(mu_);
        if (exit_now() || !vm_) throw Error("the VM has exited");
        vm_->set_disk_rate_limit(disk_id, limit);
    }

    void set_net_rate_limit(std::string_view net_id, const std::optional<RateLimit>& rx,
                            const std::optional<RateLimit>& tx) {
        std::lock_guard lock(mu_);
        if (exit_now() || !vm_) throw Error("the VM has exited");
        vm_->set_net_rate_limit(net_id, rx, tx);
    }

    CheckpointInfo checkpoint(const std::filesystem::path& dir, AfterCheckpoint then) {
        std::lock_guard lock(mu_);
        checked(Action::checkpoint);
        if (then == AfterCheckpoint::keep_running) return to_info(vm_->checkpoint(dir));
        // Stopping: the guest does not run between the snapshot and the stop
        // (it would write to its disks and talk on its network); a failed
        // checkpoint resumes it.
        const CheckpointStats stats = vm_->checkpoint(dir, false);
        if (runner_.joinable()) {
            vm_->exits().report(::ember::ExitReason::checkpointed);
        } else {
            finish_unstarted(ExitInfo{ExitReason::stopped, "checkpoint taken", true});
        }
        return to_info(stats);
    }

    ExitInfo wait() {
        {
            std::lock_guard lock(mu_);
            if (!runner_.joinable() && !exit_now())
                throw Error("cannot wait for the VM: it has not been started");
        }
        {
            std::unique_lock lock(exit_mu_);
            exit_cv_.wait(lock, [&] { return exit_.has_value(); });
        }
        return reap();
    }

    std::optional<ExitInfo> wait_for(std::chrono::milliseconds timeout) {
        {
            std::lock_guard lock(mu_);
            if (!runner_.joinable() && !exit_now())
                throw Error("cannot wait for the VM: it has not been started");
        }
        {
            std::unique_lock lock(exit_mu_);
            if (!exit_cv_.wait_for(lock, timeout, [&] { return exit_.has_value(); }))
                return std::nullopt;
        }
        return reap();
    }

    ExitInfo stop() {
        {
            std::lock_guard lock(mu_);
            if (!runner_.joinable()) {
                if (!exit_now())
                    finish_unstarted(
                        ExitInfo{ExitReason::stopped, "stopped before it was started"});
                return *exit_now();
            }
            // First reported exit wins: a guest that already powered off
            // keeps its reason.
            if (vm_) vm_->exits().report(::ember::ExitReason::user_quit, "stopped by the program");
        }
        std::unique_lock lock(exit_mu_);
        exit_cv_.wait(lock, [&] { return exit_.has_value(); });
        lock.unlock();
        return reap();
    }

    State state() const {
        std::lock_guard lock(mu_);
        return exit_now() ? State::exited : life_.state();
    }

    Metrics metrics() const {
        std::lock_guard lock(mu_);
        Metrics m = vm_ ? public_metrics(vm_->metrics()) : final_metrics_;
        m.state = exit_now() ? State::exited : life_.state();
        return m;
    }

  private:
    static Metrics public_metrics(const ::ember::VmMetrics& in) {
        Metrics m;
        // Designated: a field moved in either struct is a compile error, not
        // a counter reported under another's name.
        for (const auto& v : in.vcpus)
            m.vcpus.push_back(
                {.exits = v.exits, .pio_exits = v.pio_exits, .mmio_exits = v.mmio_exits});
        for (const auto& d : in.disks) {
            const auto& s = d.stats;
            m.disks.push_back({.id = d.id,
                               .path = d.path,
                               .requests = s.requests,
                               .reads = s.reads,
                               .writes = s.writes,
                               .flushes = s.flushes,
                               .discards = s.discards,
                               .write_zeroes = s.write_zeroes,
                               .bytes_read = s.bytes_read,
                               .bytes_written = s.bytes_written,
                               .bad_requests = s.bad_requests,
                               .host_errors = s.host_errors,
                               .interrupts = s.interrupts,
                               .throttled = s.throttled});
        }
        for (const auto& n : in.nets)
            m.nets.push_back({.id = n.id,
                              .tap = n.tap,
                              .rx_frames = n.stats.rx_frames,
                              .rx_bytes = n.stats.rx_bytes,
                              .rx_dropped = n.stats.rx_dropped,
                              .tx_frames = n.stats.tx_frames,
                              .tx_bytes = n.stats.tx_bytes,
                              .tx_errors = n.stats.tx_errors,
                              .bad_requests = n.stats.bad_requests,
                              .interrupts = n.stats.interrupts,
                              .rx_throttled = n.stats.rx_throttled,
                              .tx_throttled = n.stats.tx_throttled});
        if (const auto& e = in.entropy)
            m.entropy = EntropyMetrics{.requests = e->requests,
                                       .bytes = e->bytes,
                                       .bad_requests = e->bad_requests,
                                       .host_errors = e->host_errors,
                                       .interrupts = e->interrupts};
        return m;
    }

    // With mu_ held, before the internal VM is freed: what metrics() reports
    // from then on.
    void release_vm() {
        if (!vm_) return;
        final_metrics_ = public_metrics(vm_->metrics());
        vm_.reset();
    }

    static CheckpointInfo to_info(const CheckpointStats& s) {
        return CheckpointInfo{s.memory_bytes, s.inflight_requests, s.pause_ms};
    }

    std::optional<ExitInfo> exit_now() const {
        std::lock_guard lock(exit_mu_);
        return exit_;
    }

    // With mu_ held: the state `action` leads to, counting an exit the VM's
    // thread has reported but nobody has collected yet.
    State checked(Action action) {
        if (exit_now()) life_.set(State::exited);
        return life_.after(action);
    }

    void run() {
        pthread_setname_np(pthread_self(), "ember-vm");
        ExitInfo e;
        try {
            e = to_public(vm_->run(options_));
        } catch (const std::exception& ex) {
            e = ExitInfo{ExitReason::error, ex.what()};
        }
        {
            std::lock_guard lock(exit_mu_);
            exit_ = std::move(e);
        }
        exit_cv_.notify_all();
    }

    // A VM that never ran: record the exit and free it now.
    void finish_unstarted(ExitInfo e) {
        {
            std::lock_guard lock(exit_mu_);
            exit_ = std::move(e);
        }
        exit_cv_.notify_all();
        life_.set(State::exited);
        release_vm();
    }

    // After the exit: join the VM's thread and free the VM (guest memory,
    // KVM fds) without waiting for the handle to go away.
    ExitInfo reap() {
        std::lock_guard lock(mu_);
        if (runner_.joinable()) runner_.join();
        life_.set(State::exited);
        release_vm();
        return *exit_now();
    }

    mutable std::mutex mu_; // serialises control calls; guards vm_, runner_, life_
    std::unique_ptr<::ember::Vm> vm_;
    Metrics final_metrics_; // once vm_ is gone
    ::ember::RunOptions options_;
    bool start_paused_{false}; // RestoreOverrides::paused
    LifeCycle life_;
    std::thread runner_;
    mutable std::mutex exit_mu_;
    std::condition_variable exit_cv_;
    std::optional<ExitInfo> exit_;
};

Vm::Vm(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Vm::Vm(Vm&&) noexcept = default;
Vm& Vm::operator=(Vm&&) noexcept = default;
Vm::~Vm() = default;

Vm Vm::create(const VmConfig& config) {
    return as_ember_error("cannot build the VM", [&] {
        ::ember::VmConfig internal = to_internal(config);
        internal.start_paused = true; // started by start()
        auto vm = std::make_unique<::ember::Vm>(internal);
        return Vm(std::make_unique<Impl>(
            std::move(vm), run_options(config.console, config.checkpoint_on_sigusr1)));
    });
}

Vm Vm::restore(const std::filesystem::path& dir, const RestoreOverrides& overrides) {
    return as_ember_error("cannot restore the VM", [&] {
        SnapshotReader snapshot(dir);
        ::ember::VmConfig config = ::ember::restore_config(
            snapshot, DiskOverrides(overrides.disks.begin(), overrides.disks.end()));
        apply_net_overrides(config, overrides.nets);
        config.console = to_internal(overrides.console);
        apply_signal_checkpoint(config, overrides.checkpoint_on_sigusr1);
        apply_checkpoint_options(config, overrides.checkpoints);
        config.faults = to_internal(overrides.faults);
        config.start_paused = true;
        auto vm = std::make_unique<::ember::Vm>(config, snapshot);
        return Vm(std::make_unique<Impl>(
            std::move(vm), run_options(overrides.console, overrides.checkpoint_on_sigusr1),
            overrides.paused));
    });
}

// A moved-from handle has no Impl; using it is a caller's bug, reported as one.
Vm::Impl& Vm::impl() const {
    if (!impl_) throw Error("this ember::embed::Vm was moved from; it no longer refers to a VM");
    return *impl_;
}

void Vm::start() {
    as_ember_error("cannot start the VM", [&] { impl().start(); });
}
void Vm::pause() {
    as_ember_error("cannot pause the VM", [&] { impl().pause(); });
}
void Vm::resume() {
    as_ember_error("cannot resume the VM", [&] { impl().resume(); });
}
CheckpointInfo Vm::checkpoint(const std::filesystem::path& dir, AfterCheckpoint then) {
    return as_ember_error("cannot checkpoint the VM", [&] { return impl().checkpoint(dir, then); });
}
void Vm::set_rate_limit(std::string_view disk_id, const RateLimitConfig& limit) {
    const auto what = fmt::format("cannot set the rate limit of disk '{}'", disk_id);
    as_ember_error(what.c_str(), [&] { impl().set_rate_limit(disk_id, to_internal(limit)); });
}
void Vm::set_net_rate_limit(std::string_view net_id, const std::optional<RateLimitConfig>& rx,
                            const std::optional<RateLimitConfig>& tx) {
    const auto internal = [](const std::optional<RateLimitConfig>& l) {
        return l ? std::optional(to_internal(*l)) : std::nullopt;
    };
    const auto what = fmt::format("cannot set the rate limits of network device '{}'", net_id);
    as_ember_error(what.c_str(),
                   [&] { impl().set_net_rate_limit(net_id, internal(rx), internal(tx)); });
}

void Vm::send_ctrl_alt_del() {
    as_ember_error("cannot send Ctrl-Alt-Del", [&] { impl().send_ctrl_alt_del(); });
}
ExitInfo Vm::wait() {
    return as_ember_error("cannot wait for the VM", [&] { return impl().wait(); });
}
std::optional<ExitInfo> Vm::wait_for(std::chrono::milliseconds timeout) {
    return as_ember_error("cannot wait for the VM", [&] { return impl().wait_for(timeout); });
}
ExitInfo Vm::stop() {
    return as_ember_error("cannot stop the VM", [&] { return impl().stop(); });
}
State Vm::state() const {
    return impl().state();
}
Metrics Vm::metrics() const {
    return impl().metrics();
}

const char* version() noexcept {
    return EMBER_VERSION;
}

void set_log_level(LogLevel level) noexcept {
    switch (level) {
    case LogLevel::debug:
        log::set_level(log::Level::debug);
        break;
    case LogLevel::info:
        log::set_level(log::Level::info);
        break;
    case LogLevel::warning:
        log::set_level(log::Level::warn);
        break;
    case LogLevel::error:
        log::set_level(log::Level::error);
        break;
    }
}

} // namespace ember::embed
