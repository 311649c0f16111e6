// snapshot-info: what a checkpoint holds, as saved (vmm/main.cpp prints it).
#pragma once

#include <string>

#include "vmm/snapshot/snapshot.h"

namespace ember {

// The configuration and the section list, one line each, without the checks
// a restore makes on this host (the disks' files, the CPUs): a checkpoint
// can be described anywhere. Throws SnapshotError naming the field of a
// configuration that is missing or of the wrong type. The sections'
// checksums are not read here (SnapshotReader::verify_all).
std::string describe_snapshot(const SnapshotReader& s);

} // namespace ember
