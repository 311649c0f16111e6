// crash-native: the native level of the crash-injection suite (DESIGN.md
// "Fault points and crash injection", issue 5).
//
// For every block fault point (and random-instant restarts) it runs a
// verifying workload through the software guest driver against a virtio-blk
// device, fires a restart-io fault at a varied hit number, lets the I/O
// supervisor restart the I/O thread from guest memory and the in-flight
// region alone, and checks with exact accounting:
//   duplicated  a head came back that was not outstanding (twice, or unknown)
//   lost        a request the device forgot (outstanding at the end, neither
//               in flight in the region nor still in the avail ring beyond
//               what the device consumed), one that completed with an error
//               or wrong data, or a completed write missing on disk
//   hung        a request the device still holds (in flight, or not yet
//               taken from the avail ring) when the queue made no progress
//               for --hang-ms
// A run passes when all three are zero.
//
//   crash-native [--runs N] [--csv FILE] [--points blk.popped,...,random]
//                [--negative skip-resubmit|clear-before-publish]
//                [--engine mix|delay|sync|uring] [--requests N] [--qd N]
//                [--hang-ms MS] [--random-period MS] [--seed S] [--verbose]
//
// Exit status: 0 every run passed, 1 some run lost, duplicated or hung
// requests, 2 bad usage, 3 the suite itself failed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "devices/virtio/quiesce.h"
#include "tests/support/checkpoint_rig.h"
#include "tests/support/options.h"
#include "vmm/fault/fault_points.h"
#include "vmm/fault/io_supervisor.h"
#include "vmm/log.h"

using namespace ember;
using namespace ember::testing;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kBlock = 4096;
constexpr uint32_t kDiskBlocks = 1024; // 4 MiB
constexpr uint32_t kMaxBlocksPerRequest = 4;
constexpr uint32_t kMaxAfter = 48;      // the fault fires at a hit in [1, kMaxAfter]
constexpr uint32_t kExtraRequests = 4000; // keep going until the fault fired

using testing::UsageError;

struct Options {
    uint32_t runs{20};
    std::string csv;
    std::vector<std::string> points;
    fault::NegativeControl negative{fault::NegativeControl::none};
    std::string engine{"mix"};
    uint32_t requests{160};
    uint32_t qd{32};
    uint32_t hang_ms{1000};
    // Random restarts: mean interval. Restarts faster than one recovery round
    // (resubmit + publish) can finish starve the queue by construction: a
    // backend that crashes faster than it recovers never makes progress.
    uint32_t random_period_ms{5};
    uint64_t seed{1};
    bool verbose{false};
};

constexpr const char* kUsage =
    "usage: crash-native [--runs N] [--csv FILE] [--points P,...] "
    "[--negative skip-resubmit|clear-before-publish] [--engine mix|delay|sync|uring] "
    "[--requests N] [--qd N] [--hang-ms MS] [--random-period MS] [--seed S] [--verbose]\n";

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw UsageError(fmt::format("{} needs a value", a));
            return argv[++i];
        };
        if (a == "--runs")
            o.runs = static_cast<uint32_t>(testing::number_option(a, value(), 1, 100000));
        else if (a == "--csv") o.csv = value();
        else if (a == "--points") o.points = testing::split_list(value());
        else if (a == "--negative") {
            const auto v = value();
            if (v == "skip-resubmit") o.negative = fault::NegativeControl::skip_resubmit;
            else if (v == "clear-before-publish")
                o.negative = fault::NegativeControl::clear_before_publish;
            else
                throw UsageError(fmt::format(
                    "--negative {}: use skip-resubmit or clear-before-publish", v));
        } else if (a == "--engine") {
            o.engine = value();
            if (o.engine != "mix" && o.engine != "delay" && o.engine != "sync" &&
                o.engine != "uring")
                throw UsageError(fmt::format("--engine {}: use mix, delay, sync or uring", o.engine));
        } else if (a == "--requests")
            o.requests = static_cast<uint32_t>(testing::number_option(a, value(), 1, 100000));
        else if (a == "--qd")
            o.qd = static_cast<uint32_t>(testing::number_option(a, value(), 1, 64));
        else if (a == "--hang-ms")
            o.hang_ms = static_cast<uint32_t>(testing::number_option(a, value(), 10, 600000));
        else if (a == "--random-period")
            o.random_period_ms =
                static_cast<uint32_t>(testing::number_option(a, value(), 1, 60000));
        else if (a == "--seed")
            o.seed = testing::number_option(a, value(), 0, UINT64_MAX);
        else if (a == "--verbose" || a == "-v") o.verbose = true;
        else if (a == "--help" || a == "-h") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else
            throw UsageError(fmt::format("unknown argument {}", a));
    }
    if (o.points.empty()) {
        for (const auto& p : fault::all_points())
            if (p.io_thread()) o.points.emplace_back(p.name);
        o.points.emplace_back("random");
    }
    for (const auto& p : o.points) {
        if (p == "random") continue;
        const auto pt = fault::find_point(p);
        if (!pt || !fault::info(*pt).io_thread())
            throw UsageError(fmt::format("--points {}: not a block fault point (see ember "
                                         "--list-faults) or random",
                                         p));
    }
    return o;
}

struct RunResult {
    bool fired{false};
    uint32_t restarts{0};
    uint32_t inflight{0};
    uint32_t resubmitted{0};
    uint32_t completed{0};
    uint32_t lost{0};
    uint32_t duplicated{0};
    uint32_t hung{0};
    uint32_t requests{0}; // completed and verified
    std::string engine;
    uint64_t after{0};
    std::vector<std::string> notes;
};

// One request slot of the workload: its guest buffers are reused once the
// request came back.
struct Slot {
    GuestAddress header{};
    GuestAddress data{};
    GuestAddress status{};
    bool busy{false};
    uint16_t head{0};
    uint32_t type{0};
    uint32_t first{0}; // first 4 KiB block
    uint32_t blocks{0};
    std::vector<uint32_t> seeds; // write: the seed of each block's new contents
};

std::vector<uint8_t> block_contents(uint32_t block, uint32_t seed) {
    return pattern(block, kBlock, seed);
}

class Workload final {
  public:
    Workload(const Options& o, std::mt19937_64& rng, std::optional<fault::Point> point,
             uint32_t run)
        : o_(o), rng_(rng), point_(point), file_(uint64_t{kDiskBlocks} * kBlock, "crash"),
          mem_(GuestMemory::flat(64 << 20)) {
        // Initial contents: every block distinct, seed = 1.
        std::vector<uint8_t> all;
        all.reserve(uint64_t{kDiskBlocks} * kBlock);
        for (uint32_t b = 0; b < kDiskBlocks; ++b) {
            const auto c = block_contents(b, 1);
            all.insert(all.end(), c.begin(), c.end());
        }
        file_.write(0, all);
        seed_.assign(kDiskBlocks, 1);
        next_seed_ = 2;
        block_busy_.assign(kDiskBlocks, 0);

        DeviceOptions dev;
        dev.masking = MaskingMode::sigmask; // what ember uses
        const std::string engine =
            o.engine != "mix" ? o.engine
                              : std::array<const char*, 4>{"delay", "delay", "sync", "uring"}[run % 4];
        result_.engine = engine;
        if (engine == "delay")
            dev.engine = DelayEngine::factory(50us, 3ms, rng_());
        else
            dev.spec_suffix = engine == "sync" ? ",engine=sync" : ",engine=uring";
        transport_ = make_block_transport(mem_, file_.path(), dev);
        VirtioMmioTransport* devices[] = {transport_.get()};
        IoSupervisor::Options so;
        so.seed = rng_();
        if (!point_) so.random_period_ms = o.random_period_ms;
        supervisor_ = std::make_unique<IoSupervisor>(devices, so);
        driver_ = std::make_unique<GuestDriver>(mem_, *transport_);
        driver_->init();
        slots_.resize(o.qd);
        for (auto& s : slots_) {
            s.header = driver_->alloc(16);
            s.data = driver_->alloc(uint64_t{kMaxBlocksPerRequest} * kBlock, kBlock);
            s.status = driver_->alloc(1);
        }
    }

    ~Workload() {
        supervisor_->stop();
        transport_->shutdown();
    }

    RunResult run() {
        const uint64_t fired_before = point_ ? fault::fired(*point_) : 0;
        if (point_) {
            result_.after = std::uniform_int_distribution<uint64_t>(1, kMaxAfter)(rng_);
            fault::arm({false, *point_, result_.after, fault::Action::restart_io, 0});
        }
        uint32_t issued = 0;
        auto last_progress = Clock::now();
        bool stop = false;
        while (!stop) {
            auto fired = [&] {
                return point_ ? fault::fired(*point_) > fired_before
                              : !supervisor_->restarts().empty();
            };
            const bool want_more =
                issued < o_.requests || (!fired() && issued < o_.requests + kExtraRequests);
            bool submitted = false;
            while (want_more && issue()) {
                ++issued;
                submitted = true;
                // Kick in small, random groups: several submissions and batches.
                if (rng_() % 4 == 0) driver_->kick();
            }
            if (submitted) driver_->kick();
            if (outstanding_ == 0 && !want_more) break;
            driver_->wait_interrupt(5ms);
            const auto n = reap();
            if (!n) break; // duplicates: the driver state is no longer usable
            if (*n > 0) last_progress = Clock::now();
            else if (outstanding_ > 0 &&
                     Clock::now() - last_progress > std::chrono::milliseconds(o_.hang_ms))
                stop = true;
        }
        if (point_) fault::disarm(*point_);
        result_.fired = point_ ? fault::fired(*point_) > fired_before : true;
        // The restart runs on the supervisor thread: wait for its record.
        if (point_ && result_.fired && !supervisor_->wait_restarts(1, 5s))
            result_.notes.push_back("the fault fired but the I/O thread was never restarted");
        supervisor_->stop();
        for (const auto& r : supervisor_->restarts()) {
            ++result_.restarts;
            result_.inflight += r.recovery.inflight;
            result_.resubmitted += r.recovery.resubmitted;
            result_.completed += r.recovery.completed;
            if (!r.ok) result_.notes.push_back("restart_io failed");
        }
        if (!point_ && result_.restarts == 0) result_.notes.push_back("no random restart happened");
        classify_outstanding();
        verify_disk();
        return result_;
    }

  private:
    // Starts one request in a free slot; false when none is free.
    bool issue() {
        auto it = std::find_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.busy; });
        if (it == slots_.end()) return false;
        Slot& s = *it;
        const uint32_t kind = static_cast<uint32_t>(rng_() % 20);
        s.type = kind < 9 ? virtio::blk::kTypeOut : kind < 18 ? virtio::blk::kTypeIn
                                                              : virtio::blk::kTypeFlush;
        s.blocks = 0;
        s.seeds.clear();
        if (s.type != virtio::blk::kTypeFlush) {
            // Mostly single blocks; never a block another request is using,
            // so every read has exactly one right answer.
            const uint32_t want = rng_() % 4 == 0 ? 1 + static_cast<uint32_t>(rng_() % kMaxBlocksPerRequest) : 1;
            for (int attempt = 0; attempt < 16 && s.blocks == 0; ++attempt) {
                const uint32_t first = static_cast<uint32_t>(rng_() % (kDiskBlocks - want + 1));
                bool free = true;
                for (uint32_t b = first; b < first + want; ++b)
                    free = free && block_busy_[b] == 0;
                if (free) {
                    s.first = first;
                    s.blocks = want;
                }
            }
            if (s.blocks == 0) s.type = virtio::blk::kTypeFlush;
        }
        const uint32_t len = s.blocks * kBlock;
        mem_.write(s.header, virtio::blk::RequestHeader{s.type, 0, uint64_t{s.first} * (kBlock / 512)});
        mem_.write<uint8_t>(s.status, 0xee);
        for (uint32_t b = 0; b < s.blocks; ++b) {
            ++block_busy_[s.first + b];
            const GuestAddress at{s.data.value + uint64_t{b} * kBlock};
            if (s.type == virtio::blk::kTypeOut) {
                s.seeds.push_back(next_seed_++);
                mem_.write_bytes(at, block_contents(s.first + b, s.seeds.back()));
            } else {
                std::vector<uint8_t> junk(kBlock, 0x5a);
                mem_.write_bytes(at, junk);
            }
        }
        auto c = driver_->chain().readable(s.header, 16);
        if (len > 0) {
            // Sometimes two data descriptors, sometimes an indirect table.
            const bool writable = s.type == virtio::blk::kTypeIn;
            const uint32_t cut = len > kBlock && rng_() % 2 == 0 ? kBlock : len;
            auto add = [&](GuestAddress a, uint32_t n) {
                if (writable) c.writable(a, n);
                else c.readable(a, n);
            };
            add(s.data, cut);
            if (cut < len) add(GuestAddress{s.data.value + cut}, len - cut);
        }
        c.writable(s.status, 1).indirect(rng_() % 3 == 0);
        s.head = driver_->submit(c.build());
        s.busy = true;
        slot_of_head_[s.head] = static_cast<size_t>(it - slots_.begin());
        ++outstanding_;
        return true;
    }

    // Takes the new used elements. Returns how many, or nullopt after a
    // duplicate or unknown head (counted; the run ends there).
    std::optional<size_t> reap() {
        // Look before the driver does: GuestDriver throws at the first bad
        // element and would leave it in place.
        const uint16_t used = driver_->used_idx();
        const auto& q = driver_->queue();
        std::vector<uint8_t> seen(q.size, 0);
        for (uint16_t i = last_used_; i != used; ++i) {
            const auto e = mem_.read<virtio::VirtqUsedElem>(
                GuestAddress{q.used_ring.value + 4 + 8ull * (i & (q.size - 1))});
            if (e.id >= q.size || seen[e.id] != 0 || slot_of_head_.count(static_cast<uint16_t>(e.id)) == 0) {
                ++result_.duplicated;
                result_.notes.push_back(fmt::format("head {} came back at used index {} but was not "
                                                    "outstanding",
                                                    e.id, i));
                return std::nullopt;
            }
            seen[e.id] = 1;
        }
        std::vector<virtio::VirtqUsedElem> elems;
        try {
            elems = driver_->reap();
        } catch (const DriverError& e) {
            ++result_.duplicated;
            result_.notes.push_back(e.what());
            return std::nullopt;
        }
        last_used_ = static_cast<uint16_t>(last_used_ + elems.size());
        for (const auto& e : elems)
            complete(static_cast<uint16_t>(e.id), e.len);
        return elems.size();
    }

    void complete(uint16_t head, uint32_t used_len) {
        const auto it = slot_of_head_.find(head);
        Slot& s = slots_[it->second];
        slot_of_head_.erase(it);
        --outstanding_;
        s.busy = false;
        const uint8_t status = mem_.read<uint8_t>(s.status);
        const uint32_t len = s.blocks * kBlock;
        const uint32_t want_len = s.type == virtio::blk::kTypeIn ? len + 1 : 1;
        bool ok = status == virtio::blk::kStatusOk && used_len == want_len;
        if (!ok)
            result_.notes.push_back(fmt::format("head {}: status {} used len {} (want 0, {})",
                                                head, status, used_len, want_len));
        for (uint32_t b = 0; b < s.blocks; ++b) {
            const uint32_t block = s.first + b;
            --block_busy_[block];
            if (s.type == virtio::blk::kTypeOut) {
                if (ok) seed_[block] = s.seeds[b];
                else unknown_.push_back(block); // may or may not have reached the disk
            } else if (ok) {
                std::vector<uint8_t> got(kBlock);
                mem_.read_bytes(GuestAddress{s.data.value + uint64_t{b} * kBlock}, got);
                if (got != block_contents(block, seed_[block])) {
                    ok = false;
                    result_.notes.push_back(fmt::format("head {}: read of block {} returned wrong "
                                                        "data",
                                                        head, block));
                }
            }
        }
        if (ok) ++result_.requests;
        else ++result_.lost;
    }

    // What is still outstanding: hung if the device still holds it in flight,
    // lost if it forgot it.
    void classify_outstanding() {
        if (outstanding_ == 0) return;
        bool quiesced = false;
        try {
            transport_->quiesce();
            quiesced = true;
        } catch (const std::exception& e) {
            result_.notes.push_back(fmt::format("quiesce for the final accounting: {}", e.what()));
        }
        const InflightRegion* region = transport_->inflight_region(0);
        // Heads the device has not taken from the avail ring yet are held
        // too: consumed = used_idx + in flight (DESIGN.md "Recover").
        std::vector<uint8_t> pending(driver_->queue().size, 0);
        if (region != nullptr) {
            const auto& q = driver_->queue();
            const uint16_t consumed =
                static_cast<uint16_t>(region->header().used_idx + region->count_inflight());
            const uint16_t avail = mem_.load_acquire<uint16_t>(GuestAddress{q.avail_ring.value + 2});
            for (uint16_t i = consumed; i != avail; ++i) {
                const uint16_t h = mem_.read<uint16_t>(
                    GuestAddress{q.avail_ring.value + 4 + 2ull * (i & (q.size - 1))});
                if (h < q.size) pending[h] = 1;
            }
        }
        for (const auto& [head, slot] : slot_of_head_) {
            const bool held =
                region != nullptr && (region->inflight(head) != 0 || pending[head] != 0);
            ++(held ? result_.hung : result_.lost);
            result_.notes.push_back(fmt::format("head {} never came back ({})", head,
                                                held ? "still held by the device: hung"
                                                     : "forgotten by the device: lost"));
            const Slot& s = slots_[slot];
            if (s.type == virtio::blk::kTypeOut)
                for (uint32_t b = 0; b < s.blocks; ++b)
                    unknown_.push_back(s.first + b);
        }
        if (quiesced) transport_->unquiesce();
    }

    // Every write the guest saw completed is on the disk, and nothing else
    // changed it.
    void verify_disk() {
        transport_->shutdown(); // no host I/O in flight any more
        std::vector<uint8_t> unknown(kDiskBlocks, 0);
        for (uint32_t b : unknown_)
            unknown[b] = 1;
        const auto all = file_.contents(0, uint64_t{kDiskBlocks} * kBlock);
        for (uint32_t b = 0; b < kDiskBlocks; ++b) {
            if (unknown[b] != 0) continue;
            const auto want = block_contents(b, seed_[b]);
            if (std::memcmp(all.data() + uint64_t{b} * kBlock, want.data(), kBlock) != 0) {
                ++result_.lost;
                result_.notes.push_back(fmt::format("block {} on disk is not the last completed "
                                                    "write",
                                                    b));
            }
        }
    }

    const Options& o_;
    std::mt19937_64& rng_;
    std::optional<fault::Point> point_;
    TempFile file_;
    GuestMemory mem_;
    std::unique_ptr<VirtioMmioTransport> transport_;
    std::unique_ptr<IoSupervisor> supervisor_;
    std::unique_ptr<GuestDriver> driver_;
    std::vector<Slot> slots_;
    std::map<uint16_t, size_t> slot_of_head_;
    size_t outstanding_{0};
    uint16_t last_used_{0};
    std::vector<uint32_t> seed_;       // per block: seed of what must be on disk
    std::vector<uint32_t> block_busy_; // per block: requests using it
    std::vector<uint32_t> unknown_;    // blocks whose contents are not determined
    uint32_t next_seed_{2};
    RunResult result_;
};

struct Row {
    std::string point;
    uint32_t runs{0};
    uint64_t inflight{0};
    uint64_t resubmitted{0};
    uint64_t lost{0};
    uint64_t duplicated{0};
    uint64_t hung{0};
    uint64_t requests{0};
    uint32_t not_fired{0};
    bool pass() const { return lost == 0 && duplicated == 0 && hung == 0 && not_fired == 0; }
};

std::string_view negative_name(fault::NegativeControl c) {
    switch (c) {
    case fault::NegativeControl::none:
        return "none";
    case fault::NegativeControl::skip_resubmit:
        return "skip-resubmit";
    case fault::NegativeControl::clear_before_publish:
        return "clear-before-publish";
    }
    return "?";
}

} // namespace

int main(int argc, char** argv) {
    Options o;
    try {
        o = parse(argc, argv);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "crash-native: %s\n%s", e.what(), kUsage);
        return 2;
    }
    // The restart log lines (one per run) only with --verbose.
    if (!o.verbose) log::set_level(log::Level::error);
    fault::set_negative_control(o.negative);
    std::mt19937_64 rng(o.seed);
    std::vector<Row> rows;
    const auto t0 = Clock::now();
    try {
        for (const auto& name : o.points) {
            Row row;
            row.point = name;
            const auto point = name == "random" ? std::nullopt : fault::find_point(name);
            for (uint32_t run = 0; run < o.runs; ++run) {
                Workload w(o, rng, point, run);
                const RunResult r = w.run();
                ++row.runs;
                row.inflight += r.inflight;
                row.resubmitted += r.resubmitted;
                row.lost += r.lost;
                row.duplicated += r.duplicated;
                row.hung += r.hung;
                row.requests += r.requests;
                if (!r.fired || r.restarts == 0) ++row.not_fired;
                const bool bad = r.lost + r.duplicated + r.hung > 0 || !r.fired || r.restarts == 0;
                if (o.verbose || bad) {
                    std::fprintf(stderr,
                                 "crash-native: %s run %u (%s engine, after=%llu): %s, %u restarts, "
                                 "%u in flight, %u completed, %u resubmitted, %u verified, lost %u, "
                                 "duplicated %u, hung %u\n",
                                 name.c_str(), run, r.engine.c_str(),
                                 static_cast<unsigned long long>(r.after),
                                 r.fired ? "fired" : "NOT FIRED", r.restarts, r.inflight,
                                 r.completed, r.resubmitted, r.requests, r.lost, r.duplicated,
                                 r.hung);
                    const size_t shown = std::min<size_t>(r.notes.size(), 5);
                    for (size_t i = 0; i < shown; ++i)
                        std::fprintf(stderr, "    %s\n", r.notes[i].c_str());
                    if (r.notes.size() > shown)
                        std::fprintf(stderr, "    ... %zu more\n", r.notes.size() - shown);
                }
            }
            rows.push_back(row);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "crash-native: the suite failed: %s\n", e.what());
        return 3;
    }
    fault::set_negative_control(fault::NegativeControl::none);

    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    bool all_pass = true;
    std::printf("crash-native: %u runs per point, negative control %s, engine %s, %.1f s\n",
                o.runs, std::string(negative_name(o.negative)).c_str(), o.engine.c_str(), secs);
    std::printf("%-24s %-10s %5s %17s %11s %5s %10s %5s %8s\n", "point", "action", "runs",
                "inflight-at-fault", "resubmitted", "lost", "duplicated", "hung", "verdict");
    std::string csv = "point,action,runs,inflight_at_fault,resubmitted,lost,duplicated,hung,"
                      "verified_requests,not_fired,verdict\n";
    for (const auto& r : rows) {
        const char* verdict = r.pass() ? "PASS" : "FAIL";
        all_pass = all_pass && r.pass();
        std::printf("%-24s %-10s %5u %17llu %11llu %5llu %10llu %5llu %8s%s\n", r.point.c_str(),
                    "restart-io", r.runs, static_cast<unsigned long long>(r.inflight),
                    static_cast<unsigned long long>(r.resubmitted),
                    static_cast<unsigned long long>(r.lost),
                    static_cast<unsigned long long>(r.duplicated),
                    static_cast<unsigned long long>(r.hung), verdict,
                    r.not_fired != 0 ? fmt::format(" ({} runs did not fire)", r.not_fired).c_str()
                                     : "");
        csv += fmt::format("{},restart-io,{},{},{},{},{},{},{},{},{}\n", r.point, r.runs,
                           r.inflight, r.resubmitted, r.lost, r.duplicated, r.hung, r.requests,
                           r.not_fired, verdict);
    }
    if (!o.csv.empty()) {
        std::ofstream out(o.csv);
        out << csv;
        if (!out) {
            std::fprintf(stderr, "crash-native: cannot write %s\n", o.csv.c_str());
            return 3;
        }
    }
    return all_pass ? 0 : 1;
}
