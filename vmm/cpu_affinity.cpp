#include "vmm/cpu_affinity.h"

#include <unistd.h>

#include <fmt/format.h>

#include "vmm/errors.h"

namespace ember {

cpu_set_t ember_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) throw_errno("sched_getaffinity");
    return set;
}

namespace {
bool has_cpu(const cpu_set_t& set, uint32_t cpu) {
    return cpu < CPU_SETSIZE && CPU_ISSET(cpu, &set);
}
} // namespace

bool ember_may_use_cpu(uint32_t cpu) {
    return has_cpu(ember_cpus(), cpu);
}

void check_vcpu_cpus(const std::vector<uint32_t>& host_cpus, uint32_t vcpus) {
    if (host_cpus.empty()) return;
    if (host_cpus.size() != vcpus)
        throw Error(fmt::format("vcpu placement: {} host CPUs given for {} vcpus (one per vcpu, "
                                "in vcpu order)",
                                host_cpus.size(), vcpus));
    // One read of the mask for all vcpus (up to 254).
    const cpu_set_t allowed = ember_cpus();
    for (size_t i = 0; i < host_cpus.size(); ++i)
        if (!has_cpu(allowed, host_cpus[i]))
            throw Error(fmt::format("vcpu placement: vcpu {} on host CPU {}, which ember may not "
                                    "run on (allowed: {})",
                                    i, host_cpus[i], cpu_list(allowed)));
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

void allow_thread_cpus(pthread_t thread, const cpu_set_t& cpus) {
    if (const int err = ::pthread_setaffinity_np(thread, sizeof cpus, &cpus); err != 0)
        throw SystemError(
            fmt::format("letting a thread run on CPUs {} (pthread_setaffinity_np)", cpu_list(cpus)),
            err);
}

} // namespace ember
