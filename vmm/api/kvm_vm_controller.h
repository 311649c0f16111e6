// The control socket's VmController for a real ember::Vm. The VM is built on
// the caller's thread (so a bad kernel or disk is the API request's 400) and
// runs on a thread of its own, in Vm::run(), until the guest stops; then
// `on_exit` is called on that thread (post it to the io_context). API calls
// arrive on the io_context thread and are serialised by a mutex.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "vmm/api/vm_controller.h"
#include "vmm/exit_monitor.h"

namespace ember {
class Vm;
}

namespace ember::api {

class KvmVmController final : public VmController {
  public:
    using ExitHandler = std::function<void(const VmExit&)>;

    // `console` is the serial console a restored VM gets (a checkpoint does
    // not record one); `on_exit` is called once, on the VM's thread.
    KvmVmController(ConsoleSpec console, ExitHandler on_exit);
    // Stops a VM that is still running (as a user quit) and joins its thread.
    ~KvmVmController() override;
    KvmVmController(const KvmVmController&) = delete;
    KvmVmController& operator=(const KvmVmController&) = delete;

    void start(const VmConfig& config) override;
    void pause() override;
    void resume() override;
    void checkpoint(const std::filesystem::path& dir) override;
    void restore(const RestoreRequest& request) override;
    void send_ctrl_alt_del() override;

    // `ember run --api-sock`: runs a VM main() already built (vcpus start
    // now). Pair with ApiRouter::attach_running.
    void adopt(std::unique_ptr<Vm> vm);

  private:
    // Runs `vm` on the VM thread; if `start_vcpus`, starts them from here
    // first, so the VM is running when start() returns and a PATCH /vm
    // right after cannot race Vm::run().
    void launch(std::unique_ptr<Vm> vm, bool start_vcpus);
    Vm& running_vm(const char* action);

    ConsoleSpec console_;
    ExitHandler on_exit_;
    std::mutex mu_;
    std::unique_ptr<Vm> vm_;
    std::thread thread_;
    std::atomic<bool> exited_{false};
};

} // namespace ember::api
