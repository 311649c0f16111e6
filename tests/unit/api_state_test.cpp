// ApiState: the VM life cycle the control socket enforces.
#include <doctest/doctest.h>

#include <string>

#include "vmm/api/api_error.h"
#include "vmm/api/api_state.h"

using namespace ember::api;

namespace {
std::string message_of(auto&& f) {
    try {
        f();
    } catch (const ApiError& e) {
        CHECK(e.status() == 400);
        return e.what();
    }
    return "no error";
}
} // namespace

TEST_CASE("ApiState: Firecracker's state names") {
    CHECK(std::string(to_string(VmState::not_started)) == "Not started");
    CHECK(std::string(to_string(VmState::running)) == "Running");
    CHECK(std::string(to_string(VmState::paused)) == "Paused");
    CHECK(std::string(to_string(VmState::stopped)) == "Stopped");
}

TEST_CASE("ApiState: the allowed transitions, and only those") {
    using S = VmState;
    const S all[] = {S::not_started, S::running, S::paused, S::stopped};
    for (S from : all) {
        for (S to : all) {
            const bool expected = (from == S::not_started && to != S::not_started) ||
                                  (from == S::running && (to == S::paused || to == S::stopped)) ||
                                  (from == S::paused && (to == S::running || to == S::stopped));
            CAPTURE(to_string(from));
            CAPTURE(to_string(to));
            CHECK(ApiState::allowed(from, to) == expected);
        }
    }
}

TEST_CASE("ApiState: start, pause, resume, stop") {
    ApiState s;
    CHECK(s.state() == VmState::not_started);
    s.require_not_started("configure");
    s.transition(VmState::running);
    s.require_running("pause");
    s.require_started("snapshot");
    s.transition(VmState::paused);
    s.require_paused("resume");
    s.require_started("snapshot");
    s.transition(VmState::running);
    s.transition(VmState::stopped);
    CHECK(s.state() == VmState::stopped);
}

TEST_CASE("ApiState: wrong states are refused with a message naming the action and state") {
    ApiState s;
    CHECK(message_of([&] { s.require_running("pause the VM"); }) ==
          "cannot pause the VM: the VM has not been started (needs a running VM)");
    CHECK(message_of([&] {
              s.require_started("create a snapshot");
          }).find("has not been started") != std::string::npos);
    s.transition(VmState::running);
    CHECK(message_of([&] { s.require_not_started("start the VM"); }) ==
          "cannot start the VM: the VM is running (only allowed before InstanceStart)");
    CHECK(message_of([&] { s.require_paused("resume the VM"); }).find("is running") !=
          std::string::npos);
    CHECK(message_of([&] { s.transition(VmState::running); }) ==
          "the VM is running and cannot become Running");
    CHECK(s.state() == VmState::running); // a refused transition changes nothing
    s.transition(VmState::stopped);
    CHECK(message_of([&] { s.transition(VmState::running); }).find("has stopped") !=
          std::string::npos);
    CHECK(message_of([&] { s.require_started("create a snapshot"); }).find("has stopped") !=
          std::string::npos);
}
