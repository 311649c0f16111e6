// A hook the threads most exposed to the guest call on themselves before they
// touch anything the guest controls: the ember command points it at a
// system-call filter for those threads (seccomp::confine_thread); libember
// leaves it unset, as it installs no filter in the program that embeds it.
//
// Process-wide on purpose: a filter binds threads, not VMs.
#pragma once

#include <cstdint>

namespace ember {

enum class ConfinedThread : uint8_t {
    vcpu,    // takes the guest's port and MMIO exits
    disk_io, // parses the guest's descriptors
    net_io,  // parses the guest's descriptors, moves frames to and from a tap
};

// Throws to keep the thread from running (a vcpu then reports an error and
// the VM stops; a disk asks for a reset).
using ThreadConfiner = void (*)(ConfinedThread);

// Set once, before any VM starts; nullptr unsets.
void set_thread_confiner(ThreadConfiner confiner) noexcept;

// First thing on a vcpu or disk I/O thread: calls the confiner, when one is set.
void confine_this_thread(ConfinedThread kind);

} // namespace ember
