#include <doctest/doctest.h>

#include <vector>

#include "devices/io_bus.h"
#include "vmm/errors.h"

using namespace ember;

namespace {
struct Recorder final : IoHandler {
    std::vector<std::pair<uint64_t, uint8_t>> writes;
    std::string_view name() const override { return "recorder"; }
    void read(uint64_t offset, std::span<uint8_t> data) override {
        for (auto& b : data) b = static_cast<uint8_t>(offset);
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        writes.emplace_back(offset, data[0]);
    }
};
} // namespace

TEST_CASE("IoBus: dispatches relative offsets and reads all ones where no device is") {
    IoBus bus("pio");
    auto dev = std::make_shared<Recorder>();
    bus.add(0x3f8, 8, dev);
    uint8_t b = 0;
    bus.read(0x3fa, {&b, 1});
    CHECK(b == 2);
    const uint8_t v = 9;
    bus.write(0x3ff, {&v, 1});
    REQUIRE(dev->writes.size() == 1);
    CHECK(dev->writes[0].first == 7);
    uint32_t w = 0;
    bus.read(0xcfc, {reinterpret_cast<uint8_t*>(&w), 4});
    CHECK(w == 0xffffffff);
    // An access straddling the end of a window is not the device's.
    bus.read(0x3ff, {reinterpret_cast<uint8_t*>(&w), 4});
    CHECK(w == 0xffffffff);
    CHECK(bus.unhandled_accesses() == 2);
}

TEST_CASE("IoBus: overlapping windows are rejected") {
    IoBus bus("mmio");
    bus.add(0x1000, 0x1000, std::make_shared<Recorder>());
    CHECK_THROWS_AS(bus.add(0x1800, 0x1000, std::make_shared<Recorder>()), Error);
    CHECK_NOTHROW(bus.add(0x2000, 0x1000, std::make_shared<Recorder>()));
}
