// The terminal the console put in raw mode, remembered where a path that
// exits without unwinding can reach it (the seccomp SIGSYS handler, a stop
// that timed out), which would otherwise leave the user's shell without echo
// or line editing.
#pragma once

#include <termios.h>

namespace ember::raw_terminal {

// After `fd` was switched to raw mode; `saved` is its mode before.
void remember(int fd, const termios& saved) noexcept;
// Before the console restores the mode itself.
void forget() noexcept;
// Puts the remembered mode back, once, on a path about to exit without
// unwinding. Async-signal-safe (tcsetattr is).
void restore_before_exit() noexcept;

} // namespace ember::raw_terminal
