#include "vmm/embed/life_cycle.h"

#include <fmt/format.h>

namespace ember::embed {
namespace {

const char* verb(Action a) noexcept {
    switch (a) {
    case Action::start:
        return "start the VM";
    case Action::pause:
        return "pause the VM";
    case Action::resume:
        return "resume the VM";
    case Action::checkpoint:
        return "checkpoint the VM";
    case Action::ctrl_alt_del:
        return "send Ctrl-Alt-Del";
    }
    return "do that";
}

const char* why_not(State s) noexcept {
    switch (s) {
    case State::created:
        return "it has not been started";
    case State::running:
        return "it is already running";
    case State::paused:
        return "it is paused";
    case State::exited:
        return "it has exited";
    }
    return "of its state";
}

} // namespace

const char* to_string(State state) noexcept {
    switch (state) {
    case State::created:
        return "created";
    case State::running:
        return "running";
    case State::paused:
        return "paused";
    case State::exited:
        return "exited";
    }
    return "unknown";
}

State LifeCycle::after(Action action) const {
    const State s = state_;
    switch (action) {
    case Action::start:
        if (s == State::created) return State::running;
        break;
    case Action::pause:
        if (s == State::running) return State::paused;
        break;
    case Action::resume:
        if (s == State::paused) return State::running;
        break;
    case Action::checkpoint:
        if (s != State::exited) return s;
        break;
    case Action::ctrl_alt_del:
        if (s == State::running) return s;
        break;
    }
    throw Error(fmt::format("cannot {}: {}", verb(action), why_not(s)));
}

void LifeCycle::set(State next) noexcept {
    if (state_ != State::exited) state_ = next;
}

} // namespace ember::embed
