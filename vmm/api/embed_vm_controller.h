// The control socket's VmController: every VM it runs is a libember VM
// (ember::embed::Vm, include/ember/vm.h), as in any program embedding ember.
// The VM is built on the caller's thread (so a bad kernel or disk is the API
// request's 400); libember runs it on threads of its own. A waiter thread
// sits in Vm::wait() and calls `on_exit` there once the guest stops (post it
// to the io_context). API calls arrive on the io_context thread; libember
// serialises them with the waiter.
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "ember/vm.h"
#include "vmm/api/vm_controller.h"

namespace ember::api {

class EmbedVmController final : public VmController {
  public:
    using ExitHandler = std::function<void(const embed::ExitInfo&)>;

    // `console` is the serial console a restored VM gets (a checkpoint does
    // not record one); `on_exit` is called once, on the waiter thread.
    EmbedVmController(embed::ConsoleConfig console, ExitHandler on_exit);
    // Stops a VM that is still running and joins the waiter.
    ~EmbedVmController() override;
    EmbedVmController(const EmbedVmController&) = delete;
    EmbedVmController& operator=(const EmbedVmController&) = delete;

    void start(const VmConfig& config) override;
    void pause() override;
    void resume() override;
    void checkpoint(const std::filesystem::path& dir) override;
    void restore(const RestoreRequest& request) override;
    void send_ctrl_alt_del() override;
    std::optional<embed::Metrics> metrics() override;
    void set_rate_limit(const std::string& drive_id, const RateLimit& limit) override;
    void set_net_rate_limit(const std::string& iface_id, std::optional<RateLimit> rx,
                            std::optional<RateLimit> tx) override;

    // `ember run --api-sock`: starts a VM the command line already built.
    // Pair with ApiRouter::attach_running.
    void adopt(embed::Vm vm);

  private:
    // Starts `vm` (running, or paused for a paused restore) and the waiter.
    void launch(embed::Vm vm);
    embed::Vm& live_vm(const char* action);

    embed::ConsoleConfig console_;
    ExitHandler on_exit_;
    std::mutex mu_;
    std::optional<embed::Vm> vm_;
    std::thread waiter_;
};

} // namespace ember::api
