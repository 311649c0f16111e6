#include "vmm/raw_terminal.h"

#include <atomic>

namespace ember::raw_terminal {
namespace {
termios g_saved{};
std::atomic<int> g_fd{-1};
} // namespace

void remember(int fd, const termios& saved) noexcept {
    g_saved = saved;
    // Release: pairs with the exchange in restore_before_exit(), which reads
    // g_saved only after it sees the descriptor.
    g_fd.store(fd, std::memory_order_release);
}

void forget() noexcept {
    g_fd.store(-1, std::memory_order_relaxed);
}

void restore_before_exit() noexcept {
    // Acquire: pairs with the release in remember(). The exchange makes a
    // second blocked call (on another thread) restore nothing twice.
    const int fd = g_fd.exchange(-1, std::memory_order_acquire);
    if (fd >= 0) ::tcsetattr(fd, TCSANOW, &g_saved);
}

} // namespace ember::raw_terminal
