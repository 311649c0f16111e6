#include "vmm/api/kvm_vm_controller.h"

#include <fmt/format.h>

#include <algorithm>

#include "vmm/log.h"
#include "vmm/snapshot/restore_config.h"
#include "vmm/vm.h"

namespace ember::api {

KvmVmController::KvmVmController(ConsoleSpec console, ExitHandler on_exit)
    : console_(std::move(console)), on_exit_(std::move(on_exit)) {}

KvmVmController::~KvmVmController() {
    if (vm_ && !exited_) vm_->exits().report(ExitReason::user_quit, "ember is shutting down");
    if (thread_.joinable()) thread_.join();
}

void KvmVmController::launch(std::unique_ptr<Vm> vm, bool start_vcpus) {
    vm_ = std::move(vm);
    // Vm::run() starts the vcpus itself unless start_paused; here they are
    // always started (or not) by this class, under mu_, so the API's view of
    // the state is never behind the VM's.
    if (start_vcpus) vm_->resume();
    thread_ = std::thread([this] {
        VmExit e{ExitReason::error, {}};
        try {
            e = vm_->run();
        } catch (const std::exception& ex) {
            e = VmExit{ExitReason::error, ex.what()};
        }
        exited_ = true;
        if (on_exit_) on_exit_(e);
    });
}

void KvmVmController::start(const VmConfig& config) {
    std::lock_guard lock(mu_);
    if (vm_) throw Error("the VM has already been started");
    VmConfig c = config;
    c.start_paused = true; // see launch()
    launch(std::make_unique<Vm>(c), true);
}

void KvmVmController::adopt(std::unique_ptr<Vm> vm) {
    std::lock_guard lock(mu_);
    if (vm_) throw Error("the VM has already been started");
    launch(std::move(vm), true);
}

Vm& KvmVmController::running_vm(const char* action) {
    if (!vm_) throw Error(fmt::format("cannot {}: there is no VM", action));
    if (exited_) throw Error(fmt::format("cannot {}: the VM has stopped", action));
    return *vm_;
}

void KvmVmController::pause() {
    std::lock_guard lock(mu_);
    running_vm("pause").pause();
}

void KvmVmController::resume() {
    std::lock_guard lock(mu_);
    running_vm("resume").resume();
}

void KvmVmController::checkpoint(const std::filesystem::path& dir) {
    std::lock_guard lock(mu_);
    const auto stats = running_vm("create a snapshot").checkpoint(dir);
    log::info("checkpoint written to {}: {} MiB of memory, guest paused {:.1f} ms", dir.string(),
              stats.memory_bytes >> 20, stats.pause_ms);
}

void KvmVmController::restore(const RestoreRequest& request) {
    std::lock_guard lock(mu_);
    if (vm_) throw Error("cannot load a snapshot: a VM already exists");
    SnapshotReader snapshot(request.dir);
    VmConfig config = restore_config(
        snapshot, DiskOverrides(request.disk_overrides.begin(), request.disk_overrides.end()));
    config.console = console_;
    config.start_paused = true; // resumed by PATCH /vm or resume_vm
    launch(std::make_unique<Vm>(config, snapshot), false);
}

void KvmVmController::send_ctrl_alt_del() {
    std::lock_guard lock(mu_);
    running_vm("send Ctrl-Alt-Del").send_ctrl_alt_del();
}

} // namespace ember::api
