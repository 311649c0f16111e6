// A hook the disks' I/O threads call on themselves before they touch the
// guest's rings: the ember command points it at a system-call filter for
// those threads (seccomp::confine_io_thread); libember leaves it unset, as it
// installs no filter in the program that embeds it.
//
// Process-wide on purpose: a filter binds threads, not VMs.
#pragma once

namespace ember {

// Throws to keep the thread from running (the device then asks for a reset).
using ThreadConfiner = void (*)();

// Set once, before any VM starts; nullptr unsets.
void set_io_thread_confiner(ThreadConfiner confiner) noexcept;

// On a disk I/O thread, first: calls the confiner, when one is set.
void confine_io_thread();

} // namespace ember
