// State dumps for a guest that seems stuck: `kill -USR2 <ember pid>` logs one
// line per device (ring indices on both sides, host I/O in flight, wakeups,
// InterruptStatus), so a hang can be told apart: a lost kick, a lost
// interrupt, a lost host completion, or a guest that simply stopped asking.
//
//   main():  block SIGUSR2 before any thread starts, then serve_sigusr2()
//   Vm:      diag_ = diagnostics::add_source([this] { return describe(); });
//
// A library user that never calls serve_sigusr2() gets no signal handling.
#pragma once

#include <functional>
#include <string>

namespace ember::diagnostics {

// Unregisters its source on destruction; after that returns, the source's
// function is not running and is never called again.
class Registration final {
  public:
    Registration() = default;
    explicit Registration(uint64_t id) noexcept : id_(id) {}
    Registration(Registration&& o) noexcept : id_(o.id_) { o.id_ = 0; }
    Registration& operator=(Registration&& o) noexcept;
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    ~Registration();

  private:
    uint64_t id_{0};
};

// `describe` returns lines ("\n"-separated) about its owner's state. It runs
// on the diagnostics thread; it must not block for long.
[[nodiscard]] Registration add_source(std::function<std::string()> describe);

// Every registered source's lines, in registration order.
std::string describe_all();

// Starts a detached thread that logs describe_all() on each SIGUSR2. The
// caller must have blocked SIGUSR2 in every thread (threads inherit the mask
// of their creator, so block it first thing in main()). Idempotent.
void serve_sigusr2();

} // namespace ember::diagnostics
