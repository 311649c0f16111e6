// The life cycle of a libember VM (include/ember/vm.h, State):
//
//   created --start--> running <--pause/resume--> paused
//   checkpoint: created, running, paused (the state stays)
//   Ctrl-Alt-Del: running
//   any --exit--> exited (final)
//
// after() says where an action leads, or throws ember::Error saying why it
// cannot be done now; the Vm sets the new state only once the action worked.
#pragma once

#include "ember/vm.h"

namespace ember::embed {

enum class Action { start, pause, resume, checkpoint, ctrl_alt_del };

class LifeCycle final {
  public:
    State state() const noexcept { return state_; }
    State after(Action action) const;
    // Moves to `next`; nothing leaves State::exited.
    void set(State next) noexcept;

  private:
    State state_{State::created};
};

} // namespace ember::embed
