// A running virtual machine: KVM VM, guest memory, devices and vcpu threads.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>
#include <vector>

#include "devices/block/virtio_block.h"
#include "devices/io_bus.h"
#include "devices/legacy.h"
#include "devices/net/virtio_net.h"
#include "devices/rng/virtio_rng.h"
#include "devices/serial.h"
#include "devices/virtio/mmio_transport.h"
#include "vmm/acpi/acpi.h"
#include "vmm/console.h"
#include "vmm/diagnostics.h"
#include "vmm/exit_monitor.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/vcpu_thread.h"
#include "vmm/vm_config.h"

namespace ember {

class SnapshotReader;
class IoSupervisor;

// Counters since this process built the VM (metrics): every vcpu's exits to
// ember and every disk's requests, in --disk order.
struct VmMetrics {
    struct Disk {
        std::string id; // the GET_ID string
        std::string path;
        BlockStatsSnapshot stats;
    };
    std::vector<VcpuThread::ExitCounts> vcpus;
    std::vector<Disk> disks;
    struct Net {
        std::string id;
        std::string tap;
        NetStatsSnapshot stats;
    };
    std::vector<Net> nets;                   // in --net order
    std::optional<RngStatsSnapshot> entropy; // with --entropy
};

struct CheckpointStats {
    uint64_t memory_bytes = 0;
    uint64_t inflight_requests = 0;
    double pause_ms = 0;
};

// What Vm::run() may take over in the process. The ember command wants both;
// libember asks only when its user opts in (include/ember/vm.h).
struct RunOptions {
    // Read SIGUSR1 through a signalfd (blocking it in the calling thread) and
    // checkpoint into config.checkpoint_dir on each one.
    bool checkpoint_on_sigusr1 = true;
    // For a stdio console: forward stdin, terminal in raw mode.
    bool console_input = true;
};

class Vm final {
public:
    // Builds the whole VM and loads the guest; throws ember::Error with a
    // user-facing message.
    explicit Vm(const VmConfig& config);
    // Rebuilds a VM from a snapshot; `config` is the snapshot's configuration
    // with the user's overrides (disk paths, console) applied.
    Vm(const VmConfig& config, const SnapshotReader& snapshot);
    ~Vm();

    // Runs the guest until it stops; returns why. SIGUSR1 takes a checkpoint
    // into config.checkpoint_dir while it runs (unless options say not to).
    VmExit run(const RunOptions& options = {});

    // Pauses the guest, writes a snapshot to `dir`, and resumes it, unless
    // `then_resume` is false: a VM that stops after its checkpoint must not
    // run on, or its guest would write to its disks and answer on its network
    // what the restored guest never did (a TCP peer that saw the ghost's
    // acknowledgements never sends that data again).
    CheckpointStats checkpoint(const std::filesystem::path& dir, bool then_resume = true);
    void pause();
    void resume();
    // Presses Ctrl-Alt-Del on the guest's PS/2 keyboard; throws ember::Error
    // if the guest has no keyboard driver listening.
    void send_ctrl_alt_del();

    static nlohmann::json config_to_json(const VmConfig& config);
    // A disk's or network device's limit as checkpoints and GET /vm/config
    // show it, with the field names of Firecracker's rate_limiter ({} for no
    // limit).
    static nlohmann::json rate_limit_to_json(const RateLimit& limit);
    // The configuration a checkpoint saved, every field's type checked
    // (SnapshotError naming the field), but not whether this host can run it
    // (its CPUs, the disks' options): what snapshot-info describes.
    static VmConfig saved_config(const nlohmann::json& j);
    // saved_config() and those checks: what a restore runs.
    static VmConfig config_from_json(const nlohmann::json& j);
    // What saved_config() leaves in the JSON of disk `i` (it checked that
    // there is one), with the same errors: the disk's size at the checkpoint,
    // and the file name of its captured copy ("" when none was made).
    static uint64_t saved_disk_size(const nlohmann::json& j, size_t i);
    static std::string saved_disk_capture(const nlohmann::json& j, size_t i);
    // What disk `i`'s buckets held at the checkpoint, checked against its
    // saved `limit` (SnapshotError naming the field); empty when the
    // checkpoint has none (full buckets, also in checkpoints from before).
    static std::optional<RateLimitFill> saved_rate_limit_fill(const nlohmann::json& j, size_t i,
                                                              const RateLimit& limit);
    // The same for network device `i` (saved as `net`): what its receive
    // and transmit buckets held.
    static NetRateLimitFills saved_net_rate_limit_fills(const nlohmann::json& j, size_t i,
                                                        const NetSpec& net);

    ExitMonitor& exits() noexcept { return exits_; }
    // Safe from any thread, at any point of the VM's life: relaxed reads of
    // counters only (a disk's counters may trail its used ring a little).
    VmMetrics metrics() const;
    // Replaces the rate limit of the disk whose id is `id`, from now on and
    // in later checkpoints. Throws Error (no such disk, a bucket that cannot
    // work).
    void set_disk_rate_limit(std::string_view id, const RateLimit& limit);
    // The same for the network device whose id is `id`: its receive and
    // transmit limits, each kept when unset.
    void set_net_rate_limit(std::string_view id, const std::optional<RateLimit>& rx,
                            const std::optional<RateLimit>& tx);

  private:
    void setup_memory();
    void setup_devices();
    void load_guest();
    void setup_disks();
    void setup_nets();
    void setup_entropy();
    void add_virtio_device(std::unique_ptr<VirtioDevice> device);
    void setup_faults();
    void create_vcpus();
    void restore_from(const SnapshotReader& snapshot);
    void take_checkpoint_now();
    void quiesce_all();
    void drain_io();
    void capture_disks(const std::filesystem::path& dir, nlohmann::json& config);
    // Into the checkpoint's configuration: what each disk's and network
    // device's buckets hold.
    void save_rate_limit_fills(nlohmann::json& config) const;
    void shutdown();

    VmConfig config_;
    Kvm kvm_;
    KvmVm vm_;
    GuestMemory mem_;
    ExitMonitor exits_;
    Console console_;
    IoBus pio_{"port I/O"};
    IoBus mmio_{"MMIO"};
    EventFd serial_irq_;
    std::shared_ptr<Serial> serial_;
    EventFd keyboard_irq_;
    std::shared_ptr<I8042> i8042_;
    std::vector<std::shared_ptr<VirtioMmioTransport>> virtio_;
    std::vector<acpi::VirtioMmioSlot> virtio_slots_;
    std::vector<VirtioBlock*> blocks_; // owned by virtio_, in --disk order
    std::vector<VirtioNet*> nets_;     // owned by virtio_, after the disks, in --net order
    VirtioRng* rng_{nullptr};          // owned by virtio_, last; null without --entropy
    std::vector<std::unique_ptr<VcpuThread>> vcpus_;
    std::vector<std::vector<kvm_cpuid_entry2>> vcpu_cpuid_;
    std::vector<uint32_t> msr_indices_;
    bool vcpus_started_ = false;
    bool paused_ = false;
    // Serialises pause/resume/checkpoint between the SIGUSR1 path and the API.
    std::recursive_mutex control_mu_;
    // --fault restart-io or random: restarts the block I/O threads.
    std::unique_ptr<IoSupervisor> io_supervisor_;
    // Last member: unregistered first, before anything describe() reads.
    diagnostics::Registration diagnostics_;
    std::string describe();
};

} // namespace ember
