#include "tools/disk_load.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <vector>

#include <fmt/format.h>

namespace ember::bench {

std::optional<DiskCounters> parse_disk_stat(std::string_view line) {
    std::vector<uint64_t> f;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\n'))
            ++i;
        if (i == line.size()) break;
        uint64_t v = 0;
        const auto [end, ec] = std::from_chars(line.data() + i, line.data() + line.size(), v);
        if (ec != std::errc{}) return std::nullopt;
        f.push_back(v);
        i = static_cast<size_t>(end - line.data());
    }
    // reads, read merges, read sectors, read ms, writes, write merges,
    // write sectors, write ms, in flight, io_ticks, time_in_queue, ...
    if (f.size() < 11) return std::nullopt;
    return DiskCounters{f[0], f[3], f[4], f[7], f[9], f[10]};
}

DiskLoad disk_load(const DiskCounters& before, const DiskCounters& after, double seconds) {
    DiskLoad l;
    if (seconds <= 0) return l;
    // Counters only grow; a device that reappeared in between would not.
    auto delta = [](uint64_t a, uint64_t b) { return b >= a ? b - a : 0; };
    const double ms = seconds * 1000.0;
    l.in_flight = static_cast<double>(delta(before.queue_ms, after.queue_ms)) / ms;
    l.busy = static_cast<double>(delta(before.busy_ms, after.busy_ms)) / ms;
    const uint64_t n = delta(before.reads, after.reads) + delta(before.writes, after.writes);
    const uint64_t t =
        delta(before.read_ms, after.read_ms) + delta(before.write_ms, after.write_ms);
    l.ms_per_request = n == 0 ? 0 : static_cast<double>(t) / static_cast<double>(n);
    return l;
}

std::optional<std::filesystem::path> block_device_sysfs(const std::filesystem::path& file,
                                                        std::string& why) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) {
        why = fmt::format("{}: {}", file.string(), std::strerror(errno));
        return std::nullopt;
    }
    const dev_t dev = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
    std::error_code ec;
    auto sys =
        std::filesystem::canonical(fmt::format("/sys/dev/block/{}:{}", major(dev), minor(dev)), ec);
    if (major(dev) == 0 || ec) {
        why = fmt::format("{} is on no block device (tmpfs, overlayfs, 9p?)", file.string());
        return std::nullopt;
    }
    return sys;
}

std::optional<DiskStatFile> DiskStatFile::for_file(const std::filesystem::path& file) {
    std::string why; // the caller says why in its own words
    const auto real = block_device_sysfs(file, why);
    if (!real) return std::nullopt;
    DiskStatFile f(*real / "stat", real->filename().string());
    if (!f.sample()) return std::nullopt;
    return f;
}

std::optional<DiskCounters> DiskStatFile::sample() const {
    std::ifstream in(stat_);
    std::string line;
    if (!std::getline(in, line)) return std::nullopt;
    return parse_disk_stat(line);
}

} // namespace ember::bench
