// What the control socket asks of the VM. The API layer validates requests
// and the state machine (ApiState) before it calls any of these, so an
// implementation may assume a valid state: start() only once, pause() only
// while running, resume() only while paused, checkpoint() while running or
// paused. Each call is synchronous (it returns when the VM is in the new
// state) and throws ember::Error with a user-facing message on failure; the
// message is returned to the API client as a 400 fault_message.
//
// EmbedVmController (embed_vm_controller.h) drives a libember VM; the unit
// tests use a recording fake.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "ember/vm.h"
#include "vmm/vm_config.h"

namespace ember::api {

struct RestoreRequest {
    std::filesystem::path dir; // ember checkpoint directory (snapshot_path)
    // drive_id -> new host path: disks moved since the checkpoint (DESIGN.md
    // "Checkpoint and restore" step 5).
    std::map<std::string, std::filesystem::path> disk_overrides;
    // iface_id -> host_dev_name (Firecracker's network_overrides).
    std::map<std::string, std::string> net_overrides;
};

class VmController {
  public:
    virtual ~VmController() = default;

    // Builds the VM from `config` and starts its vcpus. On failure nothing is
    // left running and start() may be called again with a new config.
    virtual void start(const VmConfig& config) = 0;
    // Parks every vcpu (and the I/O threads' completions stay consistent, see
    // DESIGN.md "Signal-masked completion"); returns once all are parked.
    virtual void pause() = 0;
    virtual void resume() = 0;
    // Writes an ember checkpoint into `dir` (created if missing). Called while
    // running or paused; leaves the VM in the state it found it.
    virtual void checkpoint(const std::filesystem::path& dir) = 0;
    // Rebuilds the VM from a checkpoint, paused: vcpus created but not run
    // until resume(). Only called before start().
    virtual void restore(const RestoreRequest& request) = 0;
    // Presses Ctrl-Alt-Del on the guest's keyboard (i8042); Linux reboots.
    virtual void send_ctrl_alt_del() = 0;
    // The VM's counters (final ones once it has stopped); unset before a VM
    // exists. Called in any state.
    virtual std::optional<embed::Metrics> metrics() = 0;
    // Replaces the rate limit of the disk with that id (PATCH /drives), while
    // running or paused.
    virtual void set_rate_limit(const std::string& drive_id, const RateLimit& limit) = 0;
    // Replaces the receive and transmit rate limits (unset: kept) of the
    // network device with that id (PATCH /network-interfaces), while running
    // or paused.
    virtual void set_net_rate_limit(const std::string& iface_id, std::optional<RateLimit> rx,
                                    std::optional<RateLimit> tx) = 0;
};

} // namespace ember::api
