// The guest's serial console on the host: output sinks (stdout, a file, or
// nothing) and, for stdio, a reader thread that feeds stdin to the UART with
// the terminal in raw mode (restored on exit) so an interactive shell works.
#pragma once

#include <termios.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <thread>

#include "vmm/unique_fd.h"

namespace ember {

struct ConsoleSpec {
    // callback: libember's console sink (include/ember/vm.h ConsoleConfig).
    enum class Kind { stdio, none, file, callback };
    Kind kind = Kind::stdio;
    std::string path; // for Kind::file
    // For Kind::callback: called with the UART lock held, on a vcpu thread.
    std::function<void(std::span<const uint8_t>)> callback;
};

// Parses "stdio", "none" or "file:PATH"; throws ember::Error naming the value.
ConsoleSpec parse_console_spec(const std::string& text);

class Console final {
public:
    explicit Console(const ConsoleSpec& spec);
    ~Console();
    Console(const Console&) = delete;
    Console& operator=(const Console&) = delete;

    // Guest output; called with the UART lock held, so it only writes.
    void write(std::span<const uint8_t> bytes);

    // Starts forwarding stdin (stdio consoles only). `on_quit` runs when the
    // user types Ctrl-A x.
    void start_input(std::function<void(std::span<const uint8_t>)> to_guest, std::function<void()> on_quit);
    void stop_input();

private:
    void input_loop();

    ConsoleSpec spec_;
    UniqueFd out_fd_;
    int out_ = -1;
    std::optional<termios> saved_termios_;
    std::function<void(std::span<const uint8_t>)> to_guest_;
    std::function<void()> on_quit_;
    EventFd stop_event_;
    std::thread reader_;
};

} // namespace ember
