#include "vmm/embed/restore.h"

#include <algorithm>
#include <fmt/format.h>

#include "vmm/vm.h"

namespace ember::embed {

::ember::VmConfig
restore_config(const SnapshotReader& snapshot,
               const std::map<std::string, std::filesystem::path>& disk_overrides) {
    ::ember::VmConfig config = ::ember::Vm::config_from_json(snapshot.config());
    for (const auto& entry : disk_overrides) {
        const std::string& id = entry.first;
        auto it = std::find_if(config.disks.begin(), config.disks.end(),
                               [&id](const DiskSpec& d) { return d.id == id; });
        if (it == config.disks.end())
            throw Error(
                fmt::format("restore: disk override {}={}: the checkpoint has no disk with id '{}'",
                            id, entry.second.string(), id));
        it->path = entry.second.string();
    }
    const auto& saved = snapshot.config().at("disks");
    for (size_t i = 0; i < config.disks.size(); ++i) {
        const auto& d = config.disks[i];
        std::error_code ec;
        const auto size = std::filesystem::file_size(d.path, ec);
        if (ec) throw Error(fmt::format("restore: disk {}: {}: {}", d.id, d.path, ec.message()));
        const auto want = saved.at(i).value("size", uint64_t{0});
        if (size != want)
            throw Error(fmt::format(
                "restore: disk {}: {} has {} bytes, but the checkpoint was taken with {} bytes",
                d.id, d.path, size, want));
    }
    return config;
}

} // namespace ember::embed
