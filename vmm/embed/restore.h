// The configuration a checkpoint is restored with: the one it recorded, with
// disks moved to new files where the caller says so. Same rules as `ember
// restore --disk ID=PATH`: an override must name a disk of the checkpoint, and
// every disk file must have the size it had when the checkpoint was taken.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "vmm/snapshot/snapshot.h"
#include "vmm/vm_config.h"

namespace ember::embed {

::ember::VmConfig
restore_config(const SnapshotReader& snapshot,
               const std::map<std::string, std::filesystem::path>& disk_overrides);

} // namespace ember::embed
