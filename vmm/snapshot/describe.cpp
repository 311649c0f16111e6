#include "vmm/snapshot/describe.h"

#include <cstdint>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "vmm/vm.h"

namespace ember {

namespace {
// ", rate limit ...; at the checkpoint ..." for a device's line; "" without
// a limit. No fill: the buckets were full.
std::string limit_text(std::string_view name, const RateLimit& limit,
                       const std::optional<RateLimitFill>& fill,
                       std::string_view ops_unit = "requests") {
    if (!limit.enabled()) return "";
    return fmt::format(", {} {}; at the checkpoint {}", name, describe(limit, ops_unit),
                       describe(limit, fill.value_or(RateLimitFill{}), ops_unit));
}
} // namespace

std::string describe_snapshot(const SnapshotReader& s) {
    const VmConfig c = Vm::saved_config(s.config());
    std::string out = fmt::format("snapshot {} (format {})\n", s.dir().string(),
                                  s.manifest().at("format_version").get<int>());
    // Placement is printed because a restore needs those host CPUs.
    const std::string placed =
        c.vcpu_cpus.empty() ? "" : fmt::format(", on host CPUs {}", fmt::join(c.vcpu_cpus, ","));
    out += fmt::format("  kernel   {}\n", c.kernel.string());
    if (c.initrd) out += fmt::format("  initrd   {}\n", c.initrd->string());
    out += fmt::format("  cmdline  {}\n  cpus     {}{}\n  memory   {} MiB{}\n", c.cmdline, c.cpus,
                       placed, c.mem_bytes >> 20,
                       c.huge_pages == HugePages::two_mib ? ", 2 MiB huge pages" : "");
    for (size_t i = 0; i < c.disks.size(); ++i) {
        const auto& d = c.disks[i];
        const auto size = Vm::saved_disk_size(s.config(), i);
        const std::string io_cpu =
            d.iothread_cpu ? fmt::format(", I/O thread on host CPU {}", *d.iothread_cpu) : "";
        const std::string limit = limit_text(
            "rate limit", d.rate_limit,
            d.rate_limit.enabled() ? Vm::saved_rate_limit_fill(s.config(), i, d.rate_limit)
                                   : std::nullopt);
        out += fmt::format("  disk     id={} {} ({} bytes{}{}{})\n", d.id, d.path, size,
                           d.readonly ? ", read-only" : "", io_cpu, limit);
    }
    for (size_t i = 0; i < c.nets.size(); ++i) {
        const auto& n = c.nets[i];
        const auto fills = Vm::saved_net_rate_limit_fills(s.config(), i, n);
        out += fmt::format("  net      id={} tap {} (MAC {}{}{})\n", n.id, n.tap,
                           n.mac ? format_mac(*n.mac) : std::string("chosen by the guest"),
                           limit_text("receive rate limit", n.rx_limit, fills.rx, "frames"),
                           limit_text("transmit rate limit", n.tx_limit, fills.tx, "frames"));
    }
    if (c.entropy) out += "  entropy  virtio-rng (host getrandom)\n";
    // SnapshotReader checked the sections' fields when it read the manifest.
    for (const auto& sec : s.manifest().at("sections"))
        out += fmt::format("  section  {:<16} {:>12} bytes  crc32c {:08x}\n",
                           sec.at("name").get<std::string>(), sec.at("bytes").get<uint64_t>(),
                           sec.at("crc32c").get<uint32_t>());
    return out;
}

} // namespace ember
