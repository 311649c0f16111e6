#include "vmm/log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <mutex>
#include <string>

namespace ember::log {
namespace {
std::atomic<Level> g_level{Level::info};
std::atomic<int> g_fd{STDERR_FILENO};
std::mutex g_name_mu; // guards g_name, which only set_output() and output_name() touch
std::string g_name;
} // namespace

void set_level(Level level) noexcept { g_level.store(level, std::memory_order_relaxed); }

std::optional<Level> parse_level(std::string_view name) {
    std::string l(name);
    std::transform(l.begin(), l.end(), l.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (l == "error") return Level::error;
    if (l == "warning" || l == "warn") return Level::warn;
    if (l == "info") return Level::info;
    if (l == "debug" || l == "trace") return Level::debug;
    if (l == "off") return Level::off;
    return std::nullopt;
}
void set_output(int fd, std::string name) {
    std::lock_guard lock(g_name_mu);
    g_name = std::move(name);
    g_fd.store(fd, std::memory_order_relaxed);
}

int output_fd() noexcept {
    return g_fd.load(std::memory_order_relaxed);
}

std::string output_name() {
    std::lock_guard lock(g_name_mu);
    return g_name;
}
bool enabled(Level level) noexcept { return level >= g_level.load(std::memory_order_relaxed); }

void write(Level level, std::string_view message) noexcept {
    static constexpr std::string_view prefix[] = {
        "ember: debug: ", "ember: ", "ember: warning: ", "ember: error: ", "ember: "};
    std::string line;
    line.reserve(message.size() + 24);
    line.append(prefix[static_cast<int>(level)]).append(message).push_back('\n');
    // One write(2) per line so lines from several threads never interleave.
    [[maybe_unused]] auto n =
        ::write(g_fd.load(std::memory_order_relaxed), line.data(), line.size());
}

} // namespace ember::log
