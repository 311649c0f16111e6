#include "vmm/api/embed_vm_controller.h"

#include <fmt/format.h>

#include "vmm/cli_embed.h"
#include "vmm/log.h"

namespace ember::api {

EmbedVmController::EmbedVmController(embed::ConsoleConfig console, ExitHandler on_exit)
    : console_(std::move(console)), on_exit_(std::move(on_exit)) {}

EmbedVmController::~EmbedVmController() {
    // The waiter owns nothing but its call to wait(): stopping the VM ends
    // that call, and the waiter reports the stop through on_exit_.
    if (vm_) {
        try {
            vm_->stop();
        } catch (const std::exception& e) {
            log::warn("stopping the VM: {}", e.what());
        }
    }
    if (waiter_.joinable()) waiter_.join();
}

void EmbedVmController::launch(embed::Vm vm) {
    vm.start();
    vm_.emplace(std::move(vm));
    waiter_ = std::thread([this] {
        embed::ExitInfo e;
        try {
            e = vm_->wait();
        } catch (const std::exception& ex) {
            e = embed::ExitInfo{embed::ExitReason::error, ex.what()};
        }
        if (on_exit_) on_exit_(e);
    });
}

void EmbedVmController::start(const VmConfig& config) {
    std::lock_guard lock(mu_);
    if (vm_) throw Error("the VM has already been started");
    launch(embed::Vm::create(to_embed(config)));
}

void EmbedVmController::adopt(embed::Vm vm) {
    std::lock_guard lock(mu_);
    if (vm_) throw Error("the VM has already been started");
    launch(std::move(vm));
}

embed::Vm& EmbedVmController::live_vm(const char* action) {
    if (!vm_) throw Error(fmt::format("cannot {}: there is no VM", action));
    // libember knows the exit as soon as the VM reports it, before the
    // waiter's wait() returns.
    if (vm_->state() == embed::State::exited)
        throw Error(fmt::format("cannot {}: the VM has stopped", action));
    return *vm_;
}

void EmbedVmController::pause() {
    std::lock_guard lock(mu_);
    live_vm("pause").pause();
}

void EmbedVmController::resume() {
    std::lock_guard lock(mu_);
    live_vm("resume").resume();
}

void EmbedVmController::checkpoint(const std::filesystem::path& dir) {
    std::lock_guard lock(mu_);
    const auto info = live_vm("create a snapshot").checkpoint(dir);
    log::info(
        "checkpoint written to {}: {} MiB of memory, {} disk requests in flight, guest paused "
        "{:.1f} ms",
        dir.string(), info.memory_bytes >> 20, info.inflight_requests, info.pause_ms);
}

void EmbedVmController::restore(const RestoreRequest& request) {
    std::lock_guard lock(mu_);
    if (vm_) throw Error("cannot load a snapshot: a VM already exists");
    embed::RestoreOverrides o;
    o.disks = request.disk_overrides;
    o.nets = request.net_overrides;
    o.console = console_;
    o.paused = true; // resumed by PATCH /vm or resume_vm
    launch(embed::Vm::restore(request.dir, o));
}

std::optional<embed::Metrics> EmbedVmController::metrics() {
    std::lock_guard lock(mu_);
    if (!vm_) return std::nullopt;
    return vm_->metrics();
}

void EmbedVmController::set_rate_limit(const std::string& drive_id, const RateLimit& limit) {
    std::lock_guard lock(mu_);
    live_vm("change a rate limit").set_rate_limit(drive_id, to_embed(limit));
}

void EmbedVmController::set_net_rate_limit(const std::string& iface_id, std::optional<RateLimit> rx,
                                           std::optional<RateLimit> tx) {
    const auto embedded = [](const std::optional<RateLimit>& l) {
        return l ? std::optional(to_embed(*l)) : std::nullopt;
    };
    std::lock_guard lock(mu_);
    live_vm("change a rate limit").set_net_rate_limit(iface_id, embedded(rx), embedded(tx));
}

void EmbedVmController::send_ctrl_alt_del() {
    std::lock_guard lock(mu_);
    live_vm("send Ctrl-Alt-Del").send_ctrl_alt_del();
}

} // namespace ember::api
