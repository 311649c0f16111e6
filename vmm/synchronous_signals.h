// Signals a thread that blocks "everything" must still take: the ones the
// kernel raises for what the thread itself did. Blocked, they are not held
// back: the kernel kills the whole process with a core dump instead (for
// SIGSYS, that bypasses the seccomp handler's message and exit status 148,
// and dumping a process with guest RAM mapped can take minutes).
#pragma once

#include <signal.h>

namespace ember {

inline void remove_synchronous_signals(sigset_t& set) noexcept {
    for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGSYS})
        sigdelset(&set, s);
}

} // namespace ember
