#include "vmm/snapshot/compare.h"

#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "vmm/kvm.h"

namespace ember {
namespace {

constexpr uint32_t kMsrTsc = 0x10;
constexpr uint32_t kMsrTscAdjust = 0x3b;
constexpr uint32_t kMsrSysenterEsp = 0x175;
constexpr uint32_t kMsrSysenterEip = 0x176;
constexpr uint32_t kMsrHvVpRuntime = 0x40000010;    // Hyper-V vcpu run time: a counter
constexpr uint32_t kMsrHvTimeRefCount = 0x40000020; // Hyper-V reference time: a counter

// MSRs whose value legitimately changes between a restore and the next save.
// KVM on AMD keeps only the low 32 bits of the SYSENTER ESP/EIP MSRs unless
// the guest's CPUID vendor is Intel (SYSENTER is a 32-bit-only path there), so
// the high bits Linux writes do not survive a restore; they are never used.
bool volatile_msr(uint32_t index) {
    switch (index) {
    case kMsrTsc:
    case kMsrTscAdjust:
    case kMsrSysenterEsp:
    case kMsrSysenterEip:
    case kMsrHvVpRuntime:
    case kMsrHvTimeRefCount:
        return true;
    default:
        return false;
    }
}
constexpr size_t kLapicTimerCurrentCount = 0x390; // APIC TMCCT (Intel SDM vol. 3, table 10-1)
// PPR is derived from TPR and the highest vector in service (SDM 10.8.3.1),
// both compared. KVM recomputes it when the vcpu next runs; right after
// KVM_SET_LAPIC it reports TPR alone, so a VM restored paused while an
// interrupt was in service (a timer tick, say) saves PPR = TPR.
constexpr size_t kLapicProcessorPriority = 0xa0;

template <typename T>
bool same(const T& a, const T& b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}

} // namespace

void compare_vcpu_state(const std::string& name, const VcpuState& a, const VcpuState& b,
                        std::vector<std::string>& out) {
    auto field = [&](const char* f, bool equal) {
        if (!equal) out.push_back(fmt::format("{}: {} differs", name, f));
    };
    field("regs", same(a.regs, b.regs));
    field("sregs", same(a.sregs, b.sregs));
    field("xsave", same(a.xsave, b.xsave));
    field("xcrs", same(a.xcrs, b.xcrs));
    field("mp_state", same(a.mp_state, b.mp_state));
    field("events", same(a.events, b.events));
    field("debugregs", same(a.debugregs, b.debugregs));
    kvm_lapic_state la = a.lapic, lb = b.lapic;
    std::memset(la.regs + kLapicTimerCurrentCount, 0, 4);
    std::memset(lb.regs + kLapicTimerCurrentCount, 0, 4);
    std::memset(la.regs + kLapicProcessorPriority, 0, 4);
    std::memset(lb.regs + kLapicProcessorPriority, 0, 4);
    field("lapic", same(la, lb));
    field("cpuid", a.cpuid_count == b.cpuid_count &&
                       std::memcmp(a.cpuid, b.cpuid, a.cpuid_count * sizeof(kvm_cpuid_entry2)) == 0);
    if (a.msr_count != b.msr_count) {
        out.push_back(fmt::format("{}: {} MSRs against {}", name, a.msr_count, b.msr_count));
        return;
    }
    for (uint32_t i = 0; i < a.msr_count && i < std::size(a.msrs); ++i) {
        const auto& x = a.msrs[i];
        const auto& y = b.msrs[i];
        if (x.index != y.index) {
            out.push_back(fmt::format("{}: MSR list differs at entry {}", name, i));
            return;
        }
        if (volatile_msr(x.index)) continue;
        if (x.data != y.data)
            out.push_back(fmt::format("{}: MSR {:#x} is {:#x} against {:#x}", name, x.index, x.data, y.data));
    }
}

std::vector<std::string> compare_snapshots(const SnapshotReader& a, const SnapshotReader& b) {
    std::vector<std::string> out;
    for (const auto& sec : a.manifest()["sections"]) {
        const std::string name = sec.value("name", "");
        if (name == "memory" || name == "memory-extents") continue;
        if (!b.has(name)) {
            out.push_back(fmt::format("{}: missing from the second snapshot", name));
            continue;
        }
        if (name.rfind("vcpu", 0) == 0) {
            const auto va = std::make_unique<VcpuState>(a.read_value<VcpuState>(name));
            const auto vb = std::make_unique<VcpuState>(b.read_value<VcpuState>(name));
            compare_vcpu_state(name, *va, *vb, out);
        } else if (name == "vm") {
            auto va = a.read_value<VmDeviceState>(name);
            auto vb = b.read_value<VmDeviceState>(name);
            std::memset(&va.clock, 0, sizeof va.clock);
            std::memset(&vb.clock, 0, sizeof vb.clock);
            // The PIT's channel counters run on their own as well.
            std::memset(&va.pit, 0, sizeof va.pit);
            std::memset(&vb.pit, 0, sizeof vb.pit);
            if (!same(va, vb)) out.push_back("vm: interrupt controller state differs");
        } else if (a.read(name) != b.read(name)) {
            out.push_back(fmt::format("{}: differs", name));
        }
    }
    return out;
}

} // namespace ember
