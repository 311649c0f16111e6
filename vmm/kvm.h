// Thin RAII wrappers over the KVM API. Every ioctl is wrapped once here, and a
// failure throws SystemError naming the ioctl and errno.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "vmm/unique_fd.h"

namespace ember {

class KvmVcpu;

// XSAVE area with the C layout of struct kvm_xsave (see kvm.cpp on why not the header's).
struct XsaveArea {
    uint32_t region[1024];
};

// Everything KVM holds for one vcpu, as a plain value a snapshot can store.
struct VcpuState {
    kvm_regs regs;
    kvm_sregs sregs;
    XsaveArea xsave;
    kvm_xcrs xcrs;
    kvm_lapic_state lapic;
    kvm_mp_state mp_state;
    kvm_vcpu_events events;
    kvm_debugregs debugregs;
    uint32_t msr_count;
    uint32_t cpuid_count;
    kvm_msr_entry msrs[256];
    kvm_cpuid_entry2 cpuid[256];
};

// The VM-wide in-kernel device state: PIC pair, IOAPIC, PIT, kvmclock.
struct VmDeviceState {
    kvm_irqchip pic_master;
    kvm_irqchip pic_slave;
    kvm_irqchip ioapic;
    kvm_pit_state2 pit;
    kvm_clock_data clock;
};

// /dev/kvm: the system fd.
class Kvm final {
public:
    Kvm(); // opens /dev/kvm, checks the API version and required capabilities
    int fd() const noexcept { return fd_.get(); }
    int check_extension(long cap) const;
    std::vector<kvm_cpuid_entry2> supported_cpuid() const;
    std::vector<uint32_t> msr_index_list() const;
    size_t vcpu_mmap_size() const;

private:
    UniqueFd fd_;
};

// One VM fd.
class KvmVm final {
public:
    explicit KvmVm(const Kvm& kvm);
    int fd() const noexcept { return fd_.get(); }
    const Kvm& kvm() const noexcept { return kvm_; }

    void set_tss_address(uint64_t addr);
    void set_identity_map_address(uint64_t addr);
    void create_irqchip();
    void create_pit2();
    void set_user_memory_region(uint32_t slot, uint64_t guest_addr, uint64_t size, void* host);
    // Guest writes of `len` bytes to `addr` equal to `datamatch` signal `efd`
    // without a userspace exit (virtio QueueNotify).
    void add_ioeventfd_mmio(uint64_t addr, uint32_t len, uint64_t datamatch, int efd);
    // Signalling `efd` injects an edge on `gsi` of the in-kernel irqchip.
    void add_irqfd(int efd, uint32_t gsi);
    void set_irq_line(uint32_t gsi, bool level);
    int create_vcpu(uint32_t id) const;

    VmDeviceState save_device_state() const;
    void restore_device_state(const VmDeviceState& s);

private:
    const Kvm& kvm_;
    UniqueFd fd_;
};

// One vcpu fd with its mapped kvm_run structure.
class KvmVcpu final {
public:
    KvmVcpu(const KvmVm& vm, uint32_t id);
    ~KvmVcpu();
    KvmVcpu(const KvmVcpu&) = delete;
    KvmVcpu& operator=(const KvmVcpu&) = delete;

    uint32_t id() const noexcept { return id_; }
    kvm_run* run_data() const noexcept { return run_; }

    // Returns false when KVM_RUN was interrupted (EINTR/EAGAIN); throws otherwise.
    bool run();

    kvm_regs regs() const;
    void set_regs(const kvm_regs& r);
    kvm_sregs sregs() const;
    void set_sregs(const kvm_sregs& s);
    void set_fpu(const kvm_fpu& f);
    void set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
    void set_msrs(const std::vector<kvm_msr_entry>& entries);
    kvm_lapic_state lapic() const;
    void set_lapic(const kvm_lapic_state& s);

    // Only while the vcpu is out of KVM_RUN (paused). `msr_indices` lists the
    // MSRs to save; ones this vcpu refuses are skipped.
    VcpuState save_state(const std::vector<uint32_t>& msr_indices, const std::vector<kvm_cpuid_entry2>& cpuid) const;
    void restore_state(const VcpuState& s);

private:
    uint32_t id_;
    UniqueFd fd_;
    kvm_run* run_ = nullptr;
    size_t run_size_ = 0;
};

} // namespace ember
