#include "vmm/snapshot/restore_config.h"

#include <algorithm>

#include <fmt/format.h>

#include "devices/net/tap.h"
#include "vmm/log.h"
#include "vmm/vm.h"

namespace ember {

VmConfig restore_config(const SnapshotReader& snapshot, const DiskOverrides& overrides) {
    VmConfig config = Vm::config_from_json(snapshot.config());
    for (const auto& [id, path] : overrides) {
        if (std::none_of(config.disks.begin(), config.disks.end(), [&](const DiskSpec& d) { return d.id == id; }))
            throw Error(fmt::format("the snapshot has no disk with id '{}' (to replace with {})", id, path.string()));
    }
    for (size_t i = 0; i < config.disks.size(); ++i) {
        DiskSpec& disk = config.disks[i];
        const auto over = std::find_if(overrides.begin(), overrides.end(),
                                       [&](const auto& o) { return o.first == disk.id; });
        const std::string captured = Vm::saved_disk_capture(snapshot.config(), i);
        if (over != overrides.end()) {
            disk.path = over->second.string();
        } else if (!captured.empty()) {
            // A bare file name written by the checkpoint; anything else is a
            // tampered manifest and must not point outside the snapshot.
            if (captured.find('/') != std::string::npos || captured == "." || captured == "..")
                throw SnapshotError(fmt::format("snapshot disk {}: bad captured file name '{}'", disk.id, captured));
            disk.path = (snapshot.dir() / captured).string();
            log::info("disk {}: using the copy captured in the snapshot, {} (the guest's writes go there)", disk.id,
                      disk.path);
        }
        std::error_code ec;
        const auto size = std::filesystem::file_size(disk.path, ec);
        if (ec) throw Error(fmt::format("disk {}: {}: {}", disk.id, disk.path, ec.message()));
        const auto want = Vm::saved_disk_size(snapshot.config(), i);
        if (size != want)
            throw Error(fmt::format("disk {}: {} has {} bytes, but the snapshot was taken with {} bytes", disk.id,
                                    disk.path, size, want));
    }
    return config;
}

void apply_net_overrides(VmConfig& config, const NetOverrides& overrides) {
    for (const auto& [id, tap] : overrides) {
        const auto it = std::find_if(config.nets.begin(), config.nets.end(),
                                     [&](const NetSpec& n) { return n.id == id; });
        if (it == config.nets.end()) {
            std::string ids;
            for (const auto& n : config.nets)
                ids += (ids.empty() ? "" : ", ") + n.id;
            throw Error(fmt::format("network override {}: the checkpoint has no network device "
                                    "with that id ({})",
                                    id, ids.empty() ? "it has none" : "it has " + ids));
        }
        if (auto why = tap_name_problem(tap))
            throw Error(fmt::format("network override {}: {}", id, *why));
        it->tap = tap;
    }
    try {
        resolve_net_ids(config.nets);
    } catch (const NetSpecError& e) {
        throw Error(fmt::format("network overrides: {}", e.what()));
    }
}

} // namespace ember
