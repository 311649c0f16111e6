// CPU time of one masked section (quiesce.h) per masking mode, measured on
// the calling thread: thread CPU time, so it does not depend on what else the
// machine runs, unlike IOPS on a shared VM. Used by bench-blk and
// bench-checkpoint.
#pragma once

#include <time.h>

#include <cstdint>

#include "devices/virtio/quiesce.h"

namespace ember::testing {

inline double masked_section_cpu_ns(MaskingMode mode, int rounds = 200000) {
    QuiescePoint point(mode);
    auto cpu_ns = [] {
        timespec ts{};
        ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
    };
    volatile uint64_t sink = 0;
    const double t0 = cpu_ns();
    for (int i = 0; i < rounds; ++i) {
        MaskedSection masked(point);
        sink = sink + 1;
    }
    return (cpu_ns() - t0) / rounds;
}

} // namespace ember::testing
