// Collects the one reason the VM stops (the first one reported wins) and wakes
// the main thread. Reported from vcpu threads, devices and signal handling.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>

#include "vmm/unique_fd.h"

namespace ember {

enum class ExitReason { poweroff, reboot, panic, error, user_quit, checkpointed };

struct VmExit {
    ExitReason reason;
    std::string message;
};

class ExitMonitor final {
public:
    void report(ExitReason reason, std::string message = {});
    VmExit wait();
    bool stopping() const;
    std::optional<VmExit> exit() const;
    // Becomes readable when an exit is reported, for a poll() loop.
    int event_fd() const noexcept { return event_.fd(); }

private:
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::optional<VmExit> exit_;
    EventFd event_;
};

// Exit status of the ember process for a VM exit (README "Exit status").
int exit_status(ExitReason reason) noexcept;
const char* describe(ExitReason reason) noexcept;

} // namespace ember
