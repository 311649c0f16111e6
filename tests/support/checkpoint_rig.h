// Scaffolding for the checkpoint tests and bench-checkpoint: a virtio-blk
// device on a temp file behind its transport, an optional slow engine, the
// software driver, and block requests whose data can be checked later.
#pragma once

#include <poll.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/block/virtio_block.h"
#include "tests/support/block_rig.h"
#include "tests/support/delay_engine.h"

namespace ember::testing {

struct DeviceOptions {
    IoEngineFactory engine;      // empty: the disk spec's engine
    MaskingMode masking{MaskingMode::sigmask};
    std::string spec_suffix{};   // e.g. ",engine=sync"
};

// A transport + VirtioBlock on `path`, not yet initialised by a driver.
inline std::unique_ptr<VirtioMmioTransport> make_block_transport(const GuestMemory& mem,
                                                                 const std::string& path,
                                                                 const DeviceOptions& o,
                                                                 VirtioBlock** out = nullptr) {
    // Unlocked: the tests restore into a second device on the same image
    // while the first, like a crashed VM, still holds it.
    auto dev = std::make_unique<VirtioBlock>(
        BlockDisk::open(parse_disk_spec(path + o.spec_suffix), ImageLock::skip));
    if (o.engine) dev->set_engine_factory(o.engine);
    dev->set_completion_masking(o.masking);
    if (out != nullptr) *out = dev.get();
    return std::make_unique<VirtioMmioTransport>(mem, std::move(dev), EventFd{});
}

// One block request the test keeps track of.
struct TrackedRequest {
    uint16_t head{0};
    bool write{false};
    uint64_t sector{0};
    uint32_t len{0};
    GuestAddress data{};
    GuestAddress status{};
    std::vector<uint8_t> expect; // what a read must return / a write must leave on disk
};

inline bool irqfd_readable(const VirtioMmioTransport& t) {
    pollfd p{t.interrupt_event().fd(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
}

// Submits a read (expect = current file contents) or a write (of a fresh pattern).
inline TrackedRequest submit_tracked(GuestDriver& d, const TempFile& f, bool write,
                                     uint64_t sector, uint32_t len, uint32_t seed) {
    TrackedRequest r;
    r.write = write;
    r.sector = sector;
    r.len = len;
    auto b = d.chain().readable(blk_header(write ? virtio::blk::kTypeOut : virtio::blk::kTypeIn,
                                           sector));
    if (write) {
        r.expect = pattern(sector, len, seed);
        b.readable(r.expect);
    } else {
        r.expect = f.contents(sector * 512, len);
        b.writable(len);
    }
    b.writable(1);
    const Chain c = b.build();
    r.data = c.buffers[1].addr;
    r.status = c.buffers[2].addr;
    r.head = d.submit(c);
    return r;
}

} // namespace ember::testing
