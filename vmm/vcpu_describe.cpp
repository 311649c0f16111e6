#include "vmm/vcpu_describe.h"

#include <cstring>

#include <fmt/format.h>

namespace ember {

namespace {
// Local APIC register file offsets (Intel SDM vol. 3 table 11-1).
constexpr size_t kApicTpr = 0x80;
constexpr size_t kApicIsr = 0x100;
constexpr size_t kApicTmr = 0x180;
constexpr size_t kApicIrr = 0x200;
constexpr size_t kApicLvtTimer = 0x320;
constexpr size_t kApicTimerInitial = 0x380;
constexpr uint32_t kMsrTscDeadline = 0x6e0;

uint32_t apic_reg(const kvm_lapic_state& l, size_t offset) {
    uint32_t v = 0;
    std::memcpy(&v, l.regs + offset, sizeof v);
    return v;
}

// The vectors set in one of the 256-bit APIC arrays (ISR, TMR, IRR): eight
// 32-bit registers 16 bytes apart.
std::string vectors(const kvm_lapic_state& l, size_t base) {
    std::string out;
    for (unsigned i = 0; i < 8; ++i) {
        const uint32_t bits = apic_reg(l, base + 16 * i);
        for (unsigned b = 0; b < 32; ++b)
            if ((bits >> b) & 1u) out += fmt::format("{}{:#x}", out.empty() ? "" : ",", i * 32 + b);
    }
    return out.empty() ? "-" : out;
}

std::string_view mp_state_name(uint32_t s) {
    switch (s) {
    case KVM_MP_STATE_RUNNABLE:
        return "runnable";
    case KVM_MP_STATE_UNINITIALIZED:
        return "uninitialized";
    case KVM_MP_STATE_INIT_RECEIVED:
        return "init-received";
    case KVM_MP_STATE_HALTED:
        return "halted";
    case KVM_MP_STATE_SIPI_RECEIVED:
        return "sipi-received";
    default:
        return "other";
    }
}
} // namespace

std::string describe_vcpu(uint32_t index, const VcpuState& s) {
    uint64_t deadline = 0;
    for (uint32_t i = 0; i < s.msr_count && i < 256; ++i)
        if (s.msrs[i].index == kMsrTscDeadline) deadline = s.msrs[i].data;
    const uint32_t lvtt = apic_reg(s.lapic, kApicLvtTimer);
    const char* timer_mode = (lvtt >> 16) & 1u ? "masked" : ((lvtt >> 17) & 3u) == 2 ? "tsc-deadline"
                                                         : ((lvtt >> 17) & 3u) == 1 ? "periodic"
                                                                                     : "one-shot";
    return fmt::format(
        "vcpu{}: {} rip={:#x} cpl={} if={} | apic tpr={:#x} irr={} isr={} tmr={} | timer {} "
        "vector={:#x} initial={} tsc_deadline={:#x} | events: irq injected={} nr={:#x} nmi "
        "pending={} injected={} masked={} shadow={:#x}",
        index, mp_state_name(s.mp_state.mp_state), s.regs.rip, s.sregs.cs.selector & 3u,
        (s.regs.rflags >> 9) & 1u, apic_reg(s.lapic, kApicTpr), vectors(s.lapic, kApicIrr),
        vectors(s.lapic, kApicIsr), vectors(s.lapic, kApicTmr), timer_mode, lvtt & 0xffu,
        apic_reg(s.lapic, kApicTimerInitial), deadline, s.events.interrupt.injected,
        s.events.interrupt.nr, s.events.nmi.pending, s.events.nmi.injected, s.events.nmi.masked,
        s.events.interrupt.shadow);
}

std::string describe_ioapic(const kvm_irqchip& chip, unsigned first, unsigned last) {
    const auto& io = chip.chip.ioapic;
    std::string out = fmt::format("ioapic irr={:#x}:", io.irr);
    for (unsigned pin = first; pin <= last && pin < KVM_IOAPIC_NUM_PINS; ++pin) {
        const auto& e = io.redirtbl[pin].fields;
        out += fmt::format(" pin{}=v{:#x}/d{}/{}{}{}", pin, e.vector, e.dest_id, e.trig_mode ? "level" : "edge",
                           e.mask ? "/masked" : "", e.remote_irr ? "/remote-irr" : "");
    }
    return out;
}

} // namespace ember
