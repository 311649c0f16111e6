// The on-disk snapshot: a directory holding manifest.json (magic, format
// version, the VM's configuration, and one entry per section with its size and
// CRC-32C) and one file per section. Guest memory is stored sparse: only pages
// that hold data, at their own offsets, listed in the "memory-extents" section.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstring>

#include "vmm/errors.h"
#include "vmm/guest_memory.h"

namespace ember {

inline constexpr const char* kSnapshotMagic = "ember-snapshot";
inline constexpr int kSnapshotFormatVersion = 1;

// A snapshot that cannot be used: missing file, bad checksum, wrong version.
class SnapshotError : public Error {
public:
    using Error::Error;
};

// A field of an object in a manifest, as T; else a SnapshotError that says
// where (`where`, e.g. "snapshot configuration"), which key, and what stands
// there instead. nlohmann's own messages name neither the key nor the place.
template <typename T>
T manifest_field(const nlohmann::json& object, const std::string& key, std::string_view where) {
    const auto it = object.is_object() ? object.find(key) : object.end();
    if (it == object.end())
        throw SnapshotError(fmt::format("{} has no '{}' (corrupt)", where, key));
    try {
        return it->get<T>();
    } catch (const nlohmann::json::exception&) {
        throw SnapshotError(fmt::format("{}: '{}' is the {} {}, of the wrong type (corrupt)", where,
                                        key, it->type_name(), it->dump()));
    }
}

// Checked before a VM starts, so a typo in a checkpoint directory is not
// found only when the checkpoint signal comes: why a checkpoint could not be
// written into `dir` (it exists but is not a directory, or the nearest part
// of its path that exists is not a directory it may create entries in), or
// nullopt. The directories missing below that are created at checkpoint time.
std::optional<std::string> checkpoint_dir_problem(const std::filesystem::path& dir);

class SnapshotWriter final {
public:
    // Creates `dir` (or reuses an existing one, replacing its snapshot).
    explicit SnapshotWriter(std::filesystem::path dir);

    void add(const std::string& name, std::span<const uint8_t> bytes);
    template <typename T>
    void add_value(const std::string& name, const T& v) {
        static_assert(std::is_trivially_copyable_v<T>);
        add(name, {reinterpret_cast<const uint8_t*>(&v), sizeof(T)});
    }
    // Writes the pages of guest RAM that hold data; returns the bytes written.
    uint64_t add_memory(const GuestMemory& mem);
    // Writes manifest.json last, atomically: a crash mid-snapshot leaves no
    // manifest, so a half-written snapshot is never mistaken for a good one.
    void finish(const nlohmann::json& config);

private:
    std::filesystem::path dir_;
    nlohmann::json sections_ = nlohmann::json::array();
};

class SnapshotReader final {
public:
    // Reads and validates the manifest; throws SnapshotError.
    explicit SnapshotReader(std::filesystem::path dir);

    const nlohmann::json& config() const { return manifest_.at("config"); }
    const nlohmann::json& manifest() const { return manifest_; }
    const std::filesystem::path& dir() const noexcept { return dir_; }
    bool has(const std::string& name) const;
    // Reads a section and checks its size and CRC; throws SnapshotError.
    std::vector<uint8_t> read(const std::string& name) const;
    template <typename T>
    T read_value(const std::string& name) const {
        static_assert(std::is_trivially_copyable_v<T>);
        const auto bytes = read(name);
        if (bytes.size() != sizeof(T))
            throw SnapshotError(fmt::format("snapshot {}: section {} has {} bytes, expected {}", dir_.string(),
                                            name, bytes.size(), sizeof(T)));
        T v;
        std::memcpy(&v, bytes.data(), sizeof(T));
        return v;
    }
    // Loads guest RAM; the layout must match the one saved.
    void read_memory(const GuestMemory& mem) const;
    // Every section's size and CRC (for snapshot-info); throws on the first bad one.
    void verify_all() const;

private:
    const nlohmann::json& section(const std::string& name) const;

    std::filesystem::path dir_;
    nlohmann::json manifest_;
};

} // namespace ember
