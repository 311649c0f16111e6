#include "devices/block/block_request.h"

#include <algorithm>
#include <cstring>

#include "devices/block/virtio_blk_spec.h"
#include "vmm/log.h"

namespace ember {

using namespace virtio::blk;

void BlockRequest::clear() noexcept {
    chain.clear();
    type = 0;
    op = HostIo::Op::read;
    offset = length = done = 0;
    iov.clear();
    guest_iov.clear();
    bounce.reset();
    status.reset();
    used_len = 0;
    host_errno = 0;
}

namespace {

// Appends host views of bytes [skip, skip+len) of the chain's readable or
// writable stream. The chain was validated, so every span() succeeds.
void collect(const DescriptorChain& chain, bool writable, uint64_t skip, uint64_t len,
             const GuestMemory& mem, std::vector<iovec>& out) {
    for (const auto& s : chain.segments()) {
        if (s.writable != writable || len == 0) continue;
        if (skip >= s.len) {
            skip -= s.len;
            continue;
        }
        const uint64_t n = std::min<uint64_t>(s.len - skip, len);
        auto view = mem.span(GuestAddress{s.addr.value + skip}, n);
        out.push_back(iovec{view.data(), view.size()});
        skip = 0;
        len -= n;
    }
}

// Copies bytes [skip, skip+out.size()) of the readable stream.
void gather(const DescriptorChain& chain, uint64_t skip, std::span<uint8_t> out,
            const GuestMemory& mem) {
    std::vector<iovec> iov;
    collect(chain, false, skip, out.size(), mem, iov);
    size_t at = 0;
    for (const auto& v : iov) {
        std::memcpy(out.data() + at, v.iov_base, v.iov_len);
        at += v.iov_len;
    }
}

bool in_capacity(const BlockDisk& disk, uint64_t sector, uint64_t sectors) {
    return sector <= disk.sectors() && sectors <= disk.sectors() - sector;
}

// O_DIRECT needs aligned buffers; a guest buffer that is not gets a bounce
// buffer (reads are copied back in finish_block_read).
bool bounce_if_unaligned(BlockRequest& req, const BlockDisk& disk) {
    if (!disk.direct()) return true;
    const uint64_t align = disk.mem_align();
    const bool aligned = std::all_of(req.iov.begin(), req.iov.end(), [&](const iovec& v) {
        return reinterpret_cast<uintptr_t>(v.iov_base) % align == 0 && v.iov_len % align == 0;
    });
    if (aligned) return true;
    const size_t size = (req.length + 4095) & ~size_t{4095};
    req.bounce.reset(static_cast<uint8_t*>(std::aligned_alloc(4096, size)));
    if (!req.bounce) return false;
    if (req.op == HostIo::Op::write) {
        size_t at = 0;
        for (const auto& v : req.iov) {
            std::memcpy(req.bounce.get() + at, v.iov_base, v.iov_len);
            at += v.iov_len;
        }
    }
    req.guest_iov.swap(req.iov);
    req.iov.assign(1, iovec{req.bounce.get(), req.length});
    return true;
}

std::optional<uint8_t> discard_or_zero(BlockRequest& req, const GuestMemory& mem,
                                       const BlockDisk& disk, const BlockLimits& limits,
                                       uint64_t readable) {
    const bool zeroes = req.type == kTypeWriteZeroes;
    const uint64_t bytes = readable - sizeof(RequestHeader);
    const uint64_t count = bytes / sizeof(DiscardWriteZeroes);
    const uint32_t max_seg = zeroes ? limits.max_write_zeroes_seg : limits.max_discard_seg;
    const uint32_t max_sectors =
        zeroes ? limits.max_write_zeroes_sectors : limits.max_discard_sectors;
    if (bytes == 0 || bytes % sizeof(DiscardWriteZeroes) != 0 || count > max_seg)
        return kStatusIoErr;
    if (disk.readonly()) return kStatusIoErr;
    std::vector<DiscardWriteZeroes> ranges(count);
    gather(req.chain, sizeof(RequestHeader), {reinterpret_cast<uint8_t*>(ranges.data()), bytes},
           mem);
    for (const auto& r : ranges) {
        // §5.2.6.2: unmap on DISCARD, or any reserved flag, is UNSUPP.
        const uint32_t allowed = zeroes ? kWriteZeroesFlagUnmap : 0;
        if ((r.flags & ~allowed) != 0) return kStatusUnsupp;
        if (r.num_sectors > max_sectors || !in_capacity(disk, r.sector, r.num_sectors))
            return kStatusIoErr;
    }
    for (const auto& r : ranges) {
        const uint64_t off = r.sector * kSectorSize, len = uint64_t{r.num_sectors} * kSectorSize;
        const int res = zeroes ? disk.write_zeroes(off, len, (r.flags & kWriteZeroesFlagUnmap) != 0)
                               : disk.discard(off, len);
        if (res < 0) {
            // Counted and logged by the I/O thread, like failed reads and writes.
            req.host_errno = -res;
            req.offset = off;
            return kStatusIoErr;
        }
    }
    return kStatusOk;
}

} // namespace

std::optional<uint8_t> prepare_block_request(BlockRequest& req, const GuestMemory& mem,
                                             const BlockDisk& disk, uint64_t features,
                                             const BlockLimits& limits) {
    const auto& chain = req.chain;
    // The status byte is the last byte of the chain, and must be writable.
    const auto segs = chain.segments();
    if (!segs.empty() && segs.back().writable)
        req.status = GuestAddress{segs.back().addr.value + segs.back().len - 1};
    if (!chain.valid()) {
        log::debug("virtio-blk {}: refused chain {}: {}", disk.path(), chain.head(),
                   to_string(chain.error()));
        return kStatusIoErr;
    }
    if (!req.status) return kStatusIoErr; // nowhere to put a status: completed with len 0
    const uint64_t readable = chain.readable_bytes();
    const uint64_t writable = chain.writable_bytes();
    if (readable < sizeof(RequestHeader)) return kStatusIoErr; // short or writable header
    RequestHeader hdr{};
    gather(chain, 0, {reinterpret_cast<uint8_t*>(&hdr), sizeof hdr}, mem);
    req.type = hdr.type;
    switch (hdr.type) {
    case kTypeIn:
    case kTypeOut: {
        const bool in = hdr.type == kTypeIn;
        // IN: no data after the header; OUT: nothing writable but the status.
        if ((in && readable != sizeof hdr) || (!in && writable != 1)) return kStatusIoErr;
        req.length = in ? writable - 1 : readable - sizeof hdr;
        if (req.length % kSectorSize != 0) return kStatusIoErr;
        if (!in_capacity(disk, hdr.sector, req.length / kSectorSize)) return kStatusIoErr;
        if (!in && disk.readonly()) return kStatusIoErr;
        req.op = in ? HostIo::Op::read : HostIo::Op::write;
        req.offset = hdr.sector * kSectorSize;
        if (req.length == 0) return kStatusOk;
        collect(chain, in, in ? 0 : sizeof hdr, req.length, mem, req.iov);
        if (!bounce_if_unaligned(req, disk)) return kStatusIoErr;
        return std::nullopt;
    }
    case kTypeFlush:
        if ((features & kFeatureFlush) == 0) return kStatusUnsupp;
        if (readable != sizeof hdr || writable != 1) return kStatusIoErr;
        req.op = HostIo::Op::flush;
        return std::nullopt;
    case kTypeGetId: {
        if (readable != sizeof hdr || writable < 2) return kStatusIoErr;
        // The ID is NUL-padded to 20 bytes; a shorter buffer gets a prefix.
        uint8_t id[kIdBytes] = {};
        std::memcpy(id, disk.id().data(), std::min(disk.id().size(), kIdBytes));
        const uint64_t n = std::min<uint64_t>(writable - 1, kIdBytes);
        std::vector<iovec> out;
        collect(chain, true, 0, n, mem, out);
        size_t at = 0;
        for (const auto& v : out) {
            std::memcpy(v.iov_base, id + at, v.iov_len);
            at += v.iov_len;
        }
        req.used_len = static_cast<uint32_t>(n);
        return kStatusOk;
    }
    case kTypeDiscard:
    case kTypeWriteZeroes: {
        const uint64_t f = hdr.type == kTypeDiscard ? kFeatureDiscard : kFeatureWriteZeroes;
        if ((features & f) == 0) return kStatusUnsupp;
        if (writable != 1) return kStatusIoErr;
        return discard_or_zero(req, mem, disk, limits, readable);
    }
    default:
        return kStatusUnsupp;
    }
}

RequestCost block_request_cost(const DescriptorChain& chain, const GuestMemory& mem) {
    if (!chain.valid() || chain.readable_bytes() < sizeof(RequestHeader)) return {};
    RequestHeader hdr{};
    gather(chain, 0, {reinterpret_cast<uint8_t*>(&hdr), sizeof hdr}, mem);
    switch (hdr.type) {
    case kTypeIn: {
        const uint64_t w = chain.writable_bytes();
        return {1, w > 0 ? w - 1 : 0}; // all but the status byte
    }
    case kTypeOut:
        return {1, chain.readable_bytes() - sizeof hdr};
    case kTypeFlush:
    case kTypeDiscard:
    case kTypeWriteZeroes:
        return {1, 0};
    default:
        return {};
    }
}

void finish_block_read(BlockRequest& req) noexcept {
    if (!req.bounce) return;
    size_t at = 0;
    for (const auto& v : req.guest_iov) {
        std::memcpy(v.iov_base, req.bounce.get() + at, v.iov_len);
        at += v.iov_len;
    }
}

} // namespace ember
