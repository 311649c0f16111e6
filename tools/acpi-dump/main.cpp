// acpi-dump: writes the ACPI tables ember would give a guest with N vcpus and M
// virtio-mmio devices, one file per table, for inspection with `iasl -d`.
//
//   acpi-dump --cpus 2 --virtio 3 OUTDIR
//   iasl -d OUTDIR/dsdt.dat && less OUTDIR/dsdt.dsl
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "vmm/acpi/acpi.h"
#include "vmm/errors.h"
#include "vmm/platform.h"

namespace {

namespace fs = std::filesystem;
namespace p = ember::platform;

uint64_t le(std::span<const uint8_t> b, size_t off, size_t width) {
    if (off + width > b.size()) throw ember::Error("ACPI blob is truncated");
    uint64_t v = 0;
    for (size_t i = 0; i < width; ++i)
        v |= uint64_t{b[off + i]} << (8 * i);
    return v;
}

void write(const fs::path& path, std::span<const uint8_t> bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    if (!out) throw ember::Error(fmt::format("cannot write {}", path.string()));
    fmt::print("{:<12} {:5} bytes\n", path.filename().string(), bytes.size());
}

// The table at guest-physical `address`, sized by its header's length field.
std::span<const uint8_t> table(std::span<const uint8_t> blob, uint64_t address) {
    const uint64_t off = address - p::kAcpiTablesAddr;
    const uint64_t len = le(blob, off + 4, 4);
    if (off + len > blob.size()) throw ember::Error("ACPI table runs past the blob");
    return blob.subspan(off, len);
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"Write ember's ACPI tables to files (rsdp.dat, xsdt.dat, facp.dat, apic.dat, "
                 "dsdt.dat, tables.bin)"};
    uint32_t cpus = 1;
    uint32_t virtio = 0;
    std::string outdir;
    app.add_option("--cpus", cpus, "number of vcpus")->capture_default_str();
    app.add_option("--virtio", virtio, "number of virtio-mmio devices")->capture_default_str();
    app.add_option("outdir", outdir, "directory to write into")->required();
    CLI11_PARSE(app, argc, argv);

    try {
        ember::acpi::PlatformConfig config{.cpus = cpus, .virtio_mmio = {}};
        for (uint32_t i = 0; i < virtio; ++i)
            config.virtio_mmio.push_back({p::kVirtioMmioBase + i * p::kVirtioMmioSize,
                                          p::kVirtioMmioSize, p::kVirtioFirstGsi + i});
        const auto blob = ember::acpi::build_tables(config, p::kAcpiTablesAddr);
        const std::span<const uint8_t> all(blob);
        fs::create_directories(outdir);
        const fs::path dir(outdir);
        const auto xsdt = table(all, le(all, 24, 8));
        const auto fadt = table(all, le(xsdt, 36, 8));
        write(dir / "tables.bin", all);
        write(dir / "rsdp.dat", all.first(36));
        write(dir / "xsdt.dat", xsdt);
        write(dir / "facp.dat", fadt);
        write(dir / "apic.dat", table(all, le(xsdt, 44, 8)));
        write(dir / "dsdt.dat", table(all, le(fadt, 140, 8)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "acpi-dump: %s\n", e.what());
        return 1;
    }
    return 0;
}
