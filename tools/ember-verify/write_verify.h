// The guest-side workload: write the deterministic sequence (write_sequence.h)
// to a device or file, flush periodically, read everything back and check each
// block against the generation it must hold. See cli.cpp for the usage text and
// the exact output lines.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "tools/ember-verify/console.h"

namespace ember::verify {

struct WriteVerifyOptions {
    std::string device;
    uint64_t size{0}; // bytes, multiple of 4096; 0 = the whole device or file
    bool create{false};
    bool direct{false};
    uint64_t seed{0};
    uint64_t passes{3};        // passes mode: write passes before the read-back
    unsigned queue_depth{1};
    uint64_t flush_every{256}; // writes between fdatasyncs (also at each pass end)
    bool log_flushes{false};
    bool continuous{false};    // cycles of (pass, flush, read-verify) until a stop condition
    double duration_seconds{0}; // continuous: stop after this long (0 = no limit)
    uint64_t cycles{0};        // continuous: stop after this many cycles (0 = no limit)
    // Set asynchronously (SIGINT/SIGTERM): stop writing at the next batch
    // boundary, flush, verify what was written and print the result.
    const std::atomic<bool>* stop{nullptr};
};

// Runs the workload; returns 0 (VERIFY PASS) or 1 (VERIFY FAIL). Throws
// SetupError when the device cannot be used (nothing is written then).
int run_write_verify(const WriteVerifyOptions& options, Console& console);

} // namespace ember::verify
