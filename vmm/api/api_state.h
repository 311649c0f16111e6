// The life cycle of the VM behind the control socket, as Firecracker's API
// presents it: configure, start, pause and resume, until the guest stops.
//
//   not_started --InstanceStart--> running <--PATCH /vm--> paused
//   not_started --snapshot/load--> paused (or running with resume_vm)
//   running, paused --guest exit--> stopped
//
// Each request names what it needs (require_*); a request in the wrong state
// fails with an ApiError (400) that says what state the VM is in.
#pragma once

#include <string_view>

namespace ember::api {

enum class VmState { not_started, running, paused, stopped };

// Firecracker's InstanceInfo.state strings ("Not started", "Running",
// "Paused"); ember adds "Stopped" for a guest that has exited.
const char* to_string(VmState state) noexcept;

class ApiState final {
  public:
    VmState state() const noexcept { return state_; }

    // Each throws ApiError naming `action` and the current state.
    void require_not_started(std::string_view action) const;
    void require_running(std::string_view action) const;
    void require_paused(std::string_view action) const;
    void require_started(std::string_view action) const; // running or paused

    // Moves to `next`; throws ApiError for an edge not in the diagram above.
    void transition(VmState next);

    static bool allowed(VmState from, VmState to) noexcept;

  private:
    VmState state_{VmState::not_started};
};

} // namespace ember::api
