// Which host CPUs a thread may run on: the one place ember reads and sets CPU
// masks (a disk's iothread-cpu=, --vcpu-cpus, the benchmarks' reports).
#pragma once

#include <pthread.h>
#include <sched.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ember {

// The CPUs ember may run on: the calling thread's mask. Every thread of a VM
// inherits the mask of the thread that builds it (the main thread of
// `ember`, which `taskset` or a cgroup cpuset narrows; with libember, the
// embedder's thread that creates the VM), so call this there. Throws
// SystemError.
cpu_set_t ember_cpus();

// Whether host CPU `cpu` is in ember_cpus().
bool ember_may_use_cpu(uint32_t cpu);

// Checks a vcpu placement: one host CPU per vcpu, in vcpu order, each one
// this process may run on. Throws Error naming the vcpu and the CPUs
// allowed.
void check_vcpu_cpus(const std::vector<uint32_t>& host_cpus, uint32_t vcpus);

// A mask in the kernel's list format ("0-3,6", as Cpus_allowed_list in
// /proc/PID/status); "none" when it is empty.
std::string cpu_list(const cpu_set_t& set);

// The CPUs thread `tid` may run on, in list format; "?" when it is gone.
std::string thread_cpu_list(pid_t tid);

// Restricts `thread` to `cpu`. Throws SystemError naming the CPU.
void pin_thread(pthread_t thread, unsigned cpu);
// Lets `thread` run on every CPU in `cpus`. Throws SystemError.
void allow_thread_cpus(pthread_t thread, const cpu_set_t& cpus);

} // namespace ember
