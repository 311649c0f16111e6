// What `ember restore` and the control socket's snapshot load share: the
// configuration a snapshot was taken with, its disks resolved and checked.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "vmm/snapshot/snapshot.h"
#include "vmm/vm_config.h"

namespace ember {

using DiskOverrides = std::vector<std::pair<std::string, std::filesystem::path>>; // disk id -> path

// Each disk comes from, in this order: an override naming its id; the copy
// captured in the snapshot (--checkpoint-disks copy); the path it had. Every
// override must name a disk of the snapshot, and every disk must have the
// size it had at the checkpoint (the guest's block layer remembers it).
// Throws ember::Error. Console, checkpoint and pause settings are left at
// their defaults for the caller.
VmConfig restore_config(const SnapshotReader& snapshot, const DiskOverrides& overrides);

using NetOverrides = std::map<std::string, std::string>; // network device id -> tap

// Attaches the network devices the overrides name to other taps. Every
// override must name a device of the configuration and a usable tap name,
// and no two devices may end up on one tap. Throws ember::Error.
void apply_net_overrides(VmConfig& config, const NetOverrides& overrides);

} // namespace ember
