#include "vmm/snapshot/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "vmm/crc32c.h"
#include "vmm/unique_fd.h"

namespace ember {
namespace fs = std::filesystem;
namespace {

constexpr uint64_t kPage = 4096;

struct Extent {
    uint64_t offset; // in the memfd (= in memory.bin)
    uint64_t length;
};

void write_all_at(int fd, const uint8_t* data, uint64_t len, uint64_t off, const fs::path& path) {
    while (len > 0) {
        const ssize_t n = ::pwrite(fd, data, len, static_cast<off_t>(off));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) throw SnapshotError(fmt::format("cannot write {}: {}", path.string(), std::strerror(errno)));
        data += n;
        len -= static_cast<uint64_t>(n);
        off += static_cast<uint64_t>(n);
    }
}

void read_all_at(int fd, uint8_t* data, uint64_t len, uint64_t off, const fs::path& path) {
    while (len > 0) {
        const ssize_t n = ::pread(fd, data, len, static_cast<off_t>(off));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw SnapshotError(fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
        if (n == 0) throw SnapshotError(fmt::format("{} is truncated", path.string()));
        data += n;
        len -= static_cast<uint64_t>(n);
        off += static_cast<uint64_t>(n);
    }
}

bool page_is_zero(const uint8_t* p) {
    static const uint8_t zeros[kPage] = {};
    return std::memcmp(p, zeros, kPage) == 0;
}

} // namespace

std::optional<std::string> checkpoint_dir_problem(const fs::path& dir) {
    if (dir.empty()) return "no directory given";
    std::error_code ec;
    fs::path at = fs::absolute(dir, ec);
    if (ec) return ec.message();
    for (;;) {
        // A missing component, or a file where a directory should be
        // (ENOTDIR), reads as not_found: go up until something exists.
        const auto st = fs::status(at, ec);
        if (st.type() == fs::file_type::not_found && at.has_relative_path()) {
            at = at.parent_path();
            continue;
        }
        if (ec) return fmt::format("{}: {}", at.string(), ec.message());
        if (st.type() != fs::file_type::directory)
            return fmt::format("{} exists and is not a directory", at.string());
        if (::access(at.c_str(), W_OK | X_OK) != 0)
            return fmt::format("cannot create entries in {}: {}", at.string(),
                               std::strerror(errno));
        return std::nullopt;
    }
}

SnapshotWriter::SnapshotWriter(fs::path dir) : dir_(std::move(dir)) {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) throw SnapshotError(fmt::format("cannot create snapshot directory {}: {}", dir_.string(), ec.message()));
    fs::remove(dir_ / "manifest.json", ec);
}

void SnapshotWriter::add(const std::string& name, std::span<const uint8_t> bytes) {
    const fs::path path = dir_ / (name + ".bin");
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) throw SnapshotError(fmt::format("cannot create {}: {}", path.string(), std::strerror(errno)));
    write_all_at(fd.get(), bytes.data(), bytes.size(), 0, path);
    sections_.push_back({{"name", name}, {"file", path.filename().string()}, {"bytes", bytes.size()},
                         {"crc32c", crc32c(0, bytes)}});
}

uint64_t SnapshotWriter::add_memory(const GuestMemory& mem) {
    const fs::path path = dir_ / "memory.bin";
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) throw SnapshotError(fmt::format("cannot create {}: {}", path.string(), std::strerror(errno)));
    if (::ftruncate(fd.get(), static_cast<off_t>(mem.total_size())) != 0)
        throw SnapshotError(fmt::format("cannot size {}: {}", path.string(), std::strerror(errno)));
    std::vector<Extent> extents;
    uint32_t crc = 0;
    uint64_t written = 0;
    for (const auto& r : mem.regions()) {
        // Pages never touched are holes in the memfd: SEEK_DATA skips them
        // without reading; pages that were touched but are zero are skipped too.
        off_t pos = static_cast<off_t>(r.file_offset);
        const off_t end = static_cast<off_t>(r.file_offset + r.size);
        while (pos < end) {
            off_t data = ::lseek(mem.memfd(), pos, SEEK_DATA);
            if (data < 0 || data >= end) break;
            off_t hole = ::lseek(mem.memfd(), data, SEEK_HOLE);
            if (hole < 0 || hole > end) hole = end;
            for (off_t p = data & ~static_cast<off_t>(kPage - 1); p < hole; p += kPage) {
                const uint8_t* page = r.host + (static_cast<uint64_t>(p) - r.file_offset);
                if (page_is_zero(page)) continue;
                if (!extents.empty() && extents.back().offset + extents.back().length == static_cast<uint64_t>(p))
                    extents.back().length += kPage;
                else
                    extents.push_back({static_cast<uint64_t>(p), kPage});
            }
            pos = hole;
        }
    }
    for (const auto& e : extents) {
        const auto& r = *std::find_if(mem.regions().begin(), mem.regions().end(), [&](const GuestRegion& g) {
            return e.offset >= g.file_offset && e.offset < g.file_offset + g.size;
        });
        const uint8_t* src = r.host + (e.offset - r.file_offset);
        write_all_at(fd.get(), src, e.length, e.offset, path);
        crc = crc32c(crc, {src, e.length});
        written += e.length;
    }
    add("memory-extents", {reinterpret_cast<const uint8_t*>(extents.data()), extents.size() * sizeof(Extent)});
    sections_.push_back({{"name", "memory"}, {"file", "memory.bin"}, {"bytes", written}, {"crc32c", crc},
                         {"ram_bytes", mem.total_size()}});
    return written;
}

void SnapshotWriter::finish(const nlohmann::json& config) {
    nlohmann::json m{{"magic", kSnapshotMagic}, {"format_version", kSnapshotFormatVersion},
                     {"config", config}, {"sections", sections_}};
    const fs::path tmp = dir_ / "manifest.json.tmp";
    {
        std::ofstream f(tmp);
        f << m.dump(2) << '\n';
        f.flush();
        if (!f) throw SnapshotError(fmt::format("cannot write {}", tmp.string()));
    }
    std::error_code ec;
    fs::rename(tmp, dir_ / "manifest.json", ec);
    if (ec) throw SnapshotError(fmt::format("cannot finish snapshot in {}: {}", dir_.string(), ec.message()));
}

SnapshotReader::SnapshotReader(fs::path dir) : dir_(std::move(dir)) {
    const fs::path path = dir_ / "manifest.json";
    std::ifstream f(path);
    if (!f)
        throw SnapshotError(fmt::format("{} is not a snapshot: {} is missing (was the checkpoint interrupted?)",
                                        dir_.string(), path.filename().string()));
    try {
        manifest_ = nlohmann::json::parse(f);
    } catch (const nlohmann::json::exception& e) {
        throw SnapshotError(fmt::format("{} is corrupt: {}", path.string(), e.what()));
    }
    // Every field checked for its type here, once: the readers below and
    // snapshot-info then never meet a JSON type error without context.
    const auto magic = manifest_.is_object() ? manifest_.find("magic") : manifest_.end();
    if (magic == manifest_.end() || !magic->is_string() || *magic != kSnapshotMagic)
        throw SnapshotError(fmt::format("{} is not an ember snapshot manifest", path.string()));
    const auto version = manifest_.find("format_version");
    if (version == manifest_.end() || !version->is_number_integer())
        throw SnapshotError(
            fmt::format("{} has no format_version number (corrupt)", path.string()));
    if (*version != kSnapshotFormatVersion)
        throw SnapshotError(
            fmt::format("snapshot {} has format version {}; this ember reads version {}",
                        dir_.string(), version->dump(), kSnapshotFormatVersion));
    const auto config = manifest_.find("config");
    const auto sections = manifest_.find("sections");
    if (config == manifest_.end() || !config->is_object() || sections == manifest_.end() ||
        !sections->is_array())
        throw SnapshotError(fmt::format("{} lacks its config or section list", path.string()));
    for (size_t i = 0; i < sections->size(); ++i) {
        const auto& sec = (*sections)[i];
        const auto field = [&](const char* key, bool string) {
            const auto it = sec.is_object() ? sec.find(key) : sec.end();
            if (it == sec.end() || !(string ? it->is_string() : it->is_number_unsigned()))
                throw SnapshotError(fmt::format("{}: section {} has no {} {} (corrupt)",
                                                path.string(), i,
                                                string ? "string" : "unsigned number", key));
        };
        field("name", true);
        field("file", true);
        field("bytes", false);
        field("crc32c", false);
        if (sec.at("name") == "memory") field("ram_bytes", false);
    }
}

const nlohmann::json& SnapshotReader::section(const std::string& name) const {
    for (const auto& s : manifest_["sections"])
        if (s.is_object() && s.value("name", "") == name) return s;
    throw SnapshotError(fmt::format("snapshot {} has no section '{}'", dir_.string(), name));
}

bool SnapshotReader::has(const std::string& name) const {
    for (const auto& s : manifest_["sections"])
        if (s.is_object() && s.value("name", "") == name) return true;
    return false;
}

std::vector<uint8_t> SnapshotReader::read(const std::string& name) const {
    const auto& s = section(name);
    try {
        const fs::path path = dir_ / fs::path(s.at("file").get<std::string>()).filename();
        const uint64_t bytes = s.at("bytes").get<uint64_t>();
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) throw SnapshotError(fmt::format("snapshot section {}: cannot open {}: {}", name, path.string(),
                                                 std::strerror(errno)));
        struct stat st{};
        ::fstat(fd.get(), &st);
        if (static_cast<uint64_t>(st.st_size) != bytes)
            throw SnapshotError(fmt::format("snapshot section {}: {} has {} bytes, the manifest says {}", name,
                                            path.string(), st.st_size, bytes));
        std::vector<uint8_t> data(bytes);
        read_all_at(fd.get(), data.data(), bytes, 0, path);
        if (crc32c(0, data) != s.at("crc32c").get<uint32_t>())
            throw SnapshotError(fmt::format("snapshot section {}: checksum mismatch in {} (corrupt)", name,
                                            path.string()));
        return data;
    } catch (const nlohmann::json::exception& e) {
        throw SnapshotError(fmt::format("snapshot section {}: bad manifest entry: {}", name, e.what()));
    }
}

void SnapshotReader::read_memory(const GuestMemory& mem) const {
    const auto& s = section("memory");
    const auto ext_bytes = read("memory-extents");
    if (ext_bytes.size() % sizeof(Extent) != 0) throw SnapshotError("snapshot memory-extents section is malformed");
    std::vector<Extent> extents(ext_bytes.size() / sizeof(Extent));
    std::memcpy(extents.data(), ext_bytes.data(), ext_bytes.size());
    if (s.value("ram_bytes", uint64_t{0}) != mem.total_size())
        throw SnapshotError(fmt::format("snapshot holds {} MiB of RAM, the VM has {} MiB",
                                        s.value("ram_bytes", uint64_t{0}) >> 20, mem.total_size() >> 20));
    const fs::path path = dir_ / "memory.bin";
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw SnapshotError(fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
    uint32_t crc = 0;
    uint64_t total = 0;
    for (const auto& e : extents) {
        const auto it = std::find_if(mem.regions().begin(), mem.regions().end(), [&](const GuestRegion& g) {
            return e.offset >= g.file_offset && e.offset < g.file_offset + g.size;
        });
        if (it == mem.regions().end() || e.length > it->size - (e.offset - it->file_offset))
            throw SnapshotError("snapshot memory extent lies outside guest RAM (corrupt)");
        uint8_t* dst = it->host + (e.offset - it->file_offset);
        read_all_at(fd.get(), dst, e.length, e.offset, path);
        crc = crc32c(crc, {dst, e.length});
        total += e.length;
    }
    if (total != s.value("bytes", uint64_t{0}) || crc != s.value("crc32c", uint32_t{0}))
        throw SnapshotError(fmt::format("snapshot memory in {}: checksum mismatch (corrupt)", path.string()));
}

void SnapshotReader::verify_all() const {
    for (const auto& s : manifest_["sections"]) {
        const std::string name = s.value("name", "");
        if (name != "memory") read(name);
    }
}

} // namespace ember
