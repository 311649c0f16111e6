// libember's VM life cycle (vmm/embed/life_cycle.h): every action from every
// state, allowed or refused with a message that says why.
#include <doctest/doctest.h>

#include <string>

#include "vmm/embed/life_cycle.h"

using namespace ember;
using namespace ember::embed;

namespace {

LifeCycle in(State s) {
    LifeCycle l;
    if (s == State::paused) l.set(State::running);
    l.set(s);
    return l;
}

std::string refusal(State s, Action a) {
    try {
        in(s).after(a);
    } catch (const Error& e) {
        return e.what();
    }
    return "allowed";
}

} // namespace

TEST_CASE("embed life cycle: the allowed edges") {
    CHECK(LifeCycle{}.state() == State::created);
    CHECK(in(State::created).after(Action::start) == State::running);
    CHECK(in(State::running).after(Action::pause) == State::paused);
    CHECK(in(State::paused).after(Action::resume) == State::running);
    CHECK(in(State::created).after(Action::checkpoint) == State::created);
    CHECK(in(State::running).after(Action::checkpoint) == State::running);
    CHECK(in(State::paused).after(Action::checkpoint) == State::paused);
    CHECK(in(State::running).after(Action::ctrl_alt_del) == State::running);
}

TEST_CASE("embed life cycle: wrong states are refused with the reason") {
    CHECK(refusal(State::running, Action::start) == "cannot start the VM: it is already running");
    CHECK(refusal(State::paused, Action::start) == "cannot start the VM: it is paused");
    CHECK(refusal(State::created, Action::pause) == "cannot pause the VM: it has not been started");
    CHECK(refusal(State::paused, Action::pause) == "cannot pause the VM: it is paused");
    CHECK(refusal(State::created, Action::resume) ==
          "cannot resume the VM: it has not been started");
    CHECK(refusal(State::running, Action::resume) == "cannot resume the VM: it is already running");
    CHECK(refusal(State::created, Action::ctrl_alt_del) ==
          "cannot send Ctrl-Alt-Del: it has not been started");
    CHECK(refusal(State::paused, Action::ctrl_alt_del) == "cannot send Ctrl-Alt-Del: it is paused");
    for (Action a :
         {Action::start, Action::pause, Action::resume, Action::checkpoint, Action::ctrl_alt_del})
        CHECK(refusal(State::exited, a).find("it has exited") != std::string::npos);
}

TEST_CASE("embed life cycle: exited is final") {
    LifeCycle l;
    l.set(State::running);
    l.set(State::exited);
    l.set(State::running);
    CHECK(l.state() == State::exited);
    CHECK(std::string(to_string(State::exited)) == "exited");
    CHECK(std::string(to_string(State::created)) == "created");
}
