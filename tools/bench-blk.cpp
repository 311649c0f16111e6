// bench-blk: 4 KiB random read/write IOPS of the virtio-blk device model,
// driven natively by the software guest driver (no KVM), next to fio with
// io_uring on the same file in the same run.
//
//   bench-blk [--file PATH] [--size MiB] [--seconds N] [--qd 1,32] [--rw randread,randwrite]
//             [--cache writeback,none] [--engine uring|sync] [--poll] [--halt-poll US]
//             [--device-poll US]
//             [--no-fio] [--repeat N] [--masking sigmask,off] [--fault-cost] [--disk-load]
//             [--cpu] [--trace] [--iops N] [--bw BYTES]
//
// --file names the file (or block device) to run on: one that exists is used
// whole, by ember and fio alike; one that does not is created with --size MiB
// of random data and kept. Without --file a temporary one is made and removed.
//
// --fault-cost measures the crash-injection fault points (vmm/fault): first
// the time of one disarmed point (a relaxed load and a branch) against an
// empty loop, then, per case, one more device run with a point armed that
// never fires on the block path, so that every block point takes the slow
// path (the "faults armed" column and its cost against the normal run).
//
// --masking runs the device once per mode of keeping the checkpoint signal
// out of completions (DESIGN.md "Signal-masked completion", quiesce.h); with
// `off` in the list it also prints the IOPS cost of masking against none,
// and the same cost from CPU times (park points per request x their cost).
//
// --disk-load prints, under each row, what the block device under the file
// did during ember's runs and during fio's (tools/disk_load.h): requests it
// held on average, how busy it was, milliseconds per request there. Equal
// IOPS with fewer requests held at the disk means the rest wait in the
// pipeline around it: threads, wakeups, the driver.
//
// --trace prints, under each row, the rhythm of that block device from its
// trace events in a window of each run (tools/disk_trace.h; root only):
// completions per burst, the time it had nothing to do, how long after a
// burst of at least half the queue the next request reached it, and
// milliseconds per request. A device that answers the whole queue at once
// waits through the turnaround of whoever drives it.
//
// --cpu prints, under each row, the CPU the threads used (medians, % of one
// CPU over the run): ember's I/O thread and driver thread, and fio's job
// (usr + sys from its JSON). Threads that mostly wait for each other use
// little; one that is the bottleneck is near 100%.
//
// Virtual disks are noisy: --repeat N alternates ember and fio N times per
// case (fio first in every other round) and reports the medians, their
// ratio, and `paired`: the median of each round's ember/fio. From 6 rounds a
// line gives the sign-test interval of that median (tools/round_stats.h).
//
// The device runs on its own I/O thread exactly as under KVM; the driver
// thread plays the guest. By default it sleeps on the irq eventfd between
// completions (a halted vcpu); --poll spins on used.idx instead (a busy one).
// --halt-poll US makes the sleeping driver spin up to US microseconds for its
// interrupt first, as KVM does for a halted vcpu (halt_poll_ns, 200 us by
// default on x86).
// --device-poll US gives the O_DIRECT (cache=none) cells the disk option
// poll=US: the I/O thread spins up to US microseconds before it sleeps.
// --iothread-cpu N gives the disk the option iothread-cpu=N: its I/O thread
// runs on CPU N, the driver thread where --ember-cpu or the kernel puts it.
// --iops N and --bw BYTES limit both sides to that rate per second: ember's
// disk gets a rate limit (README "Rate limits") and fio --rate_iops/--rate.
// So the ratio says how close ember's limiter comes to the rate, next to
// fio's. ember's buckets hold 10 ms of the rate (N/100 per 10 ms): a bucket
// of a whole second (what iops=N on the command line gives) would let the
// first second's worth through at once, which fio's limiter does not.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "devices/block/block_disk.h"
#include "devices/block/disk_spec.h"
#include "devices/block/virtio_blk_spec.h"
#include "devices/block/virtio_block.h"
#include "devices/virtio/mmio_transport.h"
#include "tests/support/guest_driver.h"
#include "tests/support/masking_cost.h"
#include "tests/support/options.h"
#include "tests/support/threads.h"
#include "tools/disk_load.h"
#include "tools/disk_trace.h"
#include "tools/round_stats.h"
#include "vmm/cpu_affinity.h"
#include "vmm/errors.h"
#include "vmm/fault/fault_points.h"

using namespace ember;
using namespace ember::testing;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
    std::string file;
    uint64_t size_mib{512};
    double seconds{3};
    std::vector<unsigned> qds{1, 32};
    std::vector<std::string> rws{"randread", "randwrite"};
    std::vector<std::string> caches{"writeback", "none"};
    std::string engine{"uring"};
    bool poll{false};
    uint32_t halt_poll_us{0};
    uint32_t device_poll_us{0};
    bool fio{true};
    unsigned repeat{1};
    std::vector<MaskingMode> masking{MaskingMode::sigmask}; // ember's default
    bool fault_cost{false};
    bool disk_load{false};
    bool trace{false};
    bool cpu{false};
    bool rounds{false}; // print every round, in the order its runs went
    int ember_cpu{-1};  // --ember-cpu: both ember threads on this CPU; fio free
    std::optional<uint32_t> iothread_cpu; // --iothread-cpu: the disk's iothread-cpu=
    uint64_t iops{0};                     // --iops: both sides limited (0: not)
    uint64_t bw{0};                       // --bw: bytes per second, both sides
};

constexpr const char* kUsage =
    "usage: bench-blk [--file PATH] [--size MiB] [--seconds N] [--qd 1,32] "
    "[--rw randread,randwrite] [--cache writeback,none] [--engine uring|sync] [--poll] "
    "[--halt-poll US] [--device-poll US] [--no-fio] [--repeat N] [--masking sigmask,off] "
    "[--fault-cost] [--disk-load] [--trace] [--cpu] [--rounds] [--ember-cpu N] "
    "[--iothread-cpu N] [--iops N] [--bw BYTES]\n";

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "bench-blk: %s\n%s", why, kUsage);
    std::exit(2);
}

Options parse_options(int argc, char** argv) {
    using testing::number_option;
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw testing::UsageError("missing value for " + a);
            return argv[++i];
        };
        // A spin window in microseconds, bounded like the disk option poll=.
        auto poll_window = [&] {
            return static_cast<uint32_t>(number_option(a, value(), 0, kMaxPollUs));
        };
        if (a == "--help" || a == "-h") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (a == "--file")
            o.file = value();
        else if (a == "--size")
            o.size_mib = number_option(a, value(), 1, 1u << 20);
        else if (a == "--seconds")
            o.seconds = testing::decimal_option(a, value(), 0.05, 3600);
        else if (a == "--qd")
            o.qds = testing::number_list_option(a, value(), 1, 80);
        else if (a == "--rw")
            o.rws = testing::split_list(value());
        else if (a == "--cache")
            o.caches = testing::split_list(value());
        else if (a == "--engine")
            o.engine = value();
        else if (a == "--poll")
            o.poll = true;
        else if (a == "--halt-poll")
            o.halt_poll_us = poll_window();
        else if (a == "--device-poll")
            o.device_poll_us = poll_window();
        else if (a == "--no-fio")
            o.fio = false;
        else if (a == "--repeat")
            o.repeat = static_cast<unsigned>(number_option(a, value(), 1, 1000));
        else if (a == "--fault-cost")
            o.fault_cost = true;
        else if (a == "--disk-load")
            o.disk_load = true;
        else if (a == "--trace")
            o.trace = true;
        else if (a == "--cpu")
            o.cpu = true;
        else if (a == "--rounds")
            o.rounds = true;
        else if (a == "--ember-cpu")
            o.ember_cpu = static_cast<int>(number_option(a, value(), 0, CPU_SETSIZE - 1));
        else if (a == "--iothread-cpu")
            o.iothread_cpu = static_cast<uint32_t>(number_option(a, value(), 0, CPU_SETSIZE - 1));
        else if (a == "--iops")
            o.iops = number_option(a, value(), 100, 100'000'000);
        else if (a == "--bw")
            o.bw = number_option(a, value(), 100 * 4096, uint64_t{1} << 40);
        else if (a == "--masking") {
            o.masking.clear();
            for (const auto& m : testing::split_list(value())) {
                if (m == "sigmask")
                    o.masking.push_back(MaskingMode::sigmask);
                else if (m == "off")
                    o.masking.push_back(MaskingMode::off);
                else
                    throw testing::UsageError("--masking takes sigmask and/or off");
            }
        }
        else
            throw testing::UsageError("unknown argument " + a);
    }
    if (o.poll && o.halt_poll_us > 0)
        throw testing::UsageError("--poll spins always; --halt-poll is for a driver that sleeps");
    for (const auto& r : o.rws)
        if (r != "randread" && r != "randwrite")
            throw testing::UsageError("--rw takes randread and/or randwrite");
    for (const auto& c : o.caches)
        if (c != "writeback" && c != "none")
            throw testing::UsageError("--cache takes writeback and/or none");
    if (o.engine != "uring" && o.engine != "sync")
        throw testing::UsageError("--engine takes uring or sync");
    return o;
}

Options parse(int argc, char** argv) {
    try {
        return parse_options(argc, argv);
    } catch (const testing::UsageError& e) {
        usage(e.what());
    }
}

// Fills the file with non-zero data so reads are real reads.
void prepare_file(const std::string& path, uint64_t size) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) throw Error(fmt::format("cannot create {}: {}", path, std::strerror(errno)));
    std::vector<uint8_t> chunk(1 << 20);
    std::mt19937_64 rng(1);
    for (auto& b : chunk)
        b = static_cast<uint8_t>(rng());
    for (uint64_t done = 0; done < size; done += chunk.size())
        if (std::fwrite(chunk.data(), 1, chunk.size(), f) != chunk.size())
            throw Error(fmt::format("cannot write {}", path));
    std::fclose(f);
}

// Reads the whole file once through the page cache. A page-cache read cell
// otherwise starts with whatever the cell before left there (an O_DIRECT
// write drops the pages it writes): ember, run first, read partly from the
// disk and warmed the cache for fio (0.53 of fio's IOPS in one session-10
// run, 1.1 with the cache warm for both).
void warm_page_cache(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
    std::vector<uint8_t> chunk(1 << 20);
    ssize_t n = 0;
    while ((n = ::read(fd, chunk.data(), chunk.size())) > 0) {
    }
    const int err = errno;
    ::close(fd);
    if (n < 0) throw Error(fmt::format("cannot read {}: {}", path, std::strerror(err)));
}

struct RunResult {
    double iops;
    double park_points_per_request; // park points the I/O thread passed, per request
    double seconds;                 // with I/O in flight (for --disk-load)
    double io_thread_cpu{-1};       // CPU seconds per second (for --cpu)
    double driver_cpu{-1};
    std::string io_thread_cpus; // the CPUs the I/O thread was allowed (for --cpu)
};

// CPU seconds (user + system) thread `tid` of this process has used, or -1.
double thread_cpu_seconds(pid_t tid) {
    if (tid < 0) return -1;
    std::ifstream in(fmt::format("/proc/self/task/{}/stat", tid));
    std::string stat;
    if (!std::getline(in, stat)) return -1;
    // Fields after the command, which may hold blanks: state is field 3,
    // utime and stime are 14 and 15.
    const auto close = stat.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stoull(field);
        if (i == 15) stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// --ember-cpu: the driver thread (this one) and the I/O thread, which
// inherits this thread's CPU mask when the device starts it, share one CPU,
// as a vcpu and its disk's I/O thread would if pinned together. The old mask
// comes back afterwards, so fio runs on every CPU as before.
class PinnedToCpu {
  public:
    explicit PinnedToCpu(int cpu) {
        if (cpu < 0) return;
        if (sched_getaffinity(0, sizeof old_, &old_) != 0)
            throw Error(fmt::format("sched_getaffinity: {}", std::strerror(errno)));
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (sched_setaffinity(0, sizeof one, &one) != 0)
            throw Error(fmt::format("--ember-cpu {}: not a CPU this process may run on ({})", cpu,
                                    std::strerror(errno)));
        pinned_ = true;
    }
    ~PinnedToCpu() {
        if (pinned_) sched_setaffinity(0, sizeof old_, &old_);
    }
    PinnedToCpu(const PinnedToCpu&) = delete;
    PinnedToCpu& operator=(const PinnedToCpu&) = delete;

  private:
    cpu_set_t old_{};
    bool pinned_{false};
};

RunResult run_ember(const Options& o, bool direct, bool write, unsigned qd, MaskingMode masking) {
    const PinnedToCpu pinned(o.ember_cpu);
    GuestMemory mem = GuestMemory::flat(32 << 20);
    DiskSpec spec = parse_disk_spec(o.file);
    spec.cache = direct ? DiskSpec::Cache::none : DiskSpec::Cache::writeback;
    spec.engine = o.engine == "sync" ? DiskSpec::Engine::sync : DiskSpec::Engine::uring;
    // poll= is for O_DIRECT only (check_disk_spec); the page-cache cells run
    // without it.
    spec.poll_us = direct && spec.engine == DiskSpec::Engine::uring ? o.device_poll_us : 0;
    spec.iothread_cpu = o.iothread_cpu;
    // 10 ms deep, the same average rate (see the top).
    if (o.iops > 0) spec.rate_limit.ops = TokenBucketSpec{o.iops / 100, 0, 10};
    if (o.bw > 0) spec.rate_limit.bandwidth = TokenBucketSpec{o.bw / 100, 0, 10};
    auto disk = BlockDisk::open(spec);
    const uint64_t blocks = disk.size_bytes() / 4096;
    auto blk = std::make_unique<VirtioBlock>(std::move(disk));
    blk->set_completion_masking(masking);
    const VirtioBlock* device = blk.get();
    VirtioMmioTransport dev(mem, std::move(blk), EventFd{});
    GuestDriver d(mem, dev);
    d.init();
    struct Slot {
        GuestAddress hdr;
        Chain chain;
    };
    std::vector<Slot> slots(qd);
    // Random bytes, as fio writes: zeros cost a disk that compresses or
    // skips zero pages (zram) far less than fio's data (3.0x fio's IOPS on
    // zram with zeros, a comparison of data, not of ember).
    std::mt19937_64 data_rng(3);
    std::vector<uint8_t> data(4096);
    for (auto& s : slots) {
        s.hdr = d.alloc(16);
        s.chain.buffers = {
            {s.hdr, 16, false}, {d.alloc(4096, 4096), 4096, !write}, {d.alloc(1), 1, true}};
        for (auto& b : data)
            b = static_cast<uint8_t>(data_rng());
        mem.write_bytes(s.chain.buffers[1].addr, data);
    }
    std::vector<int> slot_of_head(256, -1);
    std::mt19937_64 rng(7);
    const uint32_t type = write ? virtio::blk::kTypeOut : virtio::blk::kTypeIn;
    auto issue = [&](int si) {
        auto& s = slots[static_cast<size_t>(si)];
        mem.write(s.hdr, virtio::blk::RequestHeader{type, 0, (rng() % blocks) * 8});
        slot_of_head[d.submit(s.chain)] = si;
    };
    const pid_t io_tid = find_thread("ember-blk-io");
    const double io_cpu0 = thread_cpu_seconds(io_tid);
    const double driver_cpu0 = thread_cpu_ns();
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(o.seconds));
    uint64_t completed = 0;
    bool stopping = false;
    for (unsigned i = 0; i < qd; ++i)
        issue(static_cast<int>(i));
    d.kick();
    std::vector<int> finished;
    finished.reserve(qd);
    while (d.outstanding() > 0) {
        auto used = d.reap();
        if (used.empty()) {
            if (!o.poll)
                d.wait_interrupt(std::chrono::microseconds(o.halt_poll_us),
                                 std::chrono::milliseconds(1000));
            continue;
        }
        finished.clear();
        for (const auto& e : used) {
            if (mem.read<uint8_t>(
                    slots[static_cast<size_t>(slot_of_head[e.id])].chain.buffers[2].addr) != 0)
                throw Error("a benchmark request failed");
            finished.push_back(std::exchange(slot_of_head[e.id], -1));
        }
        completed += used.size();
        if (!stopping && (completed & 63) < used.size()) stopping = Clock::now() >= end;
        if (!stopping) {
            for (int si : finished)
                issue(si);
            d.kick();
        }
    }
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    const double io_cpu1 = thread_cpu_seconds(io_tid);
    const double driver_cpu = (thread_cpu_ns() - driver_cpu0) / 1e9 / elapsed;
    std::string io_cpus = thread_cpu_list(io_tid);
    const auto st = device->stats();
    dev.shutdown();
    const double points = static_cast<double>(st.park_points);
    return {static_cast<double>(completed) / elapsed,
            points / static_cast<double>(std::max<uint64_t>(st.requests, 1)),
            elapsed,
            io_cpu0 >= 0 && io_cpu1 >= 0 ? (io_cpu1 - io_cpu0) / elapsed : -1,
            driver_cpu,
            std::move(io_cpus)};
}

// Nanoseconds per disarmed fault point, net of the loop itself.
double disarmed_point_ns() {
    constexpr uint64_t kIters = 200'000'000;
    auto time = [](auto&& body) {
        const auto t0 = Clock::now();
        for (uint64_t i = 0; i < kIters; ++i) {
            body();
            asm volatile("" ::: "memory"); // keep the loop and the load in it
        }
        return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / kIters;
    };
    const double empty = time([] {});
    const double point = time([] { fault::hit(fault::Point::blk_popped); });
    return std::max(0.0, point - empty);
}

// Arms a point the block path never reaches: every block point then takes
// the slow path (the point's own armed check) and nothing fires.
struct FaultsArmedElsewhere {
    FaultsArmedElsewhere() {
        fault::arm({false, fault::Point::checkpoint_devices, UINT64_MAX, fault::Action::kill, 0});
    }
    ~FaultsArmedElsewhere() { fault::disarm_all(); }
};

double median(std::vector<double> v) {
    return bench::median_of(std::move(v)).value_or(-1);
}

struct FioResult {
    double iops{-1};
    double seconds{0}; // fio's job runtime: with I/O in flight
    double cpu{-1};    // CPU seconds per second of the job (usr + sys)
};

FioResult run_fio(const Options& o, bool direct, bool write, unsigned qd) {
    const std::string out_path = o.file + ".fio.json";
    // --invalidate=0: fio drops the file's pages from the page cache before
    // it starts by default, so its page-cache cells read from the disk while
    // ember's read the cache. Until session 5 that made ember look 1.7x
    // faster than fio for page-cache reads; both now run from the cache.
    // --scramble_buffers=0: fio writes the same random buffers each time, as
    // ember's driver does (above). By default it changes a few bytes of
    // every 512 before each write, which left zram compressing 14% of
    // fio's pages and none of ember's: fio's O_DIRECT writes there cost
    // half as much again (88k against 135k IOPS), a difference of data.
    const std::string cmd = fmt::format(
        "fio --name=bench --filename={} --size={}M --ioengine=io_uring --rw={} --bs=4k "
        "--iodepth={} --direct={} --invalidate=0 --time_based --runtime={}s --ramp_time=0 "
        "--numjobs=1 "
        "--randrepeat=0 --norandommap --scramble_buffers=0{} --output-format=json --output={} "
        ">/dev/null 2>&1",
        o.file, o.size_mib, write ? "randwrite" : "randread", qd, direct ? 1 : 0,
        std::max(1.0, o.seconds),
        (o.iops > 0 ? fmt::format(" --rate_iops={}", o.iops) : std::string()) +
            (o.bw > 0 ? fmt::format(" --rate={}", o.bw) : std::string()),
        out_path);
    if (std::system(cmd.c_str()) != 0) return {};
    FILE* f = std::fopen(out_path.c_str(), "rb");
    if (f == nullptr) return {};
    std::string text;
    char buf[4096];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
        text.append(buf, n);
    std::fclose(f);
    ::unlink(out_path.c_str());
    try {
        const auto j = nlohmann::json::parse(text);
        const auto& job = j["jobs"][0];
        return {job[write ? "write" : "read"]["iops"].get<double>(),
                job["job_runtime"].get<double>() / 1000.0,
                (job["usr_cpu"].get<double>() + job["sys_cpu"].get<double>()) / 100.0};
    } catch (const std::exception&) {
        return {};
    }
}

} // namespace

int main(int argc, char** argv) {
    Options o = parse(argc, argv);
    bool own_file = false;
    if (o.iops > 0 || o.bw > 0)
        std::fprintf(stderr,
                     "bench-blk: both sides limited to %s per second (ember: buckets of a "
                     "hundredth per 10 ms; fio: --rate_iops/--rate)\n",
                     ((o.iops > 0 ? fmt::format("{} requests", o.iops) : std::string()) +
                      (o.iops > 0 && o.bw > 0 ? " and " : "") +
                      (o.bw > 0 ? fmt::format("{} bytes", o.bw) : std::string()))
                         .c_str());
    try {
        if (o.file.empty()) {
            o.file = fmt::format("/var/tmp/ember-bench-blk-{}.img", ::getpid());
            own_file = true;
        }
        struct stat st {};
        if (own_file || ::stat(o.file.c_str(), &st) != 0) {
            // A --file that does not exist yet is made and kept: the user
            // named it, and the next run can reuse it.
            std::fprintf(stderr, "bench-blk: preparing %s (%llu MiB)\n", o.file.c_str(),
                         static_cast<unsigned long long>(o.size_mib));
            prepare_file(o.file, o.size_mib << 20);
        } else {
            // fio gets --size: it must cover what ember's device covers,
            // the whole file (or block device), not --size of it.
            const uint64_t bytes = BlockDisk::open(parse_disk_spec(o.file)).size_bytes();
            if (bytes < (1 << 20)) throw Error(fmt::format("{} is smaller than 1 MiB", o.file));
            o.size_mib = bytes >> 20;
            std::fprintf(stderr, "bench-blk: using %s (%llu MiB)\n", o.file.c_str(),
                         static_cast<unsigned long long>(o.size_mib));
        }
        if (o.fio && std::system("fio --version >/dev/null 2>&1") != 0) {
            std::fprintf(stderr, "bench-blk: fio not found; running without it\n");
            o.fio = false;
        }
        std::optional<bench::DiskStatFile> disk_stat;
        if (o.disk_load) {
            disk_stat = bench::DiskStatFile::for_file(o.file);
            if (!disk_stat)
                std::fprintf(stderr, "bench-blk: --disk-load: %s is on no block device with "
                                     "statistics (tmpfs, overlayfs, 9p?); not printing it\n",
                             o.file.c_str());
        }
        std::string why_untraced;
        std::vector<std::string> stale;
        std::optional<bench::DiskTrace> tracer =
            o.trace ? bench::DiskTrace::for_file(o.file, why_untraced, stale) : std::nullopt;
        for (const auto& name : stale)
            std::fprintf(stderr,
                         "bench-blk: --trace: removed the tracefs instance %s (its "
                         "bench-blk is gone)\n",
                         name.c_str());
        if (o.trace && !tracer)
            std::fprintf(stderr, "bench-blk: --trace: %s; not tracing\n", why_untraced.c_str());
        // What the disk did during one run.
        struct DiskSeen {
            std::vector<bench::DiskLoad> loads;
            std::vector<bench::DiskRhythm> rhythms;
        };
        // Runs `run` between two samples of the disk's counters (the load
        // is over the seconds `run` reports with I/O in flight) and traces
        // the disk in a window a third of the way in.
        auto measured = [&](DiskSeen& seen, unsigned qd, auto&& run) {
            const auto third = std::chrono::milliseconds(static_cast<long>(o.seconds * 1000 / 3));
            if (tracer) tracer->start(third, std::min(third, std::chrono::milliseconds(500)));
            const auto before = disk_stat ? disk_stat->sample() : std::nullopt;
            auto r = run();
            const auto after = disk_stat ? disk_stat->sample() : std::nullopt;
            if (before && after && r.seconds > 0)
                seen.loads.push_back(bench::disk_load(*before, *after, r.seconds));
            if (tracer)
                seen.rhythms.push_back(bench::disk_rhythm(tracer->collect(), std::max(1u, qd / 2)));
            return r;
        };
        auto mode_name = [](MaskingMode m) {
            return m == MaskingMode::sigmask ? "sigmask" : "off";
        };
        if (o.fault_cost)
            std::printf("fault points: a disarmed point costs %.2f ns (relaxed load + branch, "
                        "net of the loop)\n",
                        disarmed_point_ns());
        int off_index = -1;
        // CPU time per park point, for the model printed under each row.
        double sigmask_ns = 0, off_ns = 0;
        if (std::find(o.masking.begin(), o.masking.end(), MaskingMode::sigmask) != o.masking.end()) {
            std::vector<double> s, f;
            for (int i = 0; i < 5; ++i) {
                s.push_back(testing::park_point_cpu_ns(MaskingMode::sigmask));
                f.push_back(testing::park_point_cpu_ns(MaskingMode::off));
            }
            sigmask_ns = median(s);
            off_ns = median(f);
            std::printf("park point with no checkpoint pending, CPU time (median of 5): sigmask "
                        "%.2f ns, off %.2f ns; opening the mask (per checkpoint only): %.0f ns\n",
                        sigmask_ns, off_ns, testing::mask_pair_cpu_ns());
        }
        for (size_t i = 0; i < o.masking.size(); ++i)
            if (o.masking[i] == MaskingMode::off) off_index = static_cast<int>(i);
        std::printf("%-10s %-6s %-10s %4s %12s %12s %7s %7s", "rw", "bs", "cache", "qd",
                    fmt::format("{} IOPS", mode_name(o.masking[0])).c_str(), "fio IOPS", "ratio",
                    "paired");
        for (size_t i = 1; i < o.masking.size(); ++i)
            std::printf(" %14s", fmt::format("{} IOPS", mode_name(o.masking[i])).c_str());
        if (off_index >= 0)
            for (size_t i = 0; i < o.masking.size(); ++i)
                if (static_cast<int>(i) != off_index)
                    std::printf(" %14s", fmt::format("{} cost", mode_name(o.masking[i])).c_str());
        if (o.fault_cost) std::printf(" %14s %12s", "faults armed", "armed cost");
        std::printf("\n");
        for (const auto& cache : o.caches) {
            const bool direct = cache == "none";
            for (const auto& rw : o.rws) {
                const bool write = rw == "randwrite";
                // Once per read row: its queue depths only read, so the
                // cache stays warm from one to the next.
                if (!direct && !write) {
                    std::fprintf(stderr, "bench-blk: reading %s into the page cache\n",
                                 o.file.c_str());
                    warm_page_cache(o.file);
                }
                for (unsigned qd : o.qds) {
                    std::vector<std::vector<double>> per_mode(o.masking.size());
                    std::vector<double> f;
                    std::vector<double> armed;
                    std::vector<double> park_points;
                    DiskSeen ember_disk, fio_disk;
                    std::vector<double> io_cpu, driver_cpu, fio_cpu; // first mode only
                    std::set<std::string> io_cpus_seen;
                    for (unsigned i = 0; i < std::max(1u, o.repeat); ++i) {
                        if (o.fault_cost) {
                            FaultsArmedElsewhere on;
                            armed.push_back(run_ember(o, direct, write, qd, o.masking[0]).iops);
                        }
                        // Interleaved, so drift in a noisy VM hits every mode alike.
                        auto ember_round = [&] {
                            for (size_t m = 0; m < o.masking.size(); ++m) {
                                auto run = [&] {
                                    return run_ember(o, direct, write, qd, o.masking[m]);
                                };
                                // The disk load is printed for the first mode only.
                                const auto r = m == 0 ? measured(ember_disk, qd, run) : run();
                                per_mode[m].push_back(r.iops);
                                if (m == 0 && r.io_thread_cpu >= 0) {
                                    io_cpu.push_back(r.io_thread_cpu);
                                    driver_cpu.push_back(r.driver_cpu);
                                }
                                if (m == 0) io_cpus_seen.insert(r.io_thread_cpus);
                                if (o.masking[m] == MaskingMode::sigmask)
                                    park_points.push_back(r.park_points_per_request);
                            }
                        };
                        auto fio_round = [&] {
                            const auto r = measured(fio_disk, qd,
                                                    [&] { return run_fio(o, direct, write, qd); });
                            f.push_back(r.iops);
                            if (r.cpu >= 0) fio_cpu.push_back(r.cpu);
                        };
                        // Every other round fio goes first: a disk whose speed
                        // depends on what ran just before it (a host write
                        // cache filling, a device warming up) then favours
                        // neither side across rounds.
                        std::string order;
                        if (o.fio && i % 2 == 1) {
                            fio_round();
                            order += "fio, ";
                        }
                        ember_round();
                        order += "ember";
                        if (o.fio && i % 2 == 0) {
                            fio_round();
                            order += ", fio";
                        }
                        if (o.rounds)
                            std::printf(
                                "           round %u (%s): ember %.0f, fio %s%s\n", i + 1,
                                order.c_str(), per_mode[0].back(),
                                o.fio ? fmt::format("{:.0f}", f.back()).c_str() : "-",
                                o.fio && f.back() > 0
                                    ? fmt::format(", ratio {:.2f}", per_mode[0].back() / f.back())
                                          .c_str()
                                    : "");
                    }
                    std::vector<double> iops;
                    for (auto& v : per_mode)
                        iops.push_back(median(v));
                    const double ember = iops[0];
                    const double fio = o.fio ? median(f) : -1;
                    // Each round's ember/fio, then their median: the disk's
                    // speed drifts over minutes here, and the two runs of one
                    // round see the same drift.
                    std::vector<double> rounds;
                    for (size_t i = 0; i < f.size() && i < per_mode[0].size(); ++i)
                        if (f[i] > 0) rounds.push_back(per_mode[0][i] / f[i]);
                    const double paired = rounds.empty() ? -1 : median(rounds);
                    std::printf("%-10s %-6s %-10s %4u %12.0f %12s %7s %7s", rw.c_str(), "4k",
                                cache.c_str(), qd, ember,
                                fio > 0 ? fmt::format("{:.0f}", fio).c_str() : "-",
                                fio > 0 ? fmt::format("{:.2f}", ember / fio).c_str() : "-",
                                paired > 0 ? fmt::format("{:.2f}", paired).c_str() : "-");
                    for (size_t m = 1; m < iops.size(); ++m)
                        std::printf(" %14.0f", iops[m]);
                    if (off_index >= 0) {
                        const double unmasked = iops[static_cast<size_t>(off_index)];
                        for (size_t m = 0; m < iops.size(); ++m)
                            if (static_cast<int>(m) != off_index)
                                std::printf(" %13.1f%%", 100.0 * (unmasked - iops[m]) / unmasked);
                    }
                    if (o.fault_cost) {
                        const double a = median(armed);
                        std::printf(" %14.0f %11.1f%%", a, 100.0 * (ember - a) / ember);
                    }
                    std::printf("\n");
                    // Whether these rounds show a goal met or missed: a
                    // ratio's margin of 0.05 is inside this VM's noise.
                    if (const auto ci = bench::median_interval(rounds, 0.95)) {
                        const auto [lo, hi] = std::minmax_element(rounds.begin(), rounds.end());
                        std::printf("           paired: %zu rounds from %.2f to %.2f; their "
                                    "median is in [%.2f, %.2f] with %.1f%% confidence\n",
                                    rounds.size(), *lo, *hi, ci->lo, ci->hi, 100 * ci->coverage);
                    }
                    if (!park_points.empty() && off_index >= 0) {
                        // The IOPS columns above carry this VM's noise; this
                        // is the same cost from CPU times: park points per
                        // request x the whole CPU time of one (not only what
                        // sigmask adds to off, which is a load), against the
                        // time one request takes without masking.
                        const double spr = median(park_points);
                        const double extra_ns = sigmask_ns;
                        const double request_ns = 1e9 / iops[static_cast<size_t>(off_index)];
                        std::printf("           sigmask, from CPU time: %.3f park points per request x "
                                    "%.2f ns = %.2f ns of a %.0f ns request: %.3f%%\n",
                                    spr, extra_ns, spr * extra_ns, request_ns,
                                    100.0 * spr * extra_ns / request_ns);
                    }
                    if (!ember_disk.loads.empty()) {
                        auto show = [](const std::vector<bench::DiskLoad>& v) -> std::string {
                            if (v.empty()) return "-";
                            std::vector<double> held, busy, ms;
                            for (const auto& l : v) {
                                held.push_back(l.in_flight);
                                busy.push_back(l.busy);
                                ms.push_back(l.ms_per_request);
                            }
                            return fmt::format("{:.1f} held, busy {:.0f}%, {:.3f} ms per request",
                                               median(held), 100 * median(busy), median(ms));
                        };
                        std::printf("           disk %s (medians): ember %s; fio %s\n",
                                    disk_stat->device().c_str(), show(ember_disk.loads).c_str(),
                                    show(fio_disk.loads).c_str());
                    }
                    if (!ember_disk.rhythms.empty()) {
                        auto show = [](const std::vector<bench::DiskRhythm>& v) -> std::string {
                            if (v.empty()) return "-";
                            std::vector<double> burst, idle, turn, ms;
                            for (const auto& r : v) {
                                burst.push_back(r.per_burst);
                                idle.push_back(r.idle);
                                if (r.turnaround_us >= 0) turn.push_back(r.turnaround_us);
                                ms.push_back(r.ms_per_request);
                            }
                            return fmt::format("{:.1f} per burst, idle {:.0f}%, turnaround {}, "
                                               "{:.3f} ms per request",
                                               median(burst), 100 * median(idle),
                                               turn.empty()
                                                   ? std::string("-")
                                                   : fmt::format("{:.0f} us", median(turn)),
                                               median(ms));
                        };
                        std::printf("           trace %s (medians): ember %s; fio %s\n",
                                    tracer->device().c_str(), show(ember_disk.rhythms).c_str(),
                                    show(fio_disk.rhythms).c_str());
                    }
                    if (o.cpu) {
                        auto pct = [](const std::vector<double>& v) {
                            return v.empty() ? std::string("-")
                                             : fmt::format("{:.0f}%", 100 * median(v));
                        };
                        std::string where;
                        for (const auto& c : io_cpus_seen)
                            where += (where.empty() ? "" : " | ") + c;
                        std::printf("           cpu (medians, of one CPU): ember I/O thread %s, "
                                    "driver %s; fio %s; I/O thread allowed on CPUs %s\n",
                                    pct(io_cpu).c_str(), pct(driver_cpu).c_str(),
                                    pct(fio_cpu).c_str(), where.c_str());
                    }
                    std::fflush(stdout);
                }
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-blk: %s\n", e.what());
        if (own_file) ::unlink(o.file.c_str());
        return 1;
    }
    if (own_file) ::unlink(o.file.c_str());
    return 0;
}
