#include "vmm/snapshot/describe.h"

#include <cstdint>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ember {

std::string describe_snapshot(const SnapshotReader& s) {
    const auto& c = s.config();
    constexpr std::string_view kConfig = "snapshot configuration";
    std::string out = fmt::format("snapshot {} (format {})\n", s.dir().string(),
                                  manifest_field<int>(s.manifest(), "format_version", "manifest"));
    // Placement is printed because a restore needs those host CPUs.
    std::string placed;
    if (c.contains("vcpu_cpus"))
        placed = fmt::format(
            ", on host CPUs {}",
            fmt::join(manifest_field<std::vector<uint32_t>>(c, "vcpu_cpus", kConfig), ","));
    out += fmt::format("  kernel   {}\n", manifest_field<std::string>(c, "kernel", kConfig));
    out += fmt::format("  cmdline  {}\n", manifest_field<std::string>(c, "cmdline", kConfig));
    out += fmt::format("  cpus     {}{}\n", manifest_field<uint32_t>(c, "cpus", kConfig), placed);
    out +=
        fmt::format("  memory   {} MiB\n", manifest_field<uint64_t>(c, "mem_bytes", kConfig) >> 20);
    const auto disks = manifest_field<nlohmann::json>(c, "disks", kConfig);
    if (!disks.is_array())
        throw SnapshotError(fmt::format("{}: 'disks' is not a list (corrupt)", kConfig));
    for (size_t i = 0; i < disks.size(); ++i) {
        const auto& d = disks[i];
        const auto where = fmt::format("{}, disk {}", kConfig, i);
        const std::string io_cpu =
            d.is_object() && d.contains("iothread_cpu")
                ? fmt::format(", I/O thread on host CPU {}",
                              manifest_field<uint32_t>(d, "iothread_cpu", where))
                : "";
        out += fmt::format("  disk     id={} {} ({} bytes{}{})\n",
                           manifest_field<std::string>(d, "id", where),
                           manifest_field<std::string>(d, "path", where),
                           manifest_field<uint64_t>(d, "size", where),
                           manifest_field<bool>(d, "readonly", where) ? ", read-only" : "", io_cpu);
    }
    // SnapshotReader checked the sections' fields when it read the manifest.
    for (const auto& sec : s.manifest().at("sections"))
        out += fmt::format("  section  {:<16} {:>12} bytes  crc32c {:08x}\n",
                           sec.at("name").get<std::string>(), sec.at("bytes").get<uint64_t>(),
                           sec.at("crc32c").get<uint32_t>());
    return out;
}

} // namespace ember
