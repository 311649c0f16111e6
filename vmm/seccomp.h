// The ember command's system-call filter (seccomp), as Firecracker installs
// one: once the command line is read, the process may make only the system
// calls a VMM needs. A guest that takes over the VMM through a device bug
// then still cannot start programs, open network sockets, signal other
// processes, trace them, load kernel modules or mount file systems.
//
// Only the ember command installs it (main.cpp); libember never does, since a
// filter binds the whole process that embeds it.
#pragma once

#include <string>
#include <vector>

#include "vmm/thread_confinement.h"

namespace ember::seccomp {

// Exit status after a blocked system call: Firecracker's (FC_EXIT_CODE_BAD_SYSCALL),
// so tools that watch either VMM read it the same way.
inline constexpr int kBlockedExitStatus = 148;

// Installs the filter on every thread of the process (threads started later
// inherit it). A system call outside it is not made: ember writes
// "ember: seccomp: system call NAME (NR) is not allowed ..." to stderr and to
// the log file, and exits with kBlockedExitStatus. Throws ember::Error when
// the kernel refuses the filter (no seccomp support).
void install();

// On a vcpu thread or a disk's I/O thread, the threads that serve the guest's
// accesses and parse its descriptors: a second filter on the calling thread
// only, on top of install()'s, that also stops what such a thread never does:
// opening or creating files or sockets, starting programs, renaming or
// removing files; on an I/O thread also starting threads or new io_uring
// instances or memfds. Throws ember::Error when the kernel refuses the filter.
// Filters stack: an I/O thread a vcpu started at DRIVER_OK runs under the
// vcpu's second filter and its own third.
void confine_thread(ConfinedThread kind);

// What confine_thread(kind) stops, for the README and the tests.
std::vector<std::string> denied_names(ConfinedThread kind);

// The names of the system calls the filter allows (some only with certain
// arguments: see seccomp.cpp), for the README and the tests.
std::vector<std::string> allowed_names();

} // namespace ember::seccomp
