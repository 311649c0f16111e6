// A hostile guest: seeded random batches of virtio-blk requests, well formed
// and poisoned, in random layouts (the header split over descriptors, the
// status byte alone or at the end of the data, direct and indirect chains,
// buffers at odd addresses), against the real device, its I/O thread and a
// temp file. The hand-written cases in block_device_test pin each rule; this
// looks for the combinations nobody wrote down. After every batch:
//  - every head came back exactly once (GuestDriver checks) and the device
//    did not ask for a reset: bad requests are the guest's problem, not the
//    ring's;
//  - a well-formed request did exactly what it says: status, used length,
//    the bytes read, the file's contents;
//  - a poisoned request got its error status, changed nothing on disk, and
//    the device wrote guest memory nowhere but its status byte;
//  - nothing else in guest memory changed: the buffer arena is canary-filled
//    and compared whole, so a write one byte past a buffer is caught.
// EMBER_FUZZ_SEED and EMBER_FUZZ_BATCHES run other or longer sequences.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "devices/block/block_request.h"
#include "devices/block/virtio_blk_spec.h"
#include "tests/support/block_rig.h"
#include "tests/support/fuzz_random.h"

using namespace ember;
using namespace ember::testing;
using namespace ember::virtio;
using namespace ember::virtio::blk;

namespace {

// Each request of a batch that should change the disk gets its own slot, so
// requests in flight together never touch the same sectors.
constexpr uint64_t kSlots = 16;
constexpr uint64_t kSlotSectors = 64;
constexpr uint64_t kDiskSectors = kSlots * kSlotSectors; // 512 KiB
constexpr uint32_t kMaxDataSectors = 32;
constexpr uint64_t kArenaSize = 1 << 20;
constexpr uint16_t kQueueSize = 256;
constexpr size_t kMaxBatch = 12;
constexpr uint32_t kKnownTypes[] = {kTypeIn,    kTypeOut,     kTypeFlush,
                                    kTypeGetId, kTypeDiscard, kTypeWriteZeroes};

// Ways to break the chain itself (virtio 1.2 §2.7.5): the device refuses it
// whole and answers IOERR in the last writable byte it validated, if any.
enum class ChainPoison {
    none,
    zero_length,
    outside_ram,
    readable_after_writable,
    next_out_of_range,
    loop,
    nested_indirect,
    indirect_with_next,
    bad_indirect_table,
    too_long,
};
constexpr ChainPoison kChainPoisons[] = {
    ChainPoison::zero_length,
    ChainPoison::outside_ram,
    ChainPoison::readable_after_writable,
    ChainPoison::next_out_of_range,
    ChainPoison::loop,
    ChainPoison::nested_indirect,
    ChainPoison::indirect_with_next,
    ChainPoison::bad_indirect_table,
    ChainPoison::too_long,
};

const char* name(ChainPoison p) {
    switch (p) {
    case ChainPoison::none:
        return "none";
    case ChainPoison::zero_length:
        return "zero-length descriptor";
    case ChainPoison::outside_ram:
        return "buffer outside RAM";
    case ChainPoison::readable_after_writable:
        return "readable after writable";
    case ChainPoison::next_out_of_range:
        return "next out of range";
    case ChainPoison::loop:
        return "loop";
    case ChainPoison::nested_indirect:
        return "nested indirect";
    case ChainPoison::indirect_with_next:
        return "indirect with NEXT";
    case ChainPoison::bad_indirect_table:
        return "bad indirect table";
    case ChainPoison::too_long:
        return "too long";
    }
    return "?";
}

// One descriptor's buffer.
struct Piece {
    uint64_t addr;
    uint32_t len;
    bool writable;
};

// A request as planned: its two byte streams (§2.6.4: the device assumes
// nothing about how they are cut into descriptors), what it must do, and
// where its descriptors landed.
struct Planned {
    std::string kind; // for the coverage check: which rule this request tests
    std::string what;
    std::vector<uint8_t> readable; // header, then OUT data or ranges
    uint32_t writable{0};          // IN data or ID, then the status byte
    bool indirect{false};
    ChainPoison chain_poison{ChainPoison::none};
    // Expected answer; for a chain poison only "IOERR or nothing".
    uint32_t used_len{0};
    // What the writable stream must hold afterwards, byte by byte (nullopt:
    // the canary is still there), the status byte last. Empty for a chain
    // poison.
    std::vector<std::optional<uint8_t>> expect_written;
    // Effect on the disk of a well-formed request that succeeds.
    std::vector<uint8_t> out_data;
    uint64_t out_sector{0};
    std::vector<std::pair<uint64_t, uint64_t>> zeroed; // (sector, count)

    std::vector<Piece> pieces;
    uint16_t head{0};
};

void append_range(std::vector<uint8_t>& v, uint64_t sector, uint32_t count, uint32_t flags) {
    const DiscardWriteZeroes r{sector, count, flags};
    const auto* p = reinterpret_cast<const uint8_t*>(&r);
    v.insert(v.end(), p, p + sizeof r);
}

class HostileGuest final {
  public:
    HostileGuest(const std::string& spec, bool readonly, uint64_t seed)
        : file_(kDiskSectors * kSectorSize), rng_(seed), readonly_(readonly),
          model_(pattern(7, kDiskSectors * kSectorSize, static_cast<uint32_t>(seed))) {
        file_.write(0, model_);
        rig_.emplace(file_.path() + spec + (readonly ? ",readonly" : ""), ~0ull, options());
        ram_end_ = rig_->mem.end().value;
        arena_ = rig_->driver->alloc(kArenaSize, 4096).value;
        const auto& id = rig_->blk->disk().id();
        std::memcpy(id_, id.data(), std::min(id.size(), kIdBytes));
    }

    // Plans, submits and checks one batch; returns what went wrong, if anything.
    std::string run_batch() {
        start_batch();
        std::vector<Planned> batch(pick(rng_, 1, kMaxBatch));
        std::vector<uint64_t> slots(kSlots);
        for (uint64_t i = 0; i < kSlots; ++i)
            slots[i] = i;
        std::shuffle(slots.begin(), slots.end(), rng_);
        for (size_t i = 0; i < batch.size(); ++i) {
            auto& p = batch[i];
            if (chance(rng_, 0.45))
                plan_clean(p, slots[i]);
            else if (chance(rng_, 0.5))
                plan_request_poison(p);
            else
                plan_chain_poison(p);
            lay_out(p);
            ++seen_[p.kind];
        }
        link_and_submit(batch);
        if (auto e = wait_all(batch); !e.empty()) return e;
        if ((rig_->driver->read32(mmio::kStatus) & kStatusNeedsReset) != 0)
            return "the device asked for a reset";
        return check(batch);
    }

    // How many requests tested each rule so far.
    const std::map<std::string, unsigned>& seen() const noexcept { return seen_; }

  private:
    static DriverOptions options() {
        DriverOptions o;
        o.queue_size = kQueueSize;
        return o;
    }

    // --- Guest memory: the arena and its shadow ----------------------------------
    void start_batch() {
        next_ = arena_;
        shadow_.resize(kArenaSize);
        for (size_t i = 0; i < kArenaSize; i += sizeof(uint64_t)) {
            const uint64_t v = rng_();
            std::memcpy(shadow_.data() + i, &v, sizeof v);
        }
        rig_->mem.write_bytes(GuestAddress{arena_}, shadow_);
        may_hold_ioerr_.clear();
        std::vector<uint16_t> all(kQueueSize);
        for (uint16_t i = 0; i < kQueueSize; ++i)
            all[i] = i;
        std::shuffle(all.begin(), all.end(), rng_);
        free_descs_ = std::move(all);
    }
    // A fresh buffer at a random alignment, canary around it.
    uint64_t alloc(uint64_t len, uint64_t align = 0) {
        if (align == 0) {
            static constexpr uint64_t kAligns[] = {1, 2, 8, 16, 512, 4096};
            align = kAligns[pick(rng_, 0, std::size(kAligns) - 1)];
        }
        const uint64_t at = (next_ + pick(rng_, 0, 48) + align - 1) / align * align;
        next_ = at + len;
        if (next_ > arena_ + kArenaSize) throw std::logic_error("the test's arena is too small");
        return at;
    }
    void store(uint64_t addr, std::span<const uint8_t> bytes) {
        rig_->mem.write_bytes(GuestAddress{addr}, bytes);
        std::copy(bytes.begin(), bytes.end(), shadow_.begin() + (addr - arena_));
    }
    void store_desc(uint64_t addr, const VirtqDesc& d) {
        store(addr, {reinterpret_cast<const uint8_t*>(&d), sizeof d});
    }

    // --- Planning ----------------------------------------------------------------
    uint32_t random_type() { return kKnownTypes[pick(rng_, 0, std::size(kKnownTypes) - 1)]; }
    std::vector<uint8_t> random_bytes(size_t n) {
        std::vector<uint8_t> v(n);
        for (auto& b : v)
            b = static_cast<uint8_t>(rng_());
        return v;
    }
    // The writable stream of a request that is refused: only the status byte
    // may change, and only when the chain ends in a writable byte.
    void expect_refused(Planned& p, uint8_t status) {
        p.used_len = p.writable > 0 ? 1 : 0;
        p.expect_written.assign(p.writable, std::nullopt);
        if (p.writable > 0) p.expect_written.back() = status;
    }

    void plan_clean(Planned& p, uint64_t slot) {
        const uint32_t type = random_type();
        const uint32_t n = static_cast<uint32_t>(pick(rng_, 1, kMaxDataSectors));
        const uint64_t sector = slot * kSlotSectors + pick(rng_, 0, kSlotSectors - n);
        p.readable = blk_header(type, sector);
        const bool writes = type == kTypeOut || type == kTypeDiscard || type == kTypeWriteZeroes;
        switch (type) {
        case kTypeIn: {
            p.writable = n * kSectorSize + 1;
            p.kind = "IN";
            p.what = fmt::format("IN sector {} x{}", sector, n);
            const auto* from = model_.data() + sector * kSectorSize;
            p.expect_written.assign(from, from + n * kSectorSize);
            p.expect_written.push_back(kStatusOk);
            p.used_len = p.writable;
            return;
        }
        case kTypeOut:
            p.out_data = random_bytes(n * kSectorSize);
            p.out_sector = sector;
            p.readable.insert(p.readable.end(), p.out_data.begin(), p.out_data.end());
            p.writable = 1;
            p.kind = "OUT";
            p.what = fmt::format("OUT sector {} x{}", sector, n);
            break;
        case kTypeFlush:
            p.writable = 1;
            p.kind = p.what = "FLUSH";
            break;
        case kTypeGetId: {
            p.writable = static_cast<uint32_t>(pick(rng_, 2, 40));
            p.kind = "GET_ID";
            p.what = fmt::format("GET_ID into {} bytes", p.writable - 1);
            const uint32_t id_len = std::min<uint32_t>(p.writable - 1, kIdBytes);
            p.expect_written.assign(p.writable, std::nullopt);
            for (uint32_t i = 0; i < id_len; ++i)
                p.expect_written[i] = id_[i];
            p.expect_written.back() = kStatusOk;
            p.used_len = id_len + 1;
            return;
        }
        default: { // DISCARD or WRITE_ZEROES: up to 3 disjoint ranges in the slot
            const auto ranges = pick(rng_, 1, 3);
            const uint64_t part = kSlotSectors / ranges;
            for (uint64_t i = 0; i < ranges; ++i) {
                const uint64_t count = pick(rng_, 1, part);
                const uint64_t at = slot * kSlotSectors + i * part + pick(rng_, 0, part - count);
                const uint32_t flags =
                    type == kTypeWriteZeroes && chance(rng_, 0.5) ? kWriteZeroesFlagUnmap : 0;
                append_range(p.readable, at, static_cast<uint32_t>(count), flags);
                p.zeroed.emplace_back(at, count);
            }
            p.writable = 1;
            p.kind = type == kTypeDiscard ? "DISCARD" : "WRITE_ZEROES";
            p.what = fmt::format("{} of {} ranges in slot {}", p.kind, ranges, slot);
        }
        }
        if (writes && readonly_) {
            // A read-only disk offers neither DISCARD nor WRITE_ZEROES, and
            // refuses OUT.
            p.out_data.clear();
            p.zeroed.clear();
            p.kind += " on a read-only disk";
            p.what += " on a read-only disk";
            expect_refused(p, type == kTypeOut ? kStatusIoErr : kStatusUnsupp);
            return;
        }
        p.used_len = 1;
        p.expect_written = {kStatusOk};
    }

    // A chain that is fine but a request that is not: each case is wrong in a
    // way that leaves no doubt about the answer.
    void plan_request_poison(Planned& p) {
        const uint64_t any_sector = pick(rng_, 0, kDiskSectors - 1);
        const uint32_t n = static_cast<uint32_t>(pick(rng_, 1, kMaxDataSectors));
        uint8_t status = kStatusIoErr;
        switch (pick(rng_, 0, 11)) {
        case 0: { // a type nobody defined
            uint32_t type = 0;
            do
                type = static_cast<uint32_t>(chance(rng_, 0.5) ? pick(rng_, 0, 20) : rng_());
            while (std::find(std::begin(kKnownTypes), std::end(kKnownTypes), type) !=
                   std::end(kKnownTypes));
            p.readable = blk_header(type, any_sector);
            auto extra = random_bytes(pick(rng_, 0, 64));
            p.readable.insert(p.readable.end(), extra.begin(), extra.end());
            p.writable = static_cast<uint32_t>(pick(rng_, 1, 64));
            p.kind = "unknown type";
            p.what = fmt::format("unknown type {:#x}", type);
            status = kStatusUnsupp;
            break;
        }
        case 1: { // IN or OUT reaching past the end, or wrapping 64 bits
            const bool in = chance(rng_, 0.5);
            const uint64_t sector = chance(rng_, 0.3)   ? UINT64_MAX - pick(rng_, 0, 64)
                                    : chance(rng_, 0.5) ? kDiskSectors - n + pick(rng_, 1, n)
                                                        : kDiskSectors + pick(rng_, 0, 1u << 20);
            p.readable = blk_header(in ? kTypeIn : kTypeOut, sector);
            if (!in) {
                auto data = random_bytes(n * kSectorSize);
                p.readable.insert(p.readable.end(), data.begin(), data.end());
            }
            p.writable = in ? n * kSectorSize + 1 : 1;
            p.kind = "past the end";
            p.what = fmt::format("{} at sector {:#x} x{}", in ? "IN" : "OUT", sector, n);
            break;
        }
        case 2: { // data not a whole number of sectors
            const bool in = chance(rng_, 0.5);
            const uint32_t bytes = n * kSectorSize - static_cast<uint32_t>(pick(rng_, 1, 511));
            p.readable = blk_header(in ? kTypeIn : kTypeOut, any_sector);
            if (!in) {
                auto data = random_bytes(bytes);
                p.readable.insert(p.readable.end(), data.begin(), data.end());
            }
            p.writable = in ? bytes + 1 : 1;
            p.kind = "partial sector";
            p.what = fmt::format("{} of {} bytes", in ? "IN" : "OUT", bytes);
            break;
        }
        case 3: { // a header shorter than 16 bytes (nothing readable after it)
            const uint32_t type = chance(rng_, 0.5) ? kTypeIn : kTypeGetId;
            p.readable = blk_header(type, any_sector);
            p.readable.resize(pick(rng_, 1, sizeof(RequestHeader) - 1));
            p.writable = type == kTypeIn ? n * kSectorSize + 1 : kIdBytes + 1;
            p.kind = "short header";
            p.what = fmt::format("{}-byte header", p.readable.size());
            break;
        }
        case 4: { // the header in a writable buffer: nothing readable at all
            const uint32_t type = chance(rng_, 0.5) ? kTypeIn : kTypeFlush;
            p.writable = static_cast<uint32_t>(sizeof(RequestHeader)) +
                         (type == kTypeIn ? n * kSectorSize : 0) + 1;
            p.kind = p.what = "writable header";
            break;
        }
        case 5: { // OUT or FLUSH without a status byte: nothing to answer in
            const bool out = chance(rng_, 0.5);
            p.readable = blk_header(out ? kTypeOut : kTypeFlush, any_sector);
            if (out) {
                auto data = random_bytes(n * kSectorSize);
                p.readable.insert(p.readable.end(), data.begin(), data.end());
            }
            p.writable = 0;
            p.kind = "no status byte";
            p.what = fmt::format("{} without a status byte", out ? "OUT" : "FLUSH");
            break;
        }
        case 6: // IN with readable data after the header
            p.readable = blk_header(kTypeIn, any_sector);
            p.readable.resize(p.readable.size() + n * kSectorSize, 0x5a);
            p.writable = n * kSectorSize + 1;
            p.kind = p.what = "IN with readable data";
            break;
        case 7: { // OUT, FLUSH or DISCARD with more than a status byte writable
            const uint32_t type =
                readonly_ ? kTypeOut : (chance(rng_, 0.5) ? kTypeOut : kTypeDiscard);
            p.readable = blk_header(chance(rng_, 0.3) ? kTypeFlush : type, any_sector);
            if (type == kTypeOut)
                p.readable.resize(p.readable.size() + n * kSectorSize, 0x3c);
            else
                append_range(p.readable, any_sector, 1, 0);
            p.writable = static_cast<uint32_t>(pick(rng_, 2, 600));
            p.kind = p.what = "more than one writable byte";
            break;
        }
        case 8: { // GET_ID with room for the status only
            p.readable = blk_header(kTypeGetId, any_sector);
            p.writable = 1;
            p.kind = p.what = "GET_ID without room";
            break;
        }
        default: { // DISCARD/WRITE_ZEROES with a bad range list
            const bool zeroes = chance(rng_, 0.5);
            p.readable = blk_header(zeroes ? kTypeWriteZeroes : kTypeDiscard, any_sector);
            p.writable = 1;
            if (readonly_) {
                // Not offered at all: the answer is UNSUPP, ranges unread.
                append_range(p.readable, any_sector, 1, 0);
                p.kind = p.what = "DISCARD/WRITE_ZEROES on a read-only disk";
                status = kStatusUnsupp;
                break;
            }
            // Good ranges first: none of them may be carried out either.
            for (auto i = pick(rng_, 0, 3); i > 0; --i)
                append_range(p.readable, pick(rng_, 0, kDiskSectors - 8), 8, 0);
            switch (pick(rng_, 0, 4)) {
            case 0:
                append_range(p.readable, kDiskSectors - pick(rng_, 0, 7), 8, 0);
                p.kind = p.what = "a range past the end";
                break;
            case 1:
                append_range(p.readable, UINT64_MAX - pick(rng_, 0, 8), 16, 0);
                p.kind = p.what = "a range wrapping 64 bits";
                break;
            case 2:
                p.readable.resize(p.readable.size() + pick(rng_, 1, 15), 0);
                p.kind = p.what = "ranges not a multiple of 16 bytes";
                break;
            case 3:
                while (p.readable.size() < sizeof(RequestHeader) + 17 * sizeof(DiscardWriteZeroes))
                    append_range(p.readable, 0, 1, 0);
                p.kind = p.what = "17 ranges";
                break;
            default:
                append_range(p.readable, 0, 1, zeroes ? 2u << pick(rng_, 0, 8) : 1);
                p.kind = p.what = "a range with flags it may not have";
                status = kStatusUnsupp;
            }
            p.what = fmt::format("{}: {}", zeroes ? "WRITE_ZEROES" : "DISCARD", p.what);
        }
        }
        expect_refused(p, status);
    }

    // A request that would be fine in a chain that is not.
    void plan_chain_poison(Planned& p) {
        plan_clean(p, pick(rng_, 0, kSlots - 1));
        p.out_data.clear();
        p.zeroed.clear();
        p.chain_poison = kChainPoisons[pick(rng_, 0, std::size(kChainPoisons) - 1)];
        p.kind = name(p.chain_poison);
        p.what = fmt::format("{} with a chain poison: {}", p.what, name(p.chain_poison));
        p.expect_written.clear();
    }

    // --- Layout --------------------------------------------------------------------
    // Cuts `len` bytes into 1-3 pieces.
    std::vector<uint32_t> cuts(uint32_t len) {
        std::vector<uint32_t> out;
        uint32_t left = len;
        for (auto parts = pick(rng_, 1, 3); parts > 1 && left > 1; --parts) {
            const auto n = static_cast<uint32_t>(pick(rng_, 1, left - 1));
            out.push_back(n);
            left -= n;
        }
        out.push_back(left);
        return out;
    }

    void lay_out(Planned& p) {
        p.indirect = chance(rng_, 0.4);
        const auto cp = p.chain_poison;
        // Poisons that need an indirect table get one.
        if (cp == ChainPoison::nested_indirect || cp == ChainPoison::indirect_with_next ||
            cp == ChainPoison::bad_indirect_table || cp == ChainPoison::too_long)
            p.indirect = true;
        uint32_t at = 0;
        if (!p.readable.empty())
            for (uint32_t n : cuts(static_cast<uint32_t>(p.readable.size()))) {
                const uint64_t addr = alloc(n);
                store(addr, std::span(p.readable).subspan(at, n));
                p.pieces.push_back({addr, n, false});
                at += n;
            }
        if (p.writable > 0)
            for (uint32_t n : cuts(p.writable))
                p.pieces.push_back({alloc(n), n, true});
        switch (cp) {
        case ChainPoison::zero_length: {
            const auto pos = pick(rng_, 0, p.pieces.size());
            const bool w = pos > 0 && p.pieces[pos - 1].writable;
            p.pieces.insert(p.pieces.begin() + static_cast<ptrdiff_t>(pos), {alloc(1), 0, w});
            break;
        }
        case ChainPoison::outside_ram: {
            auto& victim = p.pieces[pick(rng_, 0, p.pieces.size() - 1)];
            const uint64_t addrs[] = {ram_end_ - victim.len / 2, ram_end_ + pick(rng_, 0, 1 << 30),
                                      UINT64_MAX - pick(rng_, 0, 4096)};
            victim.addr = addrs[pick(rng_, 0, 2)];
            if (victim.len < 2) victim.len = 2; // so the first choice still crosses the end
            break;
        }
        case ChainPoison::readable_after_writable:
            if (p.writable == 0) p.pieces.push_back({alloc(8), 8, true});
            p.pieces.push_back({alloc(16), 16, false});
            break;
        case ChainPoison::too_long:
            // One more descriptor than the queue size, all in one table.
            while (p.pieces.size() <= kQueueSize)
                p.pieces.insert(p.pieces.begin(), {p.pieces.front().addr, 1, false});
            break;
        default:
            break;
        }
    }

    // Descriptors for `pieces`, NEXT-linked in `indices` order.
    std::vector<VirtqDesc> chain_descs(const Planned& p, const std::vector<uint16_t>& indices) {
        std::vector<VirtqDesc> d;
        for (size_t i = 0; i < p.pieces.size(); ++i) {
            const auto& pc = p.pieces[i];
            const bool last = i + 1 == p.pieces.size();
            d.push_back(VirtqDesc{pc.addr, pc.len,
                                  static_cast<uint16_t>((pc.writable ? kDescFlagWrite : 0) |
                                                        (last ? 0 : kDescFlagNext)),
                                  last ? uint16_t{0} : indices[i + 1]});
        }
        const auto table_size = p.indirect ? p.pieces.size() : kQueueSize;
        if (p.chain_poison == ChainPoison::next_out_of_range) {
            auto& at = d[pick(rng_, 0, d.size() - 1)];
            at.flags |= kDescFlagNext;
            at.next = static_cast<uint16_t>(pick(rng_, table_size, UINT16_MAX));
        } else if (p.chain_poison == ChainPoison::loop) {
            d.back().flags |= kDescFlagNext;
            d.back().next = indices[pick(rng_, 0, d.size() - 1)];
        }
        return d;
    }

    void link_and_submit(std::vector<Planned>& batch) {
        auto& drv = *rig_->driver;
        const bool hold = chance(rng_, 0.5);
        drv.hold_avail(hold);
        for (auto& p : batch) {
            if (!p.indirect) {
                std::vector<uint16_t> idx(
                    free_descs_.end() - static_cast<ptrdiff_t>(p.pieces.size()), free_descs_.end());
                free_descs_.resize(free_descs_.size() - p.pieces.size());
                const auto d = chain_descs(p, idx);
                for (size_t i = 0; i < d.size(); ++i)
                    drv.write_descriptor(idx[i], d[i]);
                p.head = idx.front();
            } else {
                std::vector<uint16_t> idx(p.pieces.size());
                for (uint16_t i = 0; i < idx.size(); ++i)
                    idx[i] = i;
                const auto d = chain_descs(p, idx);
                const uint64_t table = alloc(d.size() * sizeof(VirtqDesc), 16);
                for (size_t i = 0; i < d.size(); ++i)
                    store_desc(table + i * sizeof(VirtqDesc), d[i]);
                VirtqDesc top{table, static_cast<uint32_t>(d.size() * sizeof(VirtqDesc)),
                              kDescFlagIndirect, 0};
                p.head = free_descs_.back();
                free_descs_.pop_back();
                switch (p.chain_poison) {
                case ChainPoison::nested_indirect: {
                    const auto i = pick(rng_, 0, d.size() - 1);
                    store_desc(table + i * sizeof(VirtqDesc),
                               VirtqDesc{table, top.len, kDescFlagIndirect, 0});
                    break;
                }
                case ChainPoison::indirect_with_next: {
                    top.flags |= kDescFlagNext;
                    top.next = free_descs_.back();
                    free_descs_.pop_back();
                    drv.write_descriptor(top.next, VirtqDesc{alloc(1), 1, kDescFlagWrite, 0});
                    break;
                }
                case ChainPoison::bad_indirect_table:
                    switch (pick(rng_, 0, 3)) {
                    case 0:
                        top.len = 0;
                        break;
                    case 1:
                        top.len -= static_cast<uint32_t>(pick(rng_, 1, 15));
                        break;
                    case 2: // crossing the end of RAM, or beyond it
                        top.addr = chance(rng_, 0.5) ? ram_end_ + 16 * pick(rng_, 0, 1 << 20)
                                                     : ram_end_ - 16;
                        top.len = 32;
                        break;
                    default:
                        top.addr += pick(rng_, 1, 15); // not 16-byte aligned
                    }
                    break;
                default:
                    break;
                }
                drv.write_descriptor(p.head, top);
            }
            drv.push_avail_raw(p.head);
        }
        drv.hold_avail(false);
        drv.kick();
    }

    std::string wait_all(const std::vector<Planned>& batch) {
        auto& drv = *rig_->driver;
        std::vector<std::optional<uint32_t>> used(kQueueSize);
        size_t left = batch.size();
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (left > 0) {
            for (const auto& e : drv.reap()) {
                used[e.id] = e.len;
                --left;
            }
            if (left == 0) break;
            if (std::chrono::steady_clock::now() > deadline)
                return fmt::format("{} of {} requests never completed", left, batch.size());
            drv.wait_interrupt(std::chrono::milliseconds(50));
        }
        for (const auto& p : batch) {
            const uint32_t len = *used[p.head];
            const bool ok = p.chain_poison != ChainPoison::none ? len <= 1 : len == p.used_len;
            if (!ok)
                return fmt::format(
                    "{}: used length {}, expected {}", p.what, len,
                    p.chain_poison != ChainPoison::none ? "0 or 1" : std::to_string(p.used_len));
        }
        return {};
    }

    // --- Checks --------------------------------------------------------------------
    std::string check(const std::vector<Planned>& batch) {
        for (const auto& p : batch) {
            if (p.chain_poison != ChainPoison::none) {
                // The device may answer IOERR in the last byte of any writable
                // buffer it validated before it found the fault.
                for (const auto& pc : p.pieces)
                    if (pc.writable && pc.len > 0 && pc.addr >= arena_ &&
                        pc.addr + pc.len <= arena_ + kArenaSize)
                        may_hold_ioerr_.push_back(pc.addr + pc.len - 1);
                continue;
            }
            // The writable stream, piece by piece, onto the shadow.
            size_t at = 0;
            for (const auto& pc : p.pieces) {
                if (!pc.writable) continue;
                for (uint32_t i = 0; i < pc.len; ++i, ++at)
                    if (const auto v = p.expect_written[at]) shadow_[pc.addr - arena_ + i] = *v;
            }
            if (!p.out_data.empty())
                std::copy(p.out_data.begin(), p.out_data.end(),
                          model_.begin() + static_cast<ptrdiff_t>(p.out_sector * kSectorSize));
            for (const auto& [sector, count] : p.zeroed)
                std::fill_n(model_.begin() + static_cast<ptrdiff_t>(sector * kSectorSize),
                            count * kSectorSize, 0);
        }
        std::vector<uint8_t> now(kArenaSize);
        rig_->mem.read_bytes(GuestAddress{arena_}, now);
        std::sort(may_hold_ioerr_.begin(), may_hold_ioerr_.end());
        for (uint64_t i = 0; i < kArenaSize; ++i) {
            if (now[i] == shadow_[i]) continue;
            const uint64_t addr = arena_ + i;
            if (now[i] == kStatusIoErr &&
                std::binary_search(may_hold_ioerr_.begin(), may_hold_ioerr_.end(), addr))
                continue;
            return fmt::format("guest byte {:#x} is {:#04x}, expected {:#04x} ({})", addr, now[i],
                               shadow_[i], owner(batch, addr));
        }
        const auto disk = file_.contents(0, model_.size());
        if (disk != model_) {
            const auto m = std::mismatch(disk.begin(), disk.end(), model_.begin());
            const auto off = static_cast<uint64_t>(m.first - disk.begin());
            return fmt::format("disk byte {} (sector {}) is {:#04x}, expected {:#04x}; batch: {}",
                               off, off / kSectorSize, *m.first, *m.second, describe(batch));
        }
        return {};
    }

    static std::string owner(const std::vector<Planned>& batch, uint64_t addr) {
        for (const auto& p : batch)
            for (const auto& pc : p.pieces)
                if (addr >= pc.addr && addr - pc.addr < pc.len)
                    return fmt::format("in a {} buffer of {}",
                                       pc.writable ? "writable" : "readable", p.what);
        return fmt::format("in no buffer; batch: {}", describe(batch));
    }
    static std::string describe(const std::vector<Planned>& batch) {
        std::string s;
        for (const auto& p : batch)
            s += fmt::format("{}[{}{}] ", p.what, p.pieces.size(), p.indirect ? " indirect" : "");
        return s;
    }

    TempFile file_;
    Rng rng_;
    bool readonly_;
    std::vector<uint8_t> model_; // what the disk must hold
    std::optional<BlockRig> rig_;
    uint8_t id_[kIdBytes] = {};
    uint64_t ram_end_{0}; // one past guest RAM: where "outside RAM" starts
    uint64_t arena_{0};
    uint64_t next_{0};
    std::vector<uint8_t> shadow_; // what the arena must hold
    std::vector<uint64_t> may_hold_ioerr_;
    std::vector<uint16_t> free_descs_;
    std::map<std::string, unsigned> seen_;
};

void fuzz(const std::string& spec, bool readonly, uint64_t default_seed) {
    const uint64_t seed = env_or("EMBER_FUZZ_SEED", default_seed);
    const uint64_t batches = env_or("EMBER_FUZZ_BATCHES", 150);
    const std::string about = fmt::format("disk options '{}{}', seed {} (EMBER_FUZZ_SEED)", spec,
                                          readonly ? ",readonly" : "", seed);
    INFO(about);
    HostileGuest g(spec, readonly, seed);
    for (uint64_t b = 0; b < batches; ++b) {
        const auto problem = g.run_batch();
        if (!problem.empty()) FAIL("batch ", b, ": ", problem);
        if (batches >= 2000 && (b + 1) % 1000 == 0)
            MESSAGE(fmt::format("{} of {} batches passed", b + 1, batches));
    }
    // The run means something only if it reached every rule; this fails when
    // the generator stops producing one of them.
    std::vector<std::string> rules = {"IN",
                                      "GET_ID",
                                      "FLUSH",
                                      "unknown type",
                                      "past the end",
                                      "partial sector",
                                      "short header",
                                      "writable header",
                                      "no status byte",
                                      "IN with readable data",
                                      "more than one writable byte",
                                      "GET_ID without room"};
    for (auto p : kChainPoisons)
        rules.emplace_back(name(p));
    if (readonly) {
        for (const char* r :
             {"OUT on a read-only disk", "DISCARD on a read-only disk",
              "WRITE_ZEROES on a read-only disk", "DISCARD/WRITE_ZEROES on a read-only disk"})
            rules.emplace_back(r);
    } else {
        for (const char* r : {"OUT", "DISCARD", "WRITE_ZEROES", "a range past the end",
                              "a range wrapping 64 bits", "ranges not a multiple of 16 bytes",
                              "17 ranges", "a range with flags it may not have"})
            rules.emplace_back(r);
    }
    for (const auto& r : rules) {
        const auto it = g.seen().find(r);
        CHECK_MESSAGE((it != g.seen().end() && it->second > 0), "no request tested: ", r);
    }
    CHECK(g.seen().size() == rules.size());
}

} // namespace

TEST_CASE("virtio-blk hostile guest: random requests and chains, io_uring, page cache") {
    fuzz(",engine=uring", false, 1);
}

TEST_CASE("virtio-blk hostile guest: random requests and chains, sync engine") {
    fuzz(",engine=sync", false, 2);
}

TEST_CASE("virtio-blk hostile guest: random requests and chains, O_DIRECT") {
    fuzz(",engine=uring,cache=none", false, 3);
}

TEST_CASE("virtio-blk hostile guest: random requests and chains, read-only disk") {
    fuzz(",engine=uring", true, 4);
}

// The ring and the registers, not the requests: while the device runs, the
// guest writes random values to random registers (sizes and offsets too),
// scribbles over its descriptor table, avail and used rings, and kicks. The
// device may do anything the garbage asks of it inside guest RAM and the disk
// (and may ask for a reset), but it must not crash, hang or corrupt host
// memory (the ASan tier runs this too), and after a reset and a fresh
// initialisation, as a driver recovering would do, it must work again.
TEST_CASE("virtio-blk hostile guest: register writes and ring scribbles, then a reset recovers") {
    const uint64_t seed = env_or("EMBER_FUZZ_SEED", 5);
    const uint64_t rounds = env_or("EMBER_FUZZ_BATCHES", 150);
    INFO("seed ", seed, " (EMBER_FUZZ_SEED)");
    Rng rng(seed);
    TempFile f(kDiskSectors * kSectorSize);
    DriverOptions opts;
    opts.queue_size = 16; // each init lays out new indirect tables; keep them small
    BlockRig r(f.path(), ~0ull, opts);
    auto& d = *r.driver;
    const uint64_t ring = opts.ring_base.value;
    static constexpr uint64_t kRegisters[] = {mmio::kDeviceFeaturesSel,
                                              mmio::kDriverFeatures,
                                              mmio::kDriverFeaturesSel,
                                              mmio::kQueueSel,
                                              mmio::kQueueNum,
                                              mmio::kQueueReady,
                                              mmio::kQueueNotify,
                                              mmio::kInterruptAck,
                                              mmio::kStatus,
                                              mmio::kQueueDescLow,
                                              mmio::kQueueDescHigh,
                                              mmio::kQueueDriverLow,
                                              mmio::kQueueDriverHigh,
                                              mmio::kQueueDeviceLow,
                                              mmio::kQueueDeviceHigh,
                                              mmio::kShmSel,
                                              mmio::kConfig,
                                              mmio::kConfigGeneration};
    uint64_t needed_reset = 0;
    for (uint64_t round = 0; round < rounds; ++round) {
        for (auto actions = pick(rng, 1, 40); actions > 0; --actions) {
            switch (pick(rng, 0, 5)) {
            case 0: { // a register, a random value (status values often)
                const uint64_t reg = kRegisters[pick(rng, 0, std::size(kRegisters) - 1)];
                const uint32_t v = chance(rng, 0.5) ? static_cast<uint32_t>(pick(rng, 0, 0x7f))
                                                    : static_cast<uint32_t>(rng());
                d.write32(reg, v);
                break;
            }
            case 1: { // any offset in the window, any size
                const uint64_t off = pick(rng, 0, 0x1ff);
                uint8_t bytes[8] = {};
                const size_t len = size_t{1} << pick(rng, 0, 3);
                if (chance(rng, 0.5)) {
                    for (auto& b : bytes)
                        b = static_cast<uint8_t>(rng());
                    r.transport->write(off, {bytes, len});
                } else {
                    r.transport->read(off, {bytes, len});
                }
                break;
            }
            case 2: { // scribble over the rings (desc table, avail, used page)
                const uint64_t at = ring + pick(rng, 0, 0x1ff8);
                r.mem.write<uint64_t>(GuestAddress{at & ~uint64_t{1}}, rng());
                break;
            }
            case 3: { // a descriptor pointing anywhere, even into the rings
                VirtqDesc desc{chance(rng, 0.5) ? ring + pick(rng, 0, 0x2000)
                                                : pick(rng, 0, r.mem.end().value + 4096),
                               static_cast<uint32_t>(pick(rng, 0, 9000)),
                               static_cast<uint16_t>(pick(rng, 0, 7)),
                               static_cast<uint16_t>(pick(rng, 0, 20))};
                d.write_descriptor(static_cast<uint16_t>(pick(rng, 0, 15)), desc);
                break;
            }
            case 4: // make entries available, sensible or not, and kick
                r.mem.write<uint16_t>(
                    GuestAddress{d.queue().avail_ring.value + 4 + 2 * pick(rng, 0, 15)},
                    static_cast<uint16_t>(pick(rng, 0, 20)));
                r.mem.store_release<uint16_t>(GuestAddress{d.queue().avail_ring.value + 2},
                                              static_cast<uint16_t>(pick(rng, 0, 40)));
                d.write32(mmio::kQueueNotify, 0);
                break;
            default: // let the I/O thread run into it
                std::this_thread::sleep_for(std::chrono::microseconds(pick(rng, 0, 500)));
            }
        }
        if ((d.read32(mmio::kStatus) & kStatusNeedsReset) != 0) ++needed_reset;
        // Recover as a driver would: reset, initialise, and use the disk.
        d.free_all();
        d.init();
        const uint64_t sector = pick(rng, 0, kDiskSectors - 8);
        const auto data = pattern(sector, 4096, static_cast<uint32_t>(round));
        const auto w = r.write(sector, data);
        REQUIRE_MESSAGE(w.status == kStatusOk, "round ", round);
        const auto back = r.read(sector, 4096);
        REQUIRE_MESSAGE(back.status == kStatusOk, "round ", round);
        REQUIRE_MESSAGE(back.data == data, "round ", round);
    }
    // The garbage reached the device: some rounds broke the ring for real.
    CHECK(needed_reset > 0);
    CHECK(r.transport->bad_accesses() > 0);
}
