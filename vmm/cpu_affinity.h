// Which host CPUs a thread may run on: the one place ember reads and sets CPU
// masks (a disk's iothread-cpu=, the benchmarks' reports).
#pragma once

#include <pthread.h>
#include <sched.h>
#include <sys/types.h>

#include <string>

namespace ember {

// The CPUs this process may run on: the main thread's mask, which every
// thread ember starts inherits unless it is placed elsewhere. Cgroup cpusets
// and a `taskset` around ember both show here. Throws SystemError.
cpu_set_t process_cpus();

// A mask in the kernel's list format ("0-3,6", as Cpus_allowed_list in
// /proc/PID/status); "none" when it is empty.
std::string cpu_list(const cpu_set_t& set);

// The CPUs thread `tid` may run on, in list format; "?" when it is gone.
std::string thread_cpu_list(pid_t tid);

// Restricts `thread` to `cpu`. Throws SystemError naming the CPU.
void pin_thread(pthread_t thread, unsigned cpu);

} // namespace ember
