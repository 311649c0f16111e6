// ember-verify: the in-guest I/O verifier. See cli.cpp for usage and output.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "tools/ember-verify/cli.h"

namespace {

// Raised by SIGINT/SIGTERM: the run stops issuing writes, verifies what it wrote
// and prints its result. A lock-free atomic store is async-signal-safe.
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_stop_signal(int) { g_stop.store(true, std::memory_order_relaxed); }

// Line-at-a-time output: the host harness reads the serial console and may stop
// the VM right after a line appears, so nothing may linger in a buffer.
class StdioConsole final : public ember::verify::Console {
public:
    void line(std::string_view text) override {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fputc('\n', stdout);
        std::fflush(stdout);
    }
    void error(std::string_view text) override {
        std::fwrite(text.data(), 1, text.size(), stderr);
        std::fputc('\n', stderr);
        std::fflush(stderr);
    }
};

} // namespace

int main(int argc, char** argv) {
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    // No SA_RESTART needed: the I/O loops retry EINTR themselves. SA_RESETHAND:
    // a second signal takes the default action, so a stuck run can still be killed.
    action.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);

    const std::vector<std::string> args(argv + 1, argv + argc);
    StdioConsole console;
    return ember::verify::run_cli(args, console, &g_stop);
}
