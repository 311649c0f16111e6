// CPU time of the I/O thread's masking (quiesce.h), measured on the calling
// thread: thread CPU time, so it does not depend on what else the machine
// runs, unlike IOPS on a shared VM. Used by bench-blk and bench-checkpoint.
#pragma once

#include <signal.h>
#include <time.h>

#include <cstdint>

#include "devices/virtio/quiesce.h"

namespace ember::testing {

inline double thread_cpu_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// One park point with no checkpoint pending: what masking costs the I/O
// thread per handler and per started request.
inline double park_point_cpu_ns(MaskingMode mode, int rounds = 2000000) {
    QuiescePoint point(mode);
    const double t0 = thread_cpu_ns();
    for (int i = 0; i < rounds; ++i) {
        point.park_point();
        asm volatile("" ::: "memory"); // keep the loop and the load in it
    }
    return (thread_cpu_ns() - t0) / rounds;
}

// Opening and closing the mask (two pthread_sigmask calls): what a park
// point costs once per checkpoint, and what every completion batch would
// cost if the thread blocked the signal around each batch instead.
inline double mask_pair_cpu_ns(int rounds = 200000) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, quiesce_signal());
    sigset_t old;
    const double t0 = thread_cpu_ns();
    for (int i = 0; i < rounds; ++i) {
        ::pthread_sigmask(SIG_BLOCK, &set, &old);
        ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    }
    return (thread_cpu_ns() - t0) / rounds;
}

} // namespace ember::testing
