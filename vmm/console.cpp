#include "vmm/console.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cstring>
#include <fmt/format.h>

#include "vmm/errors.h"
#include "vmm/log.h"
#include "vmm/raw_terminal.h"

namespace ember {
namespace {
constexpr uint8_t kCtrlA = 0x01;
}

ConsoleSpec parse_console_spec(const std::string& text) {
    if (text == "stdio") return {ConsoleSpec::Kind::stdio, {}, {}};
    if (text == "none") return {ConsoleSpec::Kind::none, {}, {}};
    if (text.rfind("file:", 0) == 0 && text.size() > 5) return {ConsoleSpec::Kind::file, text.substr(5), {}};
    throw Error(fmt::format("--console: '{}' is not one of stdio, none, file:PATH", text));
}

Console::Console(const ConsoleSpec& spec) : spec_(spec) {
    switch (spec.kind) {
    case ConsoleSpec::Kind::stdio:
        out_ = STDOUT_FILENO;
        break;
    case ConsoleSpec::Kind::none:
        break;
    case ConsoleSpec::Kind::callback:
        if (!spec.callback) throw Error("console: a callback console needs a callback");
        break;
    case ConsoleSpec::Kind::file:
        out_fd_ = UniqueFd(::open(spec.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!out_fd_)
            throw Error(fmt::format("--console file:{}: cannot create: {}", spec.path, std::strerror(errno)));
        out_ = out_fd_.get();
        break;
    }
}

Console::~Console() { stop_input(); }

void Console::write(std::span<const uint8_t> bytes) {
    if (spec_.kind == ConsoleSpec::Kind::callback) {
        spec_.callback(bytes);
        return;
    }
    if (out_ < 0) return;
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(out_, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return; // a closed stdout must not stop the guest
        done += static_cast<size_t>(n);
    }
}

void Console::start_input(std::function<void(std::span<const uint8_t>)> to_guest, std::function<void()> on_quit) {
    if (spec_.kind != ConsoleSpec::Kind::stdio) return;
    to_guest_ = std::move(to_guest);
    on_quit_ = std::move(on_quit);
    if (::isatty(STDIN_FILENO)) {
        termios t{};
        if (::tcgetattr(STDIN_FILENO, &t) == 0) {
            saved_termios_ = t;
            ::cfmakeraw(&t);
            // Keep output post-processing off as the guest sends CR LF itself.
            ::tcsetattr(STDIN_FILENO, TCSANOW, &t);
            raw_terminal::remember(STDIN_FILENO, *saved_termios_);
            log::info("console: interactive; type Ctrl-A x to stop the VM");
        }
    }
    reader_ = std::thread([this] { input_loop(); });
}

void Console::stop_input() {
    if (reader_.joinable()) {
        stop_event_.signal();
        reader_.join();
    }
    if (saved_termios_) {
        raw_terminal::forget();
        ::tcsetattr(STDIN_FILENO, TCSANOW, &*saved_termios_);
        saved_termios_.reset();
    }
}

void Console::input_loop() {
    pthread_setname_np(pthread_self(), "console");
    bool after_ctrl_a = false;
    uint8_t buf[256];
    for (;;) {
        pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {stop_event_.fd(), POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (fds[1].revents) return;
        if (!(fds[0].revents & (POLLIN | POLLHUP))) continue;
        const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n <= 0) return; // EOF: the guest simply gets no more input
        std::vector<uint8_t> out;
        for (ssize_t i = 0; i < n; ++i) {
            const uint8_t c = buf[i];
            if (after_ctrl_a) {
                after_ctrl_a = false;
                if (c == 'x' || c == 'X') {
                    on_quit_();
                    return;
                }
                out.push_back(c); // Ctrl-A Ctrl-A sends one Ctrl-A
                continue;
            }
            if (c == kCtrlA && saved_termios_) {
                after_ctrl_a = true;
                continue;
            }
            out.push_back(c);
        }
        if (!out.empty()) to_guest_(out);
    }
}

} // namespace ember
