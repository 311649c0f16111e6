// Everything needed to build a VM, as a plain value (the CLI fills it; the
// embedding API will too).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "devices/block/disk_spec.h"
#include "devices/net/net_spec.h"
#include "vmm/console.h"
#include "vmm/fault/fault_points.h"
#include "vmm/guest_memory.h"

namespace ember {

inline constexpr const char* kDefaultCmdline = "console=ttyS0 reboot=k panic=1";
inline constexpr uint64_t kDefaultMemBytes = 512ULL << 20;
inline constexpr uint64_t kMinMemBytes = 32ULL << 20;
inline constexpr uint32_t kMaxCpus = 254; // one IOAPIC, 8-bit APIC IDs, 0xff is broadcast

struct VmConfig {
    std::filesystem::path kernel;
    std::optional<std::filesystem::path> initrd;
    std::string cmdline = kDefaultCmdline;
    uint32_t cpus = 1;
    // The host CPU each vcpu thread runs on, in vcpu order (--vcpu-cpus);
    // empty: wherever ember may run. Checked by check_vcpu_cpus.
    std::vector<uint32_t> vcpu_cpus;
    uint64_t mem_bytes = kDefaultMemBytes;
    // 2 MiB huge pages for guest RAM (--huge-pages 2M): mem_bytes a multiple
    // of 2 MiB, the pages reserved from the host's pool when the VM is built.
    HugePages huge_pages = HugePages::none;
    std::vector<DiskSpec> disks;
    ConsoleSpec console;
    bool virtio_cmdline = false; // also describe virtio-mmio devices on the command line
    // virtio-net devices over host taps (--net), in the slots after the
    // disks; ids resolved (resolve_net_ids).
    std::vector<NetSpec> nets;
    // A virtio entropy device (--entropy), in the slot after the last disk
    // (and network device);
    // the guest's buffers are filled from the host's getrandom().
    bool entropy = false;

    // Checkpoints (SIGUSR1): where to write them and what to do afterwards.
    std::optional<std::filesystem::path> checkpoint_dir;
    bool continue_after_checkpoint = false;
    // Wait for the host I/O in flight to finish before saving (drain-first,
    // the order Firecracker uses), instead of saving it as in flight:
    // --checkpoint-drain, for comparison and for backends without resubmission.
    bool checkpoint_drain = false;
    // Also copy every writable disk image into the checkpoint directory
    // (--checkpoint-disks copy); restore then uses the copies.
    bool checkpoint_copy_disks = false;
    // Build the VM but keep its vcpus stopped (restore --paused): it can be
    // checkpointed or stopped, and runs only when resumed.
    bool start_paused = false;
    // Crash injection (--fault): armed once the VM is built; restart-io and
    // random faults get an I/O supervisor thread (vmm/fault).
    std::vector<fault::FaultSpec> faults;
};

} // namespace ember
