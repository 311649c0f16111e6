#include "vmm/diagnostics.h"

#include <pthread.h>
#include <signal.h>

#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "vmm/log.h"

namespace ember::diagnostics {

namespace {
struct Source {
    uint64_t id;
    std::function<std::string()> describe;
};

// One lock for the list and for calling into it: unregistering waits for a
// dump in progress, so a source never runs after its owner is gone.
std::mutex& registry_mutex() {
    static std::mutex m;
    return m;
}
std::vector<Source>& registry() {
    static std::vector<Source> r;
    return r;
}
uint64_t next_id = 1; // under registry_mutex()

void unregister(uint64_t id) noexcept {
    if (id == 0) return;
    std::lock_guard lock(registry_mutex());
    auto& r = registry();
    std::erase_if(r, [id](const Source& s) { return s.id == id; });
}
} // namespace

Registration& Registration::operator=(Registration&& o) noexcept {
    if (this != &o) {
        unregister(id_);
        id_ = std::exchange(o.id_, 0);
    }
    return *this;
}

Registration::~Registration() {
    unregister(id_);
}

Registration add_source(std::function<std::string()> describe) {
    std::lock_guard lock(registry_mutex());
    const uint64_t id = next_id++;
    registry().push_back(Source{id, std::move(describe)});
    return Registration(id);
}

std::string describe_all() {
    std::lock_guard lock(registry_mutex());
    std::string out;
    for (const auto& s : registry()) {
        try {
            out += s.describe();
        } catch (const std::exception& e) {
            out += std::string("(state not available: ") + e.what() + ")";
        }
        if (!out.empty() && out.back() != '\n') out += '\n';
    }
    return out;
}

void serve_sigusr2() {
    static std::once_flag once;
    std::call_once(once, [] {
        std::thread([] {
            sigset_t set;
            sigemptyset(&set);
            sigaddset(&set, SIGUSR2);
            for (;;) {
                int sig = 0;
                if (::sigwait(&set, &sig) != 0) return;
                const auto text = describe_all();
                log::info("state dump (SIGUSR2):\n{}", text.empty() ? "(no VM)\n" : text);
            }
        }).detach();
    });
}

} // namespace ember::diagnostics
