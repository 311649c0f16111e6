// Collects the one reason the VM stops (the first one reported wins) and wakes
// the main thread. Reported from vcpu threads, devices and signal handling.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>

namespace ember {

enum class ExitReason { poweroff, reboot, panic, error, user_quit };

struct VmExit {
    ExitReason reason;
    std::string message;
};

class ExitMonitor final {
public:
    void report(ExitReason reason, std::string message = {});
    VmExit wait();
    bool stopping() const;

private:
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::optional<VmExit> exit_;
};

// Exit status of the ember process for a VM exit (README "Exit status").
int exit_status(ExitReason reason) noexcept;
const char* describe(ExitReason reason) noexcept;

} // namespace ember
