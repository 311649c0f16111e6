// Finding this process's threads by name and the CPUs it may use, for tests
// and benchmarks that look at how ember placed its threads.
#pragma once

#include <dirent.h>
#include <sys/types.h>

#include <fstream>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "vmm/cpu_affinity.h"

namespace ember::testing {

// The id of the first thread of this process called `comm` (as
// pthread_setname_np set it), or -1.
inline pid_t find_thread(std::string_view comm) {
    DIR* dir = ::opendir("/proc/self/task");
    if (dir == nullptr) return -1;
    pid_t found = -1;
    while (const dirent* e = ::readdir(dir)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream in(fmt::format("/proc/self/task/{}/comm", e->d_name));
        std::string name;
        if (std::getline(in, name) && name == comm) {
            found = static_cast<pid_t>(std::stol(e->d_name));
            break;
        }
    }
    ::closedir(dir);
    return found;
}

// The lowest- and highest-numbered CPUs this process may run on.
inline uint32_t first_allowed_cpu() {
    const cpu_set_t allowed = ember_cpus();
    uint32_t cpu = 0;
    while (!CPU_ISSET(cpu, &allowed))
        ++cpu;
    return cpu;
}
inline uint32_t last_allowed_cpu() {
    const cpu_set_t allowed = ember_cpus();
    uint32_t cpu = CPU_SETSIZE - 1;
    while (!CPU_ISSET(cpu, &allowed))
        --cpu;
    return cpu;
}

} // namespace ember::testing
