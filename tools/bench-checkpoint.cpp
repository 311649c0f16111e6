// bench-checkpoint: how long a checkpoint pauses the guest's disk with
// requests in flight on a slow backend, ember's way (quiesce the I/O thread
// at its next park point, save the device state, host I/O keeps running)
// against drain-first (wait until every in-flight request completed, then
// save: what Firecracker does). Native: the software guest driver plays the
// guest, an engine with random latency plays a slow disk.
//
//   bench-checkpoint [--inflight 0,8,32] [--latency-ms 5,20] [--repeat 15]
//
// "pause" = from the checkpoint request until the device state is saved
// (quiesce + save_state; drain-first adds the wait for the in-flight I/O).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>


#include "devices/virtio/quiesce.h"
#include "tests/support/checkpoint_rig.h"
#include "tests/support/masking_cost.h"
#include "tests/support/options.h"

using namespace ember;
using namespace ember::testing;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

struct Options {
    std::vector<unsigned> inflight{0, 8, 32};
    unsigned min_ms{5}, max_ms{20};
    unsigned repeat{15};
};

constexpr const char* kUsage =
    "usage: bench-checkpoint [--inflight 0,8,32] [--latency-ms MIN,MAX] [--repeat N]\n";

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw UsageError("missing value for " + a);
            return argv[++i];
        };
        if (a == "--help" || a == "-h") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (a == "--inflight") {
            // 3 descriptors per request in a 256-entry queue.
            o.inflight = number_list_option(a, value(), 0, 80);
        } else if (a == "--latency-ms") {
            const auto v = number_list_option(a, value(), 0, 60000);
            if (v.size() != 2 || v[0] > v[1]) throw UsageError("--latency-ms takes MIN,MAX");
            o.min_ms = v[0];
            o.max_ms = v[1];
        } else if (a == "--repeat") {
            o.repeat = static_cast<unsigned>(number_option(a, value(), 1, 100000));
        } else {
            throw UsageError("unknown argument " + a);
        }
    }
    return o;
}

Options parse(int argc, char** argv) {
    try {
        return parse_options(argc, argv);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "bench-checkpoint: %s\n%s", e.what(), kUsage);
        std::exit(2);
    }
}

struct Sample {
    double pause_ms;
    uint32_t inflight; // what the saved state held
};

// One checkpoint of a device with `n` requests in flight.
Sample checkpoint_once(const Options& o, unsigned n, bool drain_first, uint64_t seed) {
    TempFile f(8 << 20, "bench-ckpt");
    auto mem = GuestMemory::flat(64 << 20);
    DeviceOptions dev;
    dev.engine = DelayEngine::factory(std::chrono::milliseconds(o.min_ms),
                                      std::chrono::milliseconds(o.max_ms), seed);
    auto t = make_block_transport(mem, f.path(), dev);
    GuestDriver d(mem, *t);
    d.init();
    std::vector<TrackedRequest> reqs;
    for (unsigned i = 0; i < n; ++i)
        reqs.push_back(submit_tracked(d, f, i % 2 == 0, 8 * i, 4096, i));
    d.kick();
    // Let the device pop them (well below the minimum latency).
    std::this_thread::sleep_for(1ms);

    const auto t0 = Clock::now();
    if (drain_first) {
        // Firecracker's order: the guest's disk stays paused until all I/O
        // already submitted has completed, then the state is saved.
        while (d.outstanding() > 0) {
            d.reap();
            if (d.outstanding() > 0) d.wait_interrupt(50ms);
        }
    }
    t->quiesce();
    const auto blob = t->save_state();
    const auto t1 = Clock::now();
    const uint32_t held = t->inflight_requests();
    t->unquiesce();
    // Continue: whatever was in flight completes normally.
    const auto deadline = Clock::now() + 10s;
    while (d.outstanding() > 0 && Clock::now() < deadline) {
        d.reap();
        if (d.outstanding() > 0) d.wait_interrupt(50ms);
    }
    if (d.outstanding() > 0) throw Error("requests did not complete after the checkpoint");
    (void)blob;
    return Sample{std::chrono::duration<double, std::milli>(t1 - t0).count(), held};
}

double percentile(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

} // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    try {
        std::printf("slow backend: %u-%u ms per request; %u checkpoints per cell; pause = "
                    "checkpoint request -> device state saved\n\n",
                    o.min_ms, o.max_ms, o.repeat);
        std::printf("%-9s | %-28s | %-28s\n", "", "ember (quiesce, no drain)", "drain-first");
        std::printf("%-9s | %8s %8s %10s | %8s %8s %10s\n", "in flight", "p50 ms", "max ms",
                    "held", "p50 ms", "max ms", "held");
        for (unsigned n : o.inflight) {
            std::vector<double> q, dr;
            uint64_t q_held = 0, d_held = 0;
            for (unsigned r = 0; r < o.repeat; ++r) {
                const auto a = checkpoint_once(o, n, false, 100 + r);
                const auto b = checkpoint_once(o, n, true, 100 + r);
                q.push_back(a.pause_ms);
                dr.push_back(b.pause_ms);
                q_held += a.inflight;
                d_held += b.inflight;
            }
            std::printf("%9u | %8.3f %8.3f %10.1f | %8.3f %8.3f %10.1f\n", n, percentile(q, 0.5),
                        percentile(q, 1.0), static_cast<double>(q_held) / o.repeat,
                        percentile(dr, 0.5), percentile(dr, 1.0),
                        static_cast<double>(d_held) / o.repeat);
            std::fflush(stdout);
        }
        std::printf("\n\"held\": requests in flight inside the saved state (average); they are "
                    "resubmitted on restore.\n");
        std::printf("\nCPU time of masking: a park point with no checkpoint pending %.1f ns "
                    "(one per handler and per started request); opening the mask when one is "
                    "pending (two pthread_sigmask calls, once per checkpoint) %.1f ns\n",
                    testing::park_point_cpu_ns(MaskingMode::sigmask), testing::mask_pair_cpu_ns());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-checkpoint: %s\n", e.what());
        return 1;
    }
    return 0;
}
