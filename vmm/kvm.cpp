#include "vmm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <fmt/format.h>

#include "vmm/errors.h"

namespace ember {
namespace {

// ioctl with EINTR retry for the calls that may be interrupted by our kick signal.
template <typename Arg>
int xioctl(int fd, unsigned long req, Arg arg, const char* name) {
    int r;
    do {
        r = ::ioctl(fd, req, arg);
    } while (r < 0 && errno == EINTR);
    if (r < 0) throw_errno(name);
    return r;
}

// Debian's <linux/kvm.h> declares the variable-length ioctl structs with
// __DECLARE_FLEX_ARRAY, which in C++ inserts a 1-byte empty struct: sizeof and
// the array offset then differ from the kernel's C layout, and so does the
// ioctl number. These mirrors have the C layout; the asserts pin it.
struct CpuidList {
    uint32_t nent;
    uint32_t padding;
    kvm_cpuid_entry2 entries[256]; // KVM_MAX_CPUID_ENTRIES
};
static_assert(offsetof(CpuidList, entries) == 8);
struct MsrIndexList {
    uint32_t nmsrs;
    uint32_t indices[1024];
};
static_assert(offsetof(MsrIndexList, indices) == 4);
struct MsrList {
    uint32_t nmsrs;
    uint32_t pad;
    kvm_msr_entry entries[256];
};
static_assert(offsetof(MsrList, entries) == 8);

static_assert(sizeof(XsaveArea) == 4096);
constexpr unsigned long kGetXsave = _IOC(_IOC_READ, KVMIO, 0xa4, sizeof(XsaveArea));
constexpr unsigned long kSetXsave = _IOC(_IOC_WRITE, KVMIO, 0xa5, sizeof(XsaveArea));
constexpr unsigned long kGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, 8);
constexpr unsigned long kGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, 8);
constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, 8);
constexpr unsigned long kGetMsrIndexList = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x02, 4);
constexpr unsigned long kSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, 8);

} // namespace

Kvm::Kvm() : fd_(::open("/dev/kvm", O_RDWR | O_CLOEXEC)) {
    if (!fd_) {
        const int err = errno;
        throw SystemError(err == ENOENT ? "open /dev/kvm (is the kvm module loaded?)"
                                        : "open /dev/kvm",
                          err);
    }
    const int version = xioctl(fd_.get(), KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION");
    if (version != KVM_API_VERSION)
        throw Error(fmt::format("/dev/kvm reports API version {}, ember needs {}", version,
                                KVM_API_VERSION));
    struct Cap {
        long cap;
        const char* name;
    };
    for (const Cap c : {Cap{KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"}, Cap{KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
                        Cap{KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
                        Cap{KVM_CAP_PIT2, "KVM_CAP_PIT2"},
                        Cap{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
                        Cap{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
                        Cap{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"}}) {
        if (check_extension(c.cap) <= 0)
            throw Error(fmt::format("this host's KVM lacks {}, which ember needs", c.name));
    }
}

int Kvm::check_extension(long cap) const {
    return xioctl(fd_.get(), KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION");
}

std::vector<kvm_cpuid_entry2> Kvm::supported_cpuid() const {
    auto c = std::make_unique<CpuidList>();
    c->nent = std::size(c->entries);
    xioctl(fd_.get(), kGetSupportedCpuid, c.get(), "KVM_GET_SUPPORTED_CPUID");
    return {c->entries, c->entries + std::min<size_t>(c->nent, std::size(c->entries))};
}

std::vector<uint32_t> Kvm::msr_index_list() const {
    auto l = std::make_unique<MsrIndexList>();
    l->nmsrs = std::size(l->indices);
    xioctl(fd_.get(), kGetMsrIndexList, l.get(), "KVM_GET_MSR_INDEX_LIST");
    return {l->indices, l->indices + std::min<size_t>(l->nmsrs, std::size(l->indices))};
}

size_t Kvm::vcpu_mmap_size() const {
    return static_cast<size_t>(xioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE"));
}

KvmVm::KvmVm(const Kvm& kvm)
    : kvm_(kvm), fd_(xioctl(kvm.fd(), KVM_CREATE_VM, 0, "KVM_CREATE_VM")) {}

void KvmVm::set_tss_address(uint64_t addr) {
    xioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr), "KVM_SET_TSS_ADDR");
}

void KvmVm::set_identity_map_address(uint64_t addr) {
    xioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr, "KVM_SET_IDENTITY_MAP_ADDR");
}

void KvmVm::create_irqchip() { xioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP"); }

void KvmVm::create_pit2() {
    kvm_pit_config cfg{};
    cfg.flags = KVM_PIT_SPEAKER_DUMMY;
    xioctl(fd_.get(), KVM_CREATE_PIT2, &cfg, "KVM_CREATE_PIT2");
}

void KvmVm::set_user_memory_region(uint32_t slot, uint64_t guest_addr, uint64_t size, void* host) {
    kvm_userspace_memory_region r{};
    r.slot = slot;
    r.guest_phys_addr = guest_addr;
    r.memory_size = size;
    r.userspace_addr = reinterpret_cast<uint64_t>(host);
    xioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r, "KVM_SET_USER_MEMORY_REGION");
}

void KvmVm::add_ioeventfd_mmio(uint64_t addr, uint32_t len, uint64_t datamatch, int efd) {
    kvm_ioeventfd io{};
    io.addr = addr;
    io.len = len;
    io.datamatch = datamatch;
    io.fd = efd;
    io.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
    xioctl(fd_.get(), KVM_IOEVENTFD, &io, "KVM_IOEVENTFD");
}

void KvmVm::add_irqfd(int efd, uint32_t gsi) {
    kvm_irqfd irq{};
    irq.fd = static_cast<uint32_t>(efd);
    irq.gsi = gsi;
    xioctl(fd_.get(), KVM_IRQFD, &irq, "KVM_IRQFD");
}

void KvmVm::set_irq_line(uint32_t gsi, bool level) {
    kvm_irq_level l{};
    l.irq = gsi;
    l.level = level ? 1 : 0;
    xioctl(fd_.get(), KVM_IRQ_LINE, &l, "KVM_IRQ_LINE");
}

int KvmVm::create_vcpu(uint32_t id) const {
    return xioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id), "KVM_CREATE_VCPU");
}

VmDeviceState KvmVm::save_device_state() const {
    VmDeviceState s{};
    s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
    s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
    s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
    xioctl(fd_.get(), KVM_GET_IRQCHIP, &s.pic_master, "KVM_GET_IRQCHIP(PIC master)");
    xioctl(fd_.get(), KVM_GET_IRQCHIP, &s.pic_slave, "KVM_GET_IRQCHIP(PIC slave)");
    xioctl(fd_.get(), KVM_GET_IRQCHIP, &s.ioapic, "KVM_GET_IRQCHIP(IOAPIC)");
    xioctl(fd_.get(), KVM_GET_PIT2, &s.pit, "KVM_GET_PIT2");
    xioctl(fd_.get(), KVM_GET_CLOCK, &s.clock, "KVM_GET_CLOCK");
    return s;
}

void KvmVm::restore_device_state(const VmDeviceState& s) {
    // kvmclock first: the PIT and LAPIC timers are armed relative to it.
    kvm_clock_data clock{};
    clock.clock = s.clock.clock;
    xioctl(fd_.get(), KVM_SET_CLOCK, &clock, "KVM_SET_CLOCK");
    xioctl(fd_.get(), KVM_SET_PIT2, &s.pit, "KVM_SET_PIT2");
    xioctl(fd_.get(), KVM_SET_IRQCHIP, &s.pic_master, "KVM_SET_IRQCHIP(PIC master)");
    xioctl(fd_.get(), KVM_SET_IRQCHIP, &s.pic_slave, "KVM_SET_IRQCHIP(PIC slave)");
    xioctl(fd_.get(), KVM_SET_IRQCHIP, &s.ioapic, "KVM_SET_IRQCHIP(IOAPIC)");
}

KvmVcpu::KvmVcpu(const KvmVm& vm, uint32_t id) : id_(id), fd_(vm.create_vcpu(id)) {
    run_size_ = vm.kvm().vcpu_mmap_size();
    void* p = ::mmap(nullptr, run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (p == MAP_FAILED) throw_errno("mmap(kvm_run)");
    run_ = static_cast<kvm_run*>(p);
}

KvmVcpu::~KvmVcpu() {
    if (run_ != nullptr) ::munmap(run_, run_size_);
}

bool KvmVcpu::run() {
    if (::ioctl(fd_.get(), KVM_RUN, 0) == 0) return true;
    if (errno == EINTR || errno == EAGAIN) return false;
    throw_errno(fmt::format("KVM_RUN (vcpu {})", id_));
}

kvm_regs KvmVcpu::regs() const {
    kvm_regs r{};
    xioctl(fd_.get(), KVM_GET_REGS, &r, "KVM_GET_REGS");
    return r;
}
void KvmVcpu::set_regs(const kvm_regs& r) { xioctl(fd_.get(), KVM_SET_REGS, &r, "KVM_SET_REGS"); }

kvm_sregs KvmVcpu::sregs() const {
    kvm_sregs s{};
    xioctl(fd_.get(), KVM_GET_SREGS, &s, "KVM_GET_SREGS");
    return s;
}
void KvmVcpu::set_sregs(const kvm_sregs& s) { xioctl(fd_.get(), KVM_SET_SREGS, &s, "KVM_SET_SREGS"); }

void KvmVcpu::set_fpu(const kvm_fpu& f) { xioctl(fd_.get(), KVM_SET_FPU, &f, "KVM_SET_FPU"); }

void KvmVcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
    auto c = std::make_unique<CpuidList>();
    if (entries.size() > std::size(c->entries)) throw Error("KVM_SET_CPUID2: too many CPUID entries");
    c->nent = static_cast<uint32_t>(entries.size());
    std::copy(entries.begin(), entries.end(), c->entries);
    xioctl(fd_.get(), kSetCpuid2, c.get(), "KVM_SET_CPUID2");
}

void KvmVcpu::set_msrs(const std::vector<kvm_msr_entry>& entries) {
    auto m = std::make_unique<MsrList>();
    if (entries.size() > std::size(m->entries)) throw Error("KVM_SET_MSRS: too many MSRs");
    m->nmsrs = static_cast<uint32_t>(entries.size());
    std::copy(entries.begin(), entries.end(), m->entries);
    const int n = xioctl(fd_.get(), kSetMsrs, m.get(), "KVM_SET_MSRS");
    if (static_cast<size_t>(n) != entries.size())
        throw Error(fmt::format("KVM_SET_MSRS: vcpu {} rejected MSR {:#x}", id_,
                                entries[static_cast<size_t>(n)].index));
}

kvm_lapic_state KvmVcpu::lapic() const {
    kvm_lapic_state s{};
    xioctl(fd_.get(), KVM_GET_LAPIC, &s, "KVM_GET_LAPIC");
    return s;
}
void KvmVcpu::set_lapic(const kvm_lapic_state& s) { xioctl(fd_.get(), KVM_SET_LAPIC, &s, "KVM_SET_LAPIC"); }

} // namespace ember

namespace ember {

VcpuState KvmVcpu::save_state(const std::vector<uint32_t>& msr_indices,
                              const std::vector<kvm_cpuid_entry2>& cpuid) const {
    auto s = std::make_unique<VcpuState>();
    std::memset(s.get(), 0, sizeof(VcpuState));
    // KVM_GET_MP_STATE first: it accepts pending INIT/SIPI events
    // (kvm_apic_accept_events), which rewrite the registers, segments and
    // LAPIC read below; read earlier, they would be from before the INIT
    // while mp_state is from after it.
    xioctl(fd_.get(), KVM_GET_MP_STATE, &s->mp_state, "KVM_GET_MP_STATE");
    s->regs = regs();
    s->sregs = sregs();
    xioctl(fd_.get(), kGetXsave, &s->xsave, "KVM_GET_XSAVE");
    xioctl(fd_.get(), KVM_GET_XCRS, &s->xcrs, "KVM_GET_XCRS");
    xioctl(fd_.get(), KVM_GET_DEBUGREGS, &s->debugregs, "KVM_GET_DEBUGREGS");
    s->lapic = lapic();
    // KVM_GET_MSRS stops at the first MSR it cannot read and returns how many
    // it did; skip that one and go on, so one odd MSR never fails a snapshot.
    auto m = std::make_unique<MsrList>();
    size_t next = 0;
    while (next < msr_indices.size() && s->msr_count < std::size(s->msrs)) {
        const size_t batch = std::min({msr_indices.size() - next, std::size(m->entries),
                                       std::size(s->msrs) - s->msr_count});
        std::memset(m.get(), 0, sizeof(MsrList));
        m->nmsrs = static_cast<uint32_t>(batch);
        for (size_t i = 0; i < batch; ++i) m->entries[i].index = msr_indices[next + i];
        const int got = xioctl(fd_.get(), kGetMsrs, m.get(), "KVM_GET_MSRS");
        for (int i = 0; i < got; ++i) s->msrs[s->msr_count++] = m->entries[i];
        next += static_cast<size_t>(got) < batch ? static_cast<size_t>(got) + 1 : batch;
    }
    // Events (pending exception, interrupt, NMI) last, after every read that
    // can still move pending state (the LAPIC read syncs posted interrupts
    // into the IRR), as Firecracker reads them; restore_state() sets them last.
    xioctl(fd_.get(), KVM_GET_VCPU_EVENTS, &s->events, "KVM_GET_VCPU_EVENTS");
    s->cpuid_count = static_cast<uint32_t>(std::min(cpuid.size(), std::size(s->cpuid)));
    std::copy_n(cpuid.begin(), s->cpuid_count, s->cpuid);
    return *s;
}

void KvmVcpu::restore_state(const VcpuState& s) {
    if (s.cpuid_count > std::size(s.cpuid) || s.msr_count > std::size(s.msrs))
        throw Error("vcpu state has an impossible CPUID or MSR count");
    set_cpuid({s.cpuid, s.cpuid + s.cpuid_count});
    // Order as KVM needs it: mp_state and sregs before the LAPIC (which depends
    // on APIC base in sregs), MSRs before events (pending exceptions last).
    xioctl(fd_.get(), KVM_SET_MP_STATE, &s.mp_state, "KVM_SET_MP_STATE");
    set_regs(s.regs);
    set_sregs(s.sregs);
    xioctl(fd_.get(), kSetXsave, &s.xsave, "KVM_SET_XSAVE");
    xioctl(fd_.get(), KVM_SET_XCRS, &s.xcrs, "KVM_SET_XCRS");
    xioctl(fd_.get(), KVM_SET_DEBUGREGS, &s.debugregs, "KVM_SET_DEBUGREGS");
    set_lapic(s.lapic);
    set_msrs({s.msrs, s.msrs + s.msr_count});
    xioctl(fd_.get(), KVM_SET_VCPU_EVENTS, &s.events, "KVM_SET_VCPU_EVENTS");
}

} // namespace ember
