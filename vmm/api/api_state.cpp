#include "vmm/api/api_state.h"

#include <fmt/format.h>

#include "vmm/api/api_error.h"

namespace ember::api {
namespace {

std::string describe(VmState state) {
    switch (state) {
    case VmState::not_started:
        return "has not been started";
    case VmState::running:
        return "is running";
    case VmState::paused:
        return "is paused";
    case VmState::stopped:
        return "has stopped";
    }
    return "is in an unknown state";
}

} // namespace

const char* to_string(VmState state) noexcept {
    switch (state) {
    case VmState::not_started:
        return "Not started";
    case VmState::running:
        return "Running";
    case VmState::paused:
        return "Paused";
    case VmState::stopped:
        return "Stopped";
    }
    return "Unknown";
}

void ApiState::require_not_started(std::string_view action) const {
    if (state_ != VmState::not_started)
        throw ApiError(fmt::format("cannot {}: the VM {} (only allowed before InstanceStart)",
                                   action, describe(state_)));
}

void ApiState::require_running(std::string_view action) const {
    if (state_ != VmState::running)
        throw ApiError(
            fmt::format("cannot {}: the VM {} (needs a running VM)", action, describe(state_)));
}

void ApiState::require_paused(std::string_view action) const {
    if (state_ != VmState::paused)
        throw ApiError(
            fmt::format("cannot {}: the VM {} (needs a paused VM)", action, describe(state_)));
}

void ApiState::require_started(std::string_view action) const {
    if (state_ != VmState::running && state_ != VmState::paused)
        throw ApiError(fmt::format("cannot {}: the VM {} (needs a running or paused VM)", action,
                                   describe(state_)));
}

bool ApiState::allowed(VmState from, VmState to) noexcept {
    switch (from) {
    case VmState::not_started:
        return to == VmState::running || to == VmState::paused || to == VmState::stopped;
    case VmState::running:
        return to == VmState::paused || to == VmState::stopped;
    case VmState::paused:
        return to == VmState::running || to == VmState::stopped;
    case VmState::stopped:
        return false;
    }
    return false;
}

void ApiState::transition(VmState next) {
    if (!allowed(state_, next))
        throw ApiError(
            fmt::format("the VM {} and cannot become {}", describe(state_), to_string(next)));
    state_ = next;
}

} // namespace ember::api
