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

// On a disk's I/O thread, the thread that parses guest descriptors: a second
// filter on the calling thread only, on top of install()'s, that also stops
// what such a thread never does: opening or creating files, sockets, new
// threads or processes, new io_uring instances or memfds, renaming or
// removing files. Its descriptors are all opened before it starts. Throws
// ember::Error when the kernel refuses the filter.
void confine_io_thread();

// What confine_io_thread() stops, for the README and the tests.
std::vector<std::string> io_thread_denied_names();

// The names of the system calls the filter allows (some only with certain
// arguments: see seccomp.cpp), for the README and the tests.
std::vector<std::string> allowed_names();

} // namespace ember::seccomp
