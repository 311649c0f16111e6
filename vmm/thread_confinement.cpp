#include "vmm/thread_confinement.h"

#include <atomic>

namespace ember {
namespace {
std::atomic<ThreadConfiner> g_confiner{nullptr};
} // namespace

void set_thread_confiner(ThreadConfiner confiner) noexcept {
    // Release: pairs with the acquire in confine_this_thread(), on a vcpu or
    // I/O thread started after this store.
    g_confiner.store(confiner, std::memory_order_release);
}

void confine_this_thread(ConfinedThread kind) {
    if (const auto f = g_confiner.load(std::memory_order_acquire)) f(kind);
}

} // namespace ember
