// The command line front end of ember-verify; main.cpp only wires it to stdio
// and signals, so the unit tests drive exactly what the guest runs.
#pragma once

#include <atomic>
#include <span>
#include <string>
#include <string_view>

#include "tools/ember-verify/console.h"

namespace ember::verify {

// Exit statuses.
inline constexpr int kExitPass = 0;
inline constexpr int kExitFail = 1;  // verification failed: data wrong or I/O errors
inline constexpr int kExitUsage = 2; // bad command line or unusable device: nothing verified

// The full usage text (also printed by "ember-verify help").
std::string_view usage_text();

// Runs one command; `args` excludes the program name. `stop` is raised by the
// caller's SIGINT/SIGTERM handler (may be null).
int run_cli(std::span<const std::string> args, Console& console,
            const std::atomic<bool>* stop = nullptr);

// Exposed for tests: "4096", "64K", "1M", "2GiB", "0x1000" -> bytes. Throws UsageError.
uint64_t parse_size(std::string_view text);

} // namespace ember::verify
