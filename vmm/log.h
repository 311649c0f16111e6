// Minimal leveled logging to stderr (or where set_output() points), prefixed
// "ember: ". Thread-safe (one write per line).
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ember::log {

// `off` logs nothing, errors included (Firecracker's "Off").
enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

void set_level(Level level) noexcept;
// Firecracker's level names in any case (Error, Warning, Info, Debug,
// Trace, Off; Trace is debug, ember has nothing finer); empty otherwise.
std::optional<Level> parse_level(std::string_view name);
// Lines go to `fd`, the file `name`, from now on instead of stderr
// (--log-path, PUT /logger; STDERR_FILENO and "" go back). The log keeps
// `fd` open for the rest of the process: a thread may be writing a line to
// it at any moment. A write that fails (a full non-blocking pipe) drops the
// line; logging never blocks on it.
void set_output(int fd, std::string name);
// Where lines go now; async-signal-safe (the seccomp SIGSYS handler writes there).
int output_fd() noexcept;
// The file set_output() named; "" for stderr.
std::string output_name();
bool enabled(Level level) noexcept;
void write(Level level, std::string_view message) noexcept;

// For events a guest can cause at will (bad register accesses, failing
// requests, a reset loop): a line for each would let it flood the host's log
// and keep the thread that formats them busy. `nth` counts from 1; the first
// 10 are logged, then every 1000th, and each line says how many there were.
constexpr bool worth_logging(uint64_t nth) noexcept {
    return nth <= 10 || nth % 1000 == 0;
}

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(Level::debug)) write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(Level::info)) write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(Level::warn)) write(Level::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
    if (enabled(Level::error)) write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

} // namespace ember::log
