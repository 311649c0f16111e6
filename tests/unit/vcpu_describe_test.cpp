#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <string>

#include "vmm/vcpu_describe.h"

using namespace ember;

namespace {
void set_apic(kvm_lapic_state& l, size_t offset, uint32_t v) {
    std::memcpy(l.regs + offset, &v, sizeof v);
}
} // namespace

TEST_CASE("describe_vcpu: interrupt state of a halted vcpu, readable at a glance") {
    auto s = std::make_unique<VcpuState>();
    std::memset(s.get(), 0, sizeof *s);
    s->regs.rip = 0xffffffff81a17a0bull;
    s->regs.rflags = 0x246; // IF set
    s->mp_state.mp_state = KVM_MP_STATE_HALTED;
    set_apic(s->lapic, 0x200 + 0x10 * 1, 1u << 2);   // IRR vector 0x22
    set_apic(s->lapic, 0x200 + 0x10 * 7, 1u << 27);  // IRR vector 0xfb
    set_apic(s->lapic, 0x100 + 0x10 * 7, 1u << 12);  // ISR vector 0xec
    set_apic(s->lapic, 0x320, 0xec);                 // LVT timer: one-shot, vector 0xec
    s->msr_count = 1;
    s->msrs[0].index = 0x6e0;
    s->msrs[0].data = 0x1234;
    const auto d = describe_vcpu(1, *s);
    INFO(d);
    CHECK(d.find("vcpu1: halted rip=0xffffffff81a17a0b cpl=0 if=1") == 0);
    CHECK(d.find("irr=0x22,0xfb isr=0xec tmr=-") != std::string::npos);
    CHECK(d.find("timer one-shot vector=0xec") != std::string::npos);
    CHECK(d.find("tsc_deadline=0x1234") != std::string::npos);
}

TEST_CASE("describe_ioapic: trigger mode, mask and remote IRR per pin") {
    kvm_irqchip chip{};
    chip.chip.ioapic.redirtbl[5].fields.vector = 0x22;
    chip.chip.ioapic.redirtbl[6].fields.vector = 0x23;
    chip.chip.ioapic.redirtbl[6].fields.trig_mode = 1;
    chip.chip.ioapic.redirtbl[6].fields.remote_irr = 1;
    chip.chip.ioapic.redirtbl[7].fields.mask = 1;
    const auto d = describe_ioapic(chip, 5, 7);
    CHECK(d == "ioapic irr=0x0: pin5=v0x22/d0/edge pin6=v0x23/d0/level/remote-irr pin7=v0x0/d0/edge/masked");
}
