#include "vmm/thread_confinement.h"

#include <atomic>

namespace ember {
namespace {
std::atomic<ThreadConfiner> g_io_confiner{nullptr};
} // namespace

void set_io_thread_confiner(ThreadConfiner confiner) noexcept {
    // Release: pairs with the acquire in confine_io_thread(), on an I/O
    // thread that a vcpu thread started after this store.
    g_io_confiner.store(confiner, std::memory_order_release);
}

void confine_io_thread() {
    if (const auto f = g_io_confiner.load(std::memory_order_acquire)) f();
}

} // namespace ember
