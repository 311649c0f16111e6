// Cross-check with an independent implementation: the ACPICA disassembler and
// compiler (iasl, Debian package acpica-tools). Each table is disassembled with
// `iasl -d`, which must report no error or warning (it checks lengths, checksums
// and every AML opcode), and the disassembly is compiled again with all
// optimisations off (`iasl -oa`): the table body must come back byte for byte.
// Skipped, with a message, when iasl is not installed.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "vmm/acpi/acpi.h"
#include "vmm/acpi/sdt.h"
#include "vmm/platform.h"

namespace fs = std::filesystem;
using namespace ember::acpi;
namespace p = ember::platform;
using Bytes = std::vector<uint8_t>;

namespace {

std::string find_iasl() {
    if (const char* env = std::getenv("EMBER_IASL"); env != nullptr && *env != '\0') return env;
    if (std::system("command -v iasl >/dev/null 2>&1") == 0) return "iasl";
    return {};
}

uint64_t le(const Bytes& b, size_t off, size_t width) {
    REQUIRE(off + width <= b.size());
    uint64_t v = 0;
    for (size_t i = 0; i < width; ++i)
        v |= uint64_t{b[off + i]} << (8 * i);
    return v;
}

Bytes slice_table(const Bytes& blob, uint64_t address) {
    const size_t off = address - p::kAcpiTablesAddr;
    const size_t len = le(blob, off + 4, 4);
    REQUIRE(off + len <= blob.size());
    return Bytes(blob.begin() + static_cast<ptrdiff_t>(off),
                 blob.begin() + static_cast<ptrdiff_t>(off + len));
}

Bytes read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string read_text(const fs::path& path) {
    const Bytes b = read_file(path);
    return std::string(b.begin(), b.end());
}

struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "ember-acpi-XXXXXX").string();
        REQUIRE(mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// Disassembles `table` (named `name`.dat) and recompiles it; returns the
// disassembly so callers can look for the objects they expect.
std::string round_trip(const std::string& iasl, const fs::path& dir, const std::string& name,
                       const Bytes& table) {
    const fs::path dat = dir / (name + ".dat");
    std::ofstream(dat, std::ios::binary)
        .write(reinterpret_cast<const char*>(table.data()),
               static_cast<std::streamsize>(table.size()));

    const std::string dis =
        fmt::format("cd '{}' && '{}' -d {}.dat > {}-d.log 2>&1", dir.string(), iasl, name, name);
    REQUIRE_MESSAGE(std::system(dis.c_str()) == 0, read_text(dir / (name + "-d.log")));
    const std::string dis_log = read_text(dir / (name + "-d.log"));
    const std::string dsl = read_text(dir / (name + ".dsl"));
    CHECK_MESSAGE(dis_log.find("Error") == std::string::npos, dis_log);
    CHECK_MESSAGE(dis_log.find("Warning") == std::string::npos, dis_log);
    CHECK_MESSAGE(dsl.find("Incorrect") == std::string::npos, dsl);

    const std::string comp = fmt::format("cd '{}' && '{}' -oa -p {}-rt {}.dsl > {}-c.log 2>&1",
                                         dir.string(), iasl, name, name, name);
    REQUIRE_MESSAGE(std::system(comp.c_str()) == 0, read_text(dir / (name + "-c.log")));
    const Bytes recompiled = read_file(dir / (name + "-rt.aml"));
    REQUIRE(recompiled.size() == table.size());
    // The header's checksum and compiler fields may differ; the body may not.
    CHECK(Bytes(recompiled.begin() + kSdtHeaderSize, recompiled.end()) ==
          Bytes(table.begin() + kSdtHeaderSize, table.end()));
    return dsl;
}

} // namespace

TEST_CASE("iasl disassembles and recompiles every table to the same bytes") {
    const std::string iasl = find_iasl();
    if (iasl.empty()) {
        WARN_MESSAGE(false, "iasl not found (apt-get install acpica-tools): check skipped");
        return;
    }
    for (uint32_t cpus : {1u, 4u}) {
        for (size_t slots : {size_t{0}, size_t{p::kMaxVirtioDevices}}) {
            CAPTURE(cpus);
            CAPTURE(slots);
            PlatformConfig config{.cpus = cpus, .virtio_mmio = {}};
            for (size_t i = 0; i < slots; ++i)
                config.virtio_mmio.push_back({p::kVirtioMmioBase + i * p::kVirtioMmioSize,
                                              p::kVirtioMmioSize,
                                              p::kVirtioFirstGsi + static_cast<uint32_t>(i)});
            const Bytes blob = build_tables(config, p::kAcpiTablesAddr);
            const Bytes xsdt = slice_table(blob, le(blob, 24, 8));
            const Bytes fadt = slice_table(blob, le(xsdt, 36, 8));
            const Bytes madt = slice_table(blob, le(xsdt, 44, 8));
            const Bytes dsdt = slice_table(blob, le(fadt, 140, 8));

            TempDir dir;
            round_trip(iasl, dir.path, "xsdt", xsdt);
            const std::string fadt_dsl = round_trip(iasl, dir.path, "facp", fadt);
            CHECK(fadt_dsl.find("Hardware Reduced (V5) : 1") != std::string::npos);
            const std::string madt_dsl = round_trip(iasl, dir.path, "apic", madt);
            CHECK(madt_dsl.find(fmt::format("Local Apic ID : {:02X}", cpus - 1)) !=
                  std::string::npos);
            const std::string dsl = round_trip(iasl, dir.path, "dsdt", dsdt);
            CHECK(dsl.find("Name (_S5, Package (0x04)") != std::string::npos);
            CHECK(dsl.find("EisaId (\"PNP0501\")") != std::string::npos);
            CHECK(dsl.find("EisaId (\"PNP0303\")") != std::string::npos);
            CHECK(dsl.find("Name (_HID, \"QEMU0001\")") != std::string::npos);
            size_t devices = 0;
            for (size_t at = 0;
                 (at = dsl.find("Name (_HID, \"LNRO0005\")", at)) != std::string::npos; ++at)
                ++devices;
            CHECK(devices == slots);
            if (slots > 0)
                CHECK(dsl.find("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )") !=
                      std::string::npos);
        }
    }
}
