// Port-I/O and MMIO dispatch from vcpu exits to devices (Fuchsia's IoHandler /
// IoMapping idea). The bus is built before the vcpus start and is immutable
// afterwards, so lookups on the vcpu path take no lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace ember {

// A device register window. `offset` is relative to the window base; data
// sizes are 1, 2, 4 or 8 bytes as the guest accessed them.
class IoHandler {
public:
    virtual ~IoHandler() = default;
    virtual std::string_view name() const = 0;
    virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
    virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class IoBus final {
public:
    explicit IoBus(std::string_view kind) : kind_(kind) {}

    // Maps [base, base+size) to handler. Throws ember::Error on overlap. Only
    // before the vcpus start.
    void add(uint64_t base, uint64_t size, std::shared_ptr<IoHandler> handler);

    // Dispatch one access. An address with no device reads as all ones and
    // ignores writes (DESIGN.md "Boot"): counted, logged at debug level.
    void read(uint64_t addr, std::span<uint8_t> data) const;
    void write(uint64_t addr, std::span<const uint8_t> data) const;

    uint64_t unhandled_accesses() const noexcept {
        return unhandled_.load(std::memory_order_relaxed);
    }

private:
    struct Mapping {
        uint64_t base;
        uint64_t size;
        std::shared_ptr<IoHandler> handler;
    };
    const Mapping* find(uint64_t addr, uint64_t len) const noexcept;

    std::string_view kind_;
    std::vector<Mapping> mappings_; // sorted by base
    mutable std::atomic<uint64_t> unhandled_{0};
};

} // namespace ember
