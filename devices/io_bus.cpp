#include "devices/io_bus.h"

#include <algorithm>
#include <cstring>

#include "vmm/errors.h"
#include "vmm/log.h"

namespace ember {

void IoBus::add(uint64_t base, uint64_t size, std::shared_ptr<IoHandler> handler) {
    if (size == 0 || base + size < base)
        throw Error(fmt::format("{} window of {} at {:#x} has a bad size", kind_, handler->name(), base));
    for (const auto& m : mappings_) {
        if (base < m.base + m.size && m.base < base + size)
            throw Error(fmt::format("{} window of {} at {:#x} overlaps {} at {:#x}", kind_,
                                    handler->name(), base, m.handler->name(), m.base));
    }
    mappings_.push_back(Mapping{base, size, std::move(handler)});
    std::sort(mappings_.begin(), mappings_.end(),
              [](const Mapping& a, const Mapping& b) { return a.base < b.base; });
}

const IoBus::Mapping* IoBus::find(uint64_t addr, uint64_t len) const noexcept {
    auto it = std::upper_bound(mappings_.begin(), mappings_.end(), addr,
                               [](uint64_t a, const Mapping& m) { return a < m.base; });
    if (it == mappings_.begin()) return nullptr;
    --it;
    if (addr - it->base >= it->size || len > it->size - (addr - it->base)) return nullptr;
    return &*it;
}

void IoBus::read(uint64_t addr, std::span<uint8_t> data) const {
    if (const auto* m = find(addr, data.size())) {
        m->handler->read(addr - m->base, data);
        return;
    }
    std::memset(data.data(), 0xff, data.size());
    unhandled_.fetch_add(1, std::memory_order_relaxed);
    log::debug("{} read of {} bytes at {:#x}: no device", kind_, data.size(), addr);
}

void IoBus::write(uint64_t addr, std::span<const uint8_t> data) const {
    if (const auto* m = find(addr, data.size())) {
        m->handler->write(addr - m->base, data);
        return;
    }
    unhandled_.fetch_add(1, std::memory_order_relaxed);
    log::debug("{} write of {} bytes at {:#x}: no device", kind_, data.size(), addr);
}

} // namespace ember
