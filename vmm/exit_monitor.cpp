#include "vmm/exit_monitor.h"

namespace ember {

void ExitMonitor::report(ExitReason reason, std::string message) {
    {
        std::lock_guard lock(mu_);
        if (exit_) return;
        exit_ = VmExit{reason, std::move(message)};
    }
    cv_.notify_all();
    event_.signal();
}

std::optional<VmExit> ExitMonitor::exit() const {
    std::lock_guard lock(mu_);
    return exit_;
}

VmExit ExitMonitor::wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return exit_.has_value(); });
    return *exit_;
}

bool ExitMonitor::stopping() const {
    std::lock_guard lock(mu_);
    return exit_.has_value();
}

int exit_status(ExitReason reason) noexcept {
    switch (reason) {
    case ExitReason::poweroff:
    case ExitReason::reboot:
    case ExitReason::user_quit:
    case ExitReason::checkpointed:
        return 0;
    case ExitReason::panic:
    case ExitReason::error:
        return 1;
    }
    return 1;
}

const char* describe(ExitReason reason) noexcept {
    switch (reason) {
    case ExitReason::poweroff: return "guest powered off";
    case ExitReason::reboot: return "guest rebooted";
    case ExitReason::panic: return "guest kernel panicked";
    case ExitReason::error: return "VMM error";
    case ExitReason::user_quit: return "stopped from the console (Ctrl-A x)";
    case ExitReason::checkpointed: return "checkpoint taken; exiting";
    }
    return "unknown";
}

} // namespace ember
