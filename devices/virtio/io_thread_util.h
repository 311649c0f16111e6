// Small pieces the devices' I/O threads (block_io_thread, net_io_thread)
// share: descriptors for their Asio loops, and asking the thread itself for
// its state.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <string_view>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <fmt/format.h>

#include "vmm/errors.h"

namespace ember {

// A descriptor of the thread's own for an Asio stream_descriptor, which
// closes what it is given. Throws SystemError naming `what`.
inline int dup_or_throw(int fd, std::string_view what) {
    const int d = ::dup(fd);
    if (d < 0) throw_errno(fmt::format("dup({})", what));
    return d;
}

// Resets an eventfd's counter (a kick, a wakeup); nothing to do when empty.
inline void drain_eventfd(int fd) noexcept {
    uint64_t v = 0;
    [[maybe_unused]] auto n = ::read(fd, &v, sizeof v);
}

// Adds `n` to a counter only one I/O thread writes (a device's successor
// thread starts after the join): a load and a store, no locked
// read-modify-write on a path passed once per request or frame. Readers on
// other threads see it with relaxed loads.
inline void bump(std::atomic<uint64_t>& counter, uint64_t n = 1) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// Runs `describe` on the thread that runs `io` (its state is its own) and
// returns its text, or says that the thread did not answer within
// `timeout` (`why`: what it may be doing instead). Not from that thread.
inline std::string ask_io_thread(asio::io_context& io, std::function<std::string()> describe,
                                 std::chrono::milliseconds timeout, std::string_view who,
                                 std::string_view why) {
    auto answer = std::make_shared<std::promise<std::string>>();
    auto future = answer->get_future();
    asio::post(io, [answer, describe = std::move(describe)] { answer->set_value(describe()); });
    if (future.wait_for(timeout) != std::future_status::ready)
        return fmt::format("{} did not answer within {} ms ({})", who, timeout.count(), why);
    return future.get();
}

} // namespace ember
