// How legacy devices tell the VMM that the guest asked to stop.
#pragma once

#include <functional>

namespace ember {

enum class GuestEvent { poweroff, reboot, panic };

// Called from a vcpu thread; must be thread-safe and must not block.
using GuestEventSink = std::function<void(GuestEvent)>;

} // namespace ember
