// Test and benchmark scaffolding for virtio-blk: a temporary disk image and a
// device behind its transport with a software driver in front.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "devices/block/block_disk.h"
#include "devices/block/disk_spec.h"
#include "devices/block/virtio_blk_spec.h"
#include "devices/block/virtio_block.h"
#include "devices/virtio/mmio_transport.h"
#include "tests/support/guest_driver.h"
#include "vmm/errors.h"

namespace ember::testing {

// A file in $TMPDIR (or /tmp) removed on destruction.
class TempFile final {
  public:
    explicit TempFile(uint64_t size = 0, std::string_view tag = "disk") {
        const char* dir = std::getenv("TMPDIR");
        path_ =
            std::string(dir != nullptr ? dir : "/tmp") + "/ember-" + std::string(tag) + "-XXXXXX";
        const int fd = ::mkstemp(path_.data());
        if (fd < 0) throw_errno("mkstemp");
        if (size != 0 && ::ftruncate(fd, static_cast<off_t>(size)) != 0) throw_errno("ftruncate");
        ::close(fd);
    }
    ~TempFile() { ::unlink(path_.c_str()); }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
    const std::string& path() const noexcept { return path_; }

    // Reads `len` bytes at `offset` straight from the file.
    std::vector<uint8_t> contents(uint64_t offset, size_t len) const {
        std::vector<uint8_t> out(len);
        const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) throw_errno("open");
        const auto n = ::pread(fd, out.data(), len, static_cast<off_t>(offset));
        ::close(fd);
        if (n != static_cast<ssize_t>(len)) throw Error("short read of temp file");
        return out;
    }
    void write(uint64_t offset, const std::vector<uint8_t>& data) const {
        const int fd = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) throw_errno("open");
        const auto n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
        ::close(fd);
        if (n != static_cast<ssize_t>(data.size())) throw Error("short write of temp file");
    }

  private:
    std::string path_;
};

inline std::vector<uint8_t> blk_header(uint32_t type, uint64_t sector) {
    const virtio::blk::RequestHeader h{type, 0, sector};
    std::vector<uint8_t> v(sizeof h);
    std::memcpy(v.data(), &h, sizeof h);
    return v;
}

// A deterministic, position-dependent pattern: catches misplaced sectors.
inline std::vector<uint8_t> pattern(uint64_t sector, size_t len, uint32_t seed = 1) {
    std::vector<uint8_t> v(len);
    uint64_t x = (sector + 1) * 0x9e3779b97f4a7c15ull ^ seed;
    for (auto& b : v) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b = static_cast<uint8_t>(x);
    }
    return v;
}

struct BlockRig {
    explicit BlockRig(const std::string& spec, uint64_t features = ~0ull, DriverOptions opts = {},
                      const GuestMemory* shared_mem = nullptr)
        : own_mem(shared_mem == nullptr ? std::make_unique<GuestMemory>(GuestMemory::flat(64 << 20))
                                        : nullptr),
          mem(shared_mem != nullptr ? *shared_mem : *own_mem) {
        auto dev = std::make_unique<VirtioBlock>(BlockDisk::open(parse_disk_spec(spec)));
        blk = dev.get();
        transport = std::make_unique<VirtioMmioTransport>(mem, std::move(dev), EventFd{});
        driver = std::make_unique<GuestDriver>(mem, *transport, opts);
        driver->init(features);
    }

    struct Result {
        uint8_t status;
        uint32_t used_len;
        std::vector<uint8_t> data;
    };
    // Runs one chain whose last buffer is the status byte.
    Result run(const Chain& c) {
        Result r{};
        r.used_len = driver->run(c);
        r.status = mem.read<uint8_t>(c.buffers.back().addr);
        return r;
    }
    Result read(uint64_t sector, uint32_t len, bool indirect = false) {
        auto c = driver->chain()
                     .readable(blk_header(virtio::blk::kTypeIn, sector))
                     .writable(len)
                     .writable(1)
                     .indirect(indirect)
                     .build();
        auto r = run(c);
        r.data.resize(len);
        mem.read_bytes(c.buffers[1].addr, r.data);
        return r;
    }
    Result write(uint64_t sector, const std::vector<uint8_t>& data, bool indirect = false) {
        return run(driver->chain()
                       .readable(blk_header(virtio::blk::kTypeOut, sector))
                       .readable(data)
                       .writable(1)
                       .indirect(indirect)
                       .build());
    }

    std::unique_ptr<GuestMemory> own_mem;
    const GuestMemory& mem;
    VirtioBlock* blk{nullptr};
    std::unique_ptr<VirtioMmioTransport> transport;
    std::unique_ptr<GuestDriver> driver;
};

} // namespace ember::testing
