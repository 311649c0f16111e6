// libember: run KVM microVMs from your own process.
//
//   ember::embed::VmConfig config;
//   config.kernel = "vmlinuz";
//   config.initrd = "initramfs.cpio.gz";
//   config.console = ember::embed::ConsoleConfig::to_callback(
//       [](std::string_view text) { std::fwrite(text.data(), 1, text.size(), stdout); });
//   auto vm = ember::embed::Vm::create(config); // built, not running
//   vm.start();                                  // vcpus run on the library's threads
//   ember::embed::ExitInfo exit = vm.wait();     // poweroff, reboot, panic, error, stopped
//
// Several VMs may run in one process, each with its own threads. A Vm is not
// copyable; it is movable, and its destructor stops a VM that still runs.
// Member functions may be called from any thread; calls on one Vm are
// serialised. Every failure is an ember::Error with a message for a person.
//
// What the library does to the process: it installs handlers for two
// real-time signals (SIGRTMIN kicks a vcpu out of the guest, SIGRTMIN+1 parks
// a disk's I/O thread for a checkpoint) and sends them only to its own
// threads; it logs to stderr (see set_log_level). It takes nothing else
// unless asked: SIGUSR1 (VmConfig::checkpoint_on_sigusr1) and the terminal
// (ConsoleConfig::interactive) are opt-in.
//
// Link with `pkg-config --cflags --libs ember` (add --static and -static for
// a static program). Needs /dev/kvm read-write at create() time.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ember/error.h"

namespace ember::embed {

// One bucket of a disk's rate limit, with the meaning of Firecracker's:
// `size` tokens when full (bytes or requests), refilled from empty to full
// in `refill_time_ms`, and `one_time_burst` extra tokens at the start, spent
// first and never refilled. Both numbers above 0. A request larger than the
// bucket goes when the bucket is full and leaves it in debt.
struct TokenBucketConfig {
    uint64_t size = 0;
    uint64_t one_time_burst = 0;
    uint64_t refill_time_ms = 0;
};
// What a disk's guest may do per unit of time; an absent bucket is no limit.
// Reads and writes take their data bytes and one request; flushes, discards
// and write-zeroes one request; GET_ID, unknown types and chains without a
// header nothing. A network device's limits count frames and their bytes
// (NetConfig).
struct RateLimitConfig {
    std::optional<TokenBucketConfig> bandwidth; // bytes
    std::optional<TokenBucketConfig> ops;       // requests (a network device's: frames)
};

// One virtio-blk disk (virtio-mmio). The guest sees the disks as /dev/vda,
// /dev/vdb, ... in this order. While the VM has it, its image is locked
// (an open file description lock: exclusive, or shared when read-only);
// creating or restoring a VM whose image another VM or process holds
// throws ember::Error saying it is in use, in this process too.
struct DiskConfig {
    // How the host caches the file: writeback uses the page cache; none opens
    // it with O_DIRECT (its file system must support that).
    enum class Cache { writeback, none };
    // How the disk's I/O thread reaches the file: io_uring (many requests in
    // flight) or plain pread/pwrite.
    enum class Engine { uring, sync };

    // The disk's serial (virtio-blk GET_ID, at most 20 bytes); names the disk
    // in a checkpoint so a restore can move it. Empty: the file's name.
    std::string id;
    std::filesystem::path path; // a regular file or a block device
    bool readonly = false;
    Cache cache = Cache::writeback;
    Engine engine = Engine::uring;
    // Microseconds the disk's I/O thread spins for completions and new
    // requests while requests are in flight, before it sleeps; 0 never
    // spins. At most 10000; needs Cache::none and Engine::uring. Costs CPU
    // for lower latency (README "The block device").
    uint32_t poll_us = 0;
    // The host CPU the disk's I/O thread runs on (one of those the process
    // may run on); unset: wherever the kernel puts it.
    std::optional<uint32_t> iothread_cpu{};
    // Held requests wait in the device, in flight (a checkpoint keeps them).
    RateLimitConfig rate_limit{};
};

// One virtio-net device (virtio-mmio) on a host TAP interface: plain
// Ethernet frames, no offloads. The tap is attached when the VM is built
// (it is created if missing and the process has CAP_NET_ADMIN); a missing
// /dev/net/tun, a busy tap or no permission throws ember::Error.
struct NetConfig {
    // Names the device in metrics and checkpoints (letters, digits, '-',
    // '_', '.'). Empty: "net0", "net1", ... by position.
    std::string id;
    std::string tap; // the host interface, 1-15 bytes
    // The guest's MAC, "AA:BB:CC:DD:EE:FF" (unicast). Empty: the guest's
    // driver picks a random one.
    std::string mac;
    // What the guest may receive and send (Firecracker's rx_rate_limiter and
    // tx_rate_limiter), in bytes and frames. A received frame over the limit
    // waits in the tap (the host's queue may then drop later ones); a frame
    // to send waits in the device, and a checkpoint keeps it.
    RateLimitConfig rx_rate_limit{};
    RateLimitConfig tx_rate_limit{};
};

// Where the guest's serial console (ttyS0, COM1) goes.
struct ConsoleConfig {
    enum class Kind { none, file, callback, stdio };
    Kind kind = Kind::none;
    // Kind::file: created (or truncated) when the VM is built.
    std::filesystem::path file;
    // Kind::callback: called with each chunk the guest writes (often one
    // byte), on a vcpu thread, with the UART's lock held: copy the text and
    // return quickly; do not call into the Vm from it.
    std::function<void(std::string_view)> callback;
    // Kind::stdio only: also forward the process's stdin to the guest, with
    // the terminal in raw mode while the VM runs (Ctrl-A x stops the VM).
    // Takes over the terminal: for one VM at a time.
    bool interactive = false;

    static ConsoleConfig none() { return {}; }
    static ConsoleConfig to_file(std::filesystem::path path) {
        ConsoleConfig c;
        c.kind = Kind::file;
        c.file = std::move(path);
        return c;
    }
    static ConsoleConfig to_callback(std::function<void(std::string_view)> fn) {
        ConsoleConfig c;
        c.kind = Kind::callback;
        c.callback = std::move(fn);
        return c;
    }
    static ConsoleConfig to_stdout(bool interactive = false) {
        ConsoleConfig c;
        c.kind = Kind::stdio;
        c.interactive = interactive;
        return c;
    }
};

// What a checkpoint does to the VM once the snapshot is written.
enum class AfterCheckpoint {
    keep_running, // the VM goes on in the state it was in (running or paused)
    stop,         // the VM stops for good: wait() returns ExitReason::stopped
};

// Opt-in: SIGUSR1 sent to the process writes a checkpoint of this VM into
// `dir`, as `ember run --checkpoint-dir` does. The library reads SIGUSR1
// through a signalfd on its own thread; the caller must block SIGUSR1 in
// every thread (block it in main() before any thread starts), or the signal
// kills the process. At most one VM per process should ask for it.
struct SignalCheckpoint {
    std::filesystem::path dir;
    AfterCheckpoint then = AfterCheckpoint::stop;
};

// How every checkpoint of a VM is written: by checkpoint() and by SIGUSR1
// alike. A checkpoint does not record these; a restored VM takes them from
// RestoreOverrides.
struct CheckpointOptions {
    // Let the host I/O in flight finish before saving (drain first, as
    // Firecracker does), instead of saving it as in flight for the restore
    // to resubmit. Bounded: fails after 60 s.
    bool drain = false;
    // Also copy every writable disk image into the checkpoint directory; a
    // restore then uses the copies.
    bool copy_disks = false;
};

struct VmConfig {
    std::filesystem::path kernel;                // bzImage or ELF vmlinux (x86-64)
    std::optional<std::filesystem::path> initrd; // initramfs (cpio, may be compressed)
    std::string cmdline = "console=ttyS0 reboot=k panic=1";
    uint32_t cpus = 1;                    // 1 to 254
    // The host CPU each vcpu's thread runs on, one per vcpu in vcpu order,
    // each one the process may run on; empty: not placed. Putting a vcpu and
    // its disk's I/O thread (DiskConfig::iothread_cpu) on one CPU saves a
    // cross-CPU wakeup per batch of requests.
    std::vector<uint32_t> vcpu_cpus;
    uint64_t memory_bytes = 512ULL << 20; // at least 32 MiB, a multiple of 4 KiB
    // Back guest memory with 2 MiB huge pages from the host's pool
    // (vm.nr_hugepages): memory_bytes a multiple of 2 MiB; too few free
    // pages is an ember::Error from create() saying how many are needed.
    bool huge_pages_2m = false;
    std::vector<DiskConfig> disks;        // at most 8
    std::vector<NetConfig> nets;          // at most 4, in the slots after the disks
    ConsoleConfig console;                // default: discarded
    // Also describe the virtio-mmio devices on the kernel command line
    // (virtio_mmio.device=), for kernels built with
    // CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES that do not read the ACPI DSDT.
    bool virtio_cmdline = false;
    // A virtio entropy device (virtio-rng): the guest's /dev/hwrng, filled
    // from the host's getrandom() on the vcpu that asks. It takes the virtio
    // slot after the last disk and network device.
    bool entropy = false;
    std::optional<SignalCheckpoint> checkpoint_on_sigusr1;
    CheckpointOptions checkpoints;
    // Crash injection, for testing recovery (`ember --list-faults` lists the
    // points): specs "NAME[:after=N][:action=restart-io|kill|abort|escape]" or
    // "random:period=MS". Fault points are process-wide: at most one VM per
    // process should use them. A bad spec is an ember::Error.
    std::vector<std::string> faults;
};

// Why a VM stopped.
enum class ExitReason {
    poweroff, // the guest powered off (ACPI S5, or halted for good)
    reboot,   // the guest rebooted (ember does not restart it)
    panic,    // the guest kernel panicked (pvpanic)
    error,    // the VMM failed (message says why)
    stopped,  // stop(), a checkpoint with AfterCheckpoint::stop, or Ctrl-A x
};
const char* to_string(ExitReason reason) noexcept; // "poweroff", "reboot", ...

struct ExitInfo {
    ExitReason reason = ExitReason::error;
    std::string message; // details; empty for a plain poweroff
    // ExitReason::stopped by a checkpoint (AfterCheckpoint::stop, or SIGUSR1
    // without keep_running), rather than by stop() or the console.
    bool checkpointed = false;
};

// Where a Vm is in its life:
//   created --start()--> running <--pause()/resume()--> paused
//   created --start()--> paused, for RestoreOverrides::paused
//   created, running, paused --guest exit, stop(), checkpoint(stop)--> exited
enum class State { created, running, paused, exited };
const char* to_string(State state) noexcept; // "created", "running", ...

struct CheckpointInfo {
    uint64_t memory_bytes = 0;      // guest RAM written (sparse file size may be less)
    uint64_t inflight_requests = 0; // disk requests in flight, resubmitted on restore
    double pause_ms = 0;            // how long the guest was stopped
};

// Counters of one disk since the VM was created or restored in this process.
struct DiskMetrics {
    std::string id;             // the disk's serial (DiskConfig::id, or its file name)
    std::filesystem::path path; // the file it serves
    uint64_t requests = 0;      // every request the guest made, whatever became of it
    uint64_t reads = 0;         // requests that succeeded, by kind
    uint64_t writes = 0;
    uint64_t flushes = 0;
    uint64_t discards = 0;
    uint64_t write_zeroes = 0;
    uint64_t bytes_read = 0; // by successful reads and writes
    uint64_t bytes_written = 0;
    // Requests answered with an error because of the guest (a malformed
    // chain, a sector out of range, a write to a read-only disk, an unknown
    // type), and because the host failed (counted per failed operation).
    uint64_t bad_requests = 0;
    uint64_t host_errors = 0;
    uint64_t interrupts = 0; // used-buffer notifications sent to the guest
    uint64_t throttled = 0;  // requests the rate limit held back for a while
};
// Exits to ember of one vcpu (KVM_RUN returning to user space).
struct VcpuMetrics {
    uint64_t exits = 0;
    uint64_t pio_exits = 0;  // port I/O (serial port, keyboard controller, ...)
    uint64_t mmio_exits = 0; // MMIO (virtio registers, but not queue kicks)
};
// The entropy device (VmConfig::entropy).
struct EntropyMetrics {
    uint64_t requests = 0;     // every request the guest made
    uint64_t bytes = 0;        // random bytes given to the guest
    uint64_t bad_requests = 0; // malformed, or with buffers the device may not write
    uint64_t host_errors = 0;  // getrandom() failures
    uint64_t interrupts = 0;
};
// One network device (VmConfig::nets).
struct NetMetrics {
    std::string id;
    std::string tap;
    uint64_t rx_frames = 0; // frames given to the guest
    uint64_t rx_bytes = 0;
    uint64_t rx_dropped = 0; // larger than the guest's receive buffer
    uint64_t tx_frames = 0;  // frames the guest sent that reached the tap
    uint64_t tx_bytes = 0;
    uint64_t tx_errors = 0;    // the tap refused them (e.g. down)
    uint64_t bad_requests = 0; // malformed chains, wrong buffers
    uint64_t interrupts = 0;
    uint64_t rx_throttled = 0; // frames the receive rate limit held back for a while
    uint64_t tx_throttled = 0; // frames the transmit rate limit held back for a while
};
struct Metrics {
    State state = State::created;
    std::vector<VcpuMetrics> vcpus; // in vcpu order
    std::vector<DiskMetrics> disks; // in VmConfig::disks order
    std::vector<NetMetrics> nets;   // in VmConfig::nets order
    std::optional<EntropyMetrics> entropy; // with VmConfig::entropy
};
struct RestoreOverrides {
    // Disk id -> the file to use instead of the path recorded in the
    // checkpoint (same size required).
    std::map<std::string, std::filesystem::path> disks;
    // Network device id -> the TAP interface to attach instead of the one
    // recorded in the checkpoint (e.g. a clone of the VM beside the first).
    std::map<std::string, std::string> nets;
    ConsoleConfig console; // a checkpoint records no console
    std::optional<SignalCheckpoint> checkpoint_on_sigusr1;
    CheckpointOptions checkpoints; // a checkpoint records none
    std::vector<std::string> faults; // as VmConfig::faults; armed before the disks restart
    // start() starts the VM's thread but leaves the vcpus and the disks' I/O
    // threads stopped, exactly as checkpointed (requests in flight stay
    // unsubmitted): State::paused. resume() runs them; checkpoint() and
    // SIGUSR1 work meanwhile.
    bool paused = false;
};

class Vm final {
  public:
    // Checks the configuration (files exist, sizes, counts), opens KVM,
    // builds the VM and loads the guest. The VM does not run until start().
    static Vm create(const VmConfig& config);
    // Rebuilds a VM from a checkpoint directory written by checkpoint() (or
    // by the ember command). It is in State::created: start() runs it on
    // from where it was checkpointed.
    static Vm restore(const std::filesystem::path& dir, const RestoreOverrides& overrides = {});

    Vm(Vm&&) noexcept;
    Vm& operator=(Vm&&) noexcept;
    Vm(const Vm&) = delete;
    Vm& operator=(const Vm&) = delete;
    // Stops a VM that still runs (as stop() does) and frees it.
    ~Vm();

    // created -> running: starts one thread per vcpu (created -> paused
    // for a VM restored with RestoreOverrides::paused).
    void start();
    // running -> paused: returns once every vcpu is out of the guest.
    void pause();
    // paused -> running.
    void resume();
    // Writes a checkpoint into `dir` (created if missing; an existing
    // checkpoint there is replaced). Allowed while created, running or
    // paused. The guest is paused while its state is written.
    CheckpointInfo checkpoint(const std::filesystem::path& dir,
                              AfterCheckpoint then = AfterCheckpoint::keep_running);
    // Presses Ctrl-Alt-Del on the guest's PS/2 keyboard (Linux reboots, or
    // signals its init). Only while running.
    void send_ctrl_alt_del();

    // Blocks until the VM has exited and returns why. Throws if the VM was
    // never started (nothing would ever end it).
    ExitInfo wait();
    // As wait(), but gives up after `timeout`: std::nullopt if still running.
    std::optional<ExitInfo> wait_for(std::chrono::milliseconds timeout);
    // Stops the VM (ExitReason::stopped unless it had already exited) and
    // returns its exit. Idempotent.
    ExitInfo stop();

    // Replaces the rate limit of the disk `disk_id` (DiskConfig::id, or its
    // file name) while the VM exists, running or not: the new buckets start
    // full, and a request held under the old limit is asked again at once.
    // Later checkpoints record the new limit. An empty RateLimitConfig lifts
    // it. Not after the VM exited.
    void set_rate_limit(std::string_view disk_id, const RateLimitConfig& limit);
    // The same for the network device `net_id` (NetConfig::id, or "netN"):
    // its receive and transmit limits, each left as it is when unset. A
    // frame held under the old limit is asked again at once.
    void set_net_rate_limit(std::string_view net_id, const std::optional<RateLimitConfig>& rx,
                            const std::optional<RateLimitConfig>& tx);

    State state() const;
    // The VM's counters, read without pausing it; allowed in every state
    // (it waits for a control call in progress, such as a checkpoint).
    // After the VM exited: the final counts.
    Metrics metrics() const;

  private:
    class Impl;
    explicit Vm(std::unique_ptr<Impl> impl) noexcept;
    Impl& impl() const;
    std::unique_ptr<Impl> impl_;
};

// libember logs to stderr, prefixed "ember: ". Process-wide.
enum class LogLevel { debug, info, warning, error };
void set_log_level(LogLevel level) noexcept;

const char* version() noexcept; // e.g. "0.1.0"

} // namespace ember::embed
