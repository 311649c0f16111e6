// One line about a paused vcpu for `kill -USR2` dumps: where it is, whether
// it can take interrupts, what its local APIC has pending or in service, and
// its timer. Enough to tell a vcpu spinning with interrupts off from one
// halted with an interrupt it never got.
#pragma once

#include <string>

#include "vmm/kvm.h"

namespace ember {

std::string describe_vcpu(uint32_t index, const VcpuState& s);
// The IOAPIC's pins `first`..`last`: vector, destination, trigger mode,
// mask, and remote IRR (a level interrupt not yet EOIed).
std::string describe_ioapic(const kvm_irqchip& ioapic, unsigned first, unsigned last);

} // namespace ember
