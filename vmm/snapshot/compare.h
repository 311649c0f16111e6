// Compares the guest-visible state of two snapshots: what a restore followed
// at once by a checkpoint must reproduce. Counters that advance on their own
// while a VM exists (the TSC, the LAPIC timer's current count, kvmclock) are
// left out; everything else in the vcpu and device sections must be equal.
#pragma once

#include <string>
#include <vector>

#include "vmm/snapshot/snapshot.h"

namespace ember {

// One line per difference, naming the section and field; empty when equal.
std::vector<std::string> compare_snapshots(const SnapshotReader& a, const SnapshotReader& b);

struct VcpuState;
// The same for one vcpu's state, appending to `out`.
void compare_vcpu_state(const std::string& name, const VcpuState& a, const VcpuState& b,
                        std::vector<std::string>& out);

} // namespace ember
