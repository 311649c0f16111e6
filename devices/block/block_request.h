// One virtio-blk request (virtio 1.2 §5.2.6), from the popped chain to the
// host operation: header, data buffers, status byte.
//
// Framing follows §2.6.4 (the device assumes nothing about how the driver
// splits buffers): the header is the first 16 device-readable bytes, OUT data
// the readable bytes after it, IN data every writable byte but the last, and
// the status byte is the last writable byte of the chain.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <vector>

#include "devices/block/block_disk.h"
#include "devices/block/io_engine.h"
#include "devices/virtio/virtqueue.h"
#include "vmm/guest_memory.h"

namespace ember {

// Limits the device advertises in its config space and enforces.
struct BlockLimits {
    uint32_t max_discard_sectors{1u << 22};
    uint32_t max_discard_seg{16};
    uint32_t max_write_zeroes_sectors{1u << 22};
    uint32_t max_write_zeroes_seg{16};
};

struct BlockRequest {
    DescriptorChain chain;
    uint32_t type{0};
    HostIo::Op op{HostIo::Op::read};
    uint64_t offset{0};           // bytes into the disk
    uint64_t length{0};           // data bytes
    std::vector<iovec> iov;       // what the engine reads into / writes from
    std::vector<iovec> guest_iov; // the guest buffers, when `iov` is a bounce buffer
    uint64_t done{0};             // bytes transferred so far (short transfers resume)
    std::unique_ptr<uint8_t, decltype(&std::free)> bounce{nullptr, &std::free};
    std::optional<GuestAddress> status; // the status byte, when the chain has one
    uint32_t used_len{0};               // bytes written into writable buffers, excl. status
    int host_errno{0};                  // a DISCARD or WRITE_ZEROES the host refused (at offset)

    // Ready for the next chain, keeping vector capacity.
    void clear() noexcept;
};

// Parses and validates `req.chain` against the disk. Returns nullopt when the
// request needs host I/O (IN, OUT, FLUSH: `op`, `offset`, `iov` are set);
// otherwise it is already done (an error, GET_ID, DISCARD, WRITE_ZEROES) and
// the status byte to complete with is returned. A DISCARD or WRITE_ZEROES the
// host refuses sets `host_errno`.
std::optional<uint8_t> prepare_block_request(BlockRequest& req, const GuestMemory& mem,
                                             const BlockDisk& disk, uint64_t features,
                                             const BlockLimits& limits);

// What a chain costs against the disk's rate limit (rate_limiter.h): one
// request and its data bytes for IN and OUT, one request for FLUSH, DISCARD
// and WRITE_ZEROES; nothing for GET_ID, unknown types and chains too broken to
// have a header, which reach no host operation. Read from the chain's shape
// and header before prepare_block_request, which would already run a DISCARD.
struct RequestCost {
    uint64_t ops{0};
    uint64_t bytes{0};
};
RequestCost block_request_cost(const DescriptorChain& chain, const GuestMemory& mem);

// After a successful host read into a bounce buffer: copy to the guest.
void finish_block_read(BlockRequest& req) noexcept;

} // namespace ember
