#include "vmm/cpu_affinity.h"

#include <unistd.h>

#include <fmt/format.h>

#include "vmm/errors.h"

namespace ember {

cpu_set_t process_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    // getpid(): the main thread's mask, not the caller's, which a benchmark
    // may have narrowed for itself.
    if (::sched_getaffinity(::getpid(), sizeof set, &set) != 0) throw_errno("sched_getaffinity");
    return set;
}

std::string cpu_list(const cpu_set_t& set) {
    std::string out;
    for (int c = 0; c < CPU_SETSIZE; ++c) {
        if (!CPU_ISSET(c, &set)) continue;
        int last = c;
        while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, &set))
            ++last;
        if (!out.empty()) out += ',';
        out += last == c ? std::to_string(c) : fmt::format("{}-{}", c, last);
        c = last;
    }
    return out.empty() ? "none" : out;
}

std::string thread_cpu_list(pid_t tid) {
    cpu_set_t set;
    if (tid <= 0 || ::sched_getaffinity(tid, sizeof set, &set) != 0) return "?";
    return cpu_list(set);
}

void pin_thread(pthread_t thread, unsigned cpu) {
    if (cpu >= CPU_SETSIZE)
        throw Error(fmt::format("CPU {} is beyond the {} CPUs a mask can name", cpu, CPU_SETSIZE));
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    // pthread_* return the error instead of setting errno.
    if (const int err = ::pthread_setaffinity_np(thread, sizeof one, &one); err != 0)
        throw SystemError(fmt::format("placing a thread on CPU {} (pthread_setaffinity_np)", cpu),
                          err);
}

} // namespace ember
