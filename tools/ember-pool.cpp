// ember-pool: boots K test guests in parallel from one configuration, with
// libember (public headers only), runs a test script in each (the test
// initramfs runs /tests/NAME.sh for ember.run=NAME, guest-images/init.sh),
// shows a live progress line and prints a summary table.
//
//   ember-pool --kernel K --initrd I [--run NAME] [--cmdline-extra STR] -n K
//              [--cpus N] [--mem SIZE] [--timeout S] [--console-dir DIR] [-v]
//
// Exit status: 0 when every guest powered off cleanly (and, with --run, its
// script exited 0: "EMBER-GUEST EXIT rc=0"), 1 otherwise, 2 for bad usage.
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ember/ember.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace embed = ember::embed;

constexpr const char* kBaseCmdline = "console=ttyS0 reboot=k panic=1 quiet";
constexpr const char* kReadyLine = "EMBER-GUEST READY";
constexpr const char* kExitLine = "EMBER-GUEST EXIT rc=";
constexpr size_t kTailLines = 3;

// One guest's console, fed by libember's callback on a vcpu thread: cut into
// lines, watched for the initramfs's markers, the last lines kept.
class GuestConsole final {
  public:
    GuestConsole(Clock::time_point t0, std::optional<std::string> log_path) : t0_(t0) {
        if (log_path) log_.open(*log_path, std::ios::binary | std::ios::trunc);
    }

    void feed(std::string_view text) {
        std::lock_guard lock(mu_);
        if (log_.is_open()) log_.write(text.data(), static_cast<std::streamsize>(text.size()));
        for (char c : text) {
            if (c == '\r') continue;
            if (c != '\n') {
                if (line_.size() < 4096) line_.push_back(c);
                continue;
            }
            finish_line();
        }
    }

    std::optional<double> boot_seconds() const {
        std::lock_guard lock(mu_);
        return boot_s_;
    }
    std::optional<int> script_rc() const {
        std::lock_guard lock(mu_);
        return rc_;
    }
    std::string tail() const {
        std::lock_guard lock(mu_);
        std::string out;
        for (const auto& l : tail_)
            out += (out.empty() ? "" : " | ") + l;
        if (!line_.empty()) out += (out.empty() ? "" : " | ") + line_;
        return out;
    }

  private:
    void finish_line() {
        if (!boot_s_ && line_.find(kReadyLine) != std::string::npos)
            boot_s_ = std::chrono::duration<double>(Clock::now() - t0_).count();
        if (const auto at = line_.find(kExitLine); at != std::string::npos && !rc_) {
            try {
                rc_ = std::stoi(line_.substr(at + std::char_traits<char>::length(kExitLine)));
            } catch (const std::exception&) {
                rc_ = -1;
            }
        }
        if (!line_.empty()) {
            tail_.push_back(line_);
            if (tail_.size() > kTailLines) tail_.pop_front();
        }
        line_.clear();
    }

    Clock::time_point t0_;
    mutable std::mutex mu_;
    std::ofstream log_;
    std::string line_;
    std::deque<std::string> tail_;
    std::optional<double> boot_s_;
    std::optional<int> rc_;
};

struct Guest {
    std::unique_ptr<GuestConsole> console;
    std::optional<embed::Vm> vm;
    std::optional<embed::ExitInfo> exit;
    double wall_s = 0;
};

uint64_t parse_size(const std::string& text) {
    size_t used = 0;
    const uint64_t n = std::stoull(text, &used);
    const std::string suffix = text.substr(used);
    if (suffix.empty() || suffix == "M" || suffix == "m") return n << 20;
    if (suffix == "G" || suffix == "g") return n << 30;
    throw std::invalid_argument("size '" + text + "': use a number of MiB or a M/G suffix");
}

std::string shorten(const std::string& s, size_t n) {
    return s.size() <= n ? s : "..." + s.substr(s.size() - n + 3);
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "ember-pool: boot K test guests in parallel with libember and summarise how they ended"};
    std::string kernel, initrd, run, extra, mem = "256M", console_dir;
    unsigned count = 1, cpus = 1;
    double timeout_s = 600;
    bool verbose = false;
    app.add_option("--kernel", kernel, "guest kernel (bzImage or vmlinux)")->required();
    app.add_option("--initrd", initrd, "test initramfs (guest-images/build)")->required();
    app.add_option("--run", run, "run /tests/NAME.sh in each guest (ember.run=NAME)");
    app.add_option("--cmdline-extra", extra, "appended to the guest command line");
    app.add_option("-n", count, "number of guests")->check(CLI::Range(1u, 64u));
    app.add_option("--cpus", cpus, "vcpus per guest")->check(CLI::Range(1u, 254u));
    app.add_option("--mem", mem, "memory per guest (e.g. 256M, 1G)");
    app.add_option("--timeout", timeout_s, "seconds before unfinished guests are stopped")
        ->check(CLI::PositiveNumber);
    app.add_option("--console-dir", console_dir, "write each guest's console to DIR/guest-N.log");
    app.add_flag("-v,--verbose", verbose, "libember's informational messages too");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }

    embed::set_log_level(verbose ? embed::LogLevel::info : embed::LogLevel::warning);
    embed::VmConfig config;
    config.kernel = kernel;
    config.initrd = initrd;
    config.cpus = cpus;
    config.cmdline = kBaseCmdline;
    if (!run.empty()) config.cmdline += " ember.run=" + run;
    if (!extra.empty()) config.cmdline += " " + extra;
    try {
        config.memory_bytes = parse_size(mem);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ember-pool: --mem: %s\n", e.what());
        return 2;
    }

    const auto t0 = Clock::now();
    std::vector<Guest> guests(count);
    try {
        for (unsigned i = 0; i < count; ++i) {
            auto& g = guests[i];
            std::optional<std::string> log;
            if (!console_dir.empty()) log = console_dir + "/guest-" + std::to_string(i) + ".log";
            g.console = std::make_unique<GuestConsole>(t0, log);
            embed::VmConfig c = config;
            c.console = embed::ConsoleConfig::to_callback(
                [con = g.console.get()](std::string_view t) { con->feed(t); });
            g.vm.emplace(embed::Vm::create(c));
        }
        for (auto& g : guests)
            g.vm->start();
    } catch (const ember::Error& e) {
        std::fprintf(stderr, "ember-pool: %s\n", e.what());
        return 1; // the destructors stop the guests already started
    }
    std::fprintf(stderr, "ember-pool: %u guests started: %s\n", count, config.cmdline.c_str());

    const bool tty = ::isatty(STDERR_FILENO) != 0;
    const auto deadline =
        t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
    std::string last_progress;
    bool timed_out = false;
    for (;;) {
        unsigned booted = 0, done = 0;
        for (auto& g : guests) {
            if (!g.exit) {
                if (auto e = g.vm->wait_for(std::chrono::milliseconds(0))) {
                    g.exit = *e;
                    g.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
                }
            }
            booted += g.console->boot_seconds() ? 1 : 0;
            done += g.exit ? 1 : 0;
        }
        const auto progress = "ember-pool: booted " + std::to_string(booted) + "/" +
                              std::to_string(count) + ", running " + std::to_string(count - done) +
                              ", done " + std::to_string(done) + "/" + std::to_string(count);
        // On a terminal one line rewritten in place; in a log, a line per change.
        if (progress != last_progress) {
            std::fprintf(stderr, tty ? "\r%s\033[K" : "%s\n", progress.c_str());
            last_progress = progress;
        }
        if (done == count) break;
        if (Clock::now() >= deadline) {
            timed_out = true;
            for (auto& g : guests) {
                if (g.exit) continue;
                g.vm->stop();
                g.exit = embed::ExitInfo{embed::ExitReason::stopped, "timed out"};
                g.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
            }
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (tty) std::fputc('\n', stderr);

    unsigned clean = 0;
    std::printf("%-6s %-9s %-8s %-8s %-7s %s\n", "guest", "exit", "boot s", "wall s", "test rc",
                "console tail");
    for (size_t i = 0; i < guests.size(); ++i) {
        const auto& g = guests[i];
        const auto boot = g.console->boot_seconds();
        const auto rc = g.console->script_rc();
        const bool ok = g.exit->reason == embed::ExitReason::poweroff && (run.empty() || rc == 0);
        clean += ok ? 1 : 0;
        std::string reason = embed::to_string(g.exit->reason);
        char boot_text[32] = "-";
        if (boot) std::snprintf(boot_text, sizeof boot_text, "%.1f", *boot);
        std::string tail = g.console->tail();
        if (!g.exit->message.empty() && g.exit->reason != embed::ExitReason::poweroff)
            tail = "(" + g.exit->message + ") " + tail;
        std::printf("%-6zu %-9s %-8s %-8.1f %-7s %s\n", i, reason.c_str(), boot_text, g.wall_s,
                    rc ? std::to_string(*rc).c_str() : "-", shorten(tail, 100).c_str());
    }
    std::printf("ember-pool: %u/%u guests powered off cleanly%s in %.1f s\n", clean, count,
                timed_out ? " (timeout hit)" : "",
                std::chrono::duration<double>(Clock::now() - t0).count());
    return clean == count ? 0 : 1;
}
