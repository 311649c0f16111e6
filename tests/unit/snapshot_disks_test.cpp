// Disk capture (--checkpoint-disks copy) and how a restore picks each disk.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "vmm/snapshot/disk_copy.h"
#include "vmm/snapshot/restore_config.h"
#include "vmm/vm.h"

using namespace ember;
namespace fs = std::filesystem;

namespace {
struct TempDir {
    fs::path path;
    TempDir() : path(fs::temp_directory_path() / fmt::format("ember-disks-{}-{}", ::getpid(), n()++)) {
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    static int& n() {
        static int v = 0;
        return v;
    }
};

void write_at(const fs::path& p, uint64_t off, const std::string& s) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(off));
    f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

std::string read_at(const fs::path& p, uint64_t off, size_t n) {
    std::ifstream f(p, std::ios::binary);
    f.seekg(static_cast<std::streamoff>(off));
    std::string s(n, '\0');
    f.read(s.data(), static_cast<std::streamsize>(n));
    return s;
}

// A snapshot whose configuration has one disk, `disk`, as the checkpoint
// saw it (size), optionally captured under `captured`.
void make_snapshot(const fs::path& dir, const fs::path& disk, uint64_t size, const std::string& captured) {
    VmConfig c;
    c.kernel = "/vmlinuz";
    DiskSpec d;
    d.path = disk.string();
    d.id = "data";
    c.disks.push_back(d);
    auto j = Vm::config_to_json(c);
    j["disks"][0]["size"] = size;
    if (!captured.empty()) j["disks"][0]["captured"] = captured;
    SnapshotWriter w(dir);
    w.finish(j);
}
} // namespace

TEST_CASE("disk copy: data and holes of a sparse image, same size, replaces the target") {
    TempDir t;
    const auto from = t.path / "disk.img", to = t.path / "copy.img";
    { std::ofstream(to) << "old contents that must go"; }
    fs::resize_file((std::ofstream(from), from), 64ULL << 20);
    write_at(from, 0, "first block");
    write_at(from, 40ULL << 20, "in the middle");
    write_at(from, (64ULL << 20) - 4, "end!");
    const auto r = copy_disk_image(from, to);
    CHECK(fs::file_size(to) == 64ULL << 20);
    CHECK(read_at(to, 0, 11) == "first block");
    CHECK(read_at(to, 40ULL << 20, 13) == "in the middle");
    CHECK(read_at(to, (64ULL << 20) - 4, 4) == "end!");
    CHECK(read_at(to, 20ULL << 20, 4) == std::string(4, '\0'));
    if (!r.cloned) {
        // Only the extents that hold data were copied, and the copy is sparse.
        CHECK(r.data_bytes < (4ULL << 20));
        struct stat st{};
        REQUIRE(::stat(to.c_str(), &st) == 0);
        CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < (8ULL << 20));
    }
    CHECK_THROWS_WITH_AS(copy_disk_image(t.path / "missing.img", to), doctest::Contains("missing.img"), Error);
}

TEST_CASE("copy_disk_image: a sparse copy reports how far it has come") {
    TempDir t;
    const auto from = t.path / "disk.img";
    fs::resize_file((std::ofstream(from), from), 16ULL << 20);
    for (uint64_t mib = 0; mib < 4; ++mib)
        write_at(from, mib << 20,
                 std::string(1 << 20, static_cast<char>('a' + mib))); // dense 0-4 MiB
    write_at(from, 12ULL << 20, std::string(1 << 20, 'z'));           // and 12-13 MiB
    std::vector<uint64_t> seen;
    const auto r = copy_disk_image(
        from, t.path / "copy.img",
        [&](uint64_t at, uint64_t size) {
            CHECK(size == 16ULL << 20);
            seen.push_back(at);
        },
        std::chrono::milliseconds(0));
    if (r.cloned) {
        CHECK(seen.empty()); // a reflink is done at once
        return;
    }
    // Every 1 MiB chunk of the two data runs, in order; the hole between
    // them is skipped, not reported.
    CHECK(seen ==
          std::vector<uint64_t>{1ULL << 20, 2ULL << 20, 3ULL << 20, 4ULL << 20, 13ULL << 20});
    CHECK(read_at(t.path / "copy.img", 12ULL << 20, 1) == "z");
    // Throttled: with an hour between reports, a short copy reports nothing.
    seen.clear();
    copy_disk_image(
        from, t.path / "copy.img", [&](uint64_t at, uint64_t) { seen.push_back(at); },
        std::chrono::hours(1));
    CHECK(seen.empty());
}

TEST_CASE("restore config: override, then captured copy, then the original path; sizes checked") {
    TempDir t;
    const auto disk = t.path / "disk.img";
    fs::resize_file((std::ofstream(disk), disk), 1 << 20);

    make_snapshot(t.path / "plain", disk, 1 << 20, "");
    CHECK(restore_config(SnapshotReader(t.path / "plain"), {}).disks.at(0).path == disk.string());

    make_snapshot(t.path / "captured", disk, 1 << 20, "disk0.img");
    copy_disk_image(disk, t.path / "captured" / "disk0.img");
    CHECK(restore_config(SnapshotReader(t.path / "captured"), {}).disks.at(0).path ==
          (t.path / "captured" / "disk0.img").string());
    const auto other = t.path / "other.img";
    fs::resize_file((std::ofstream(other), other), 1 << 20);
    CHECK(restore_config(SnapshotReader(t.path / "captured"), {{"data", other}}).disks.at(0).path ==
          other.string());

    CHECK_THROWS_WITH_AS(restore_config(SnapshotReader(t.path / "plain"), {{"nosuch", other}}),
                         doctest::Contains("no disk with id 'nosuch'"), Error);
    fs::resize_file(disk, 2 << 20);
    CHECK_THROWS_WITH_AS(restore_config(SnapshotReader(t.path / "plain"), {}),
                         doctest::Contains("the snapshot was taken with 1048576 bytes"), Error);

    // A tampered manifest cannot make restore open a file outside the snapshot.
    make_snapshot(t.path / "evil", disk, 2 << 20, "../disk.img");
    CHECK_THROWS_WITH_AS(restore_config(SnapshotReader(t.path / "evil"), {}),
                         doctest::Contains("bad captured file name"), SnapshotError);
}
