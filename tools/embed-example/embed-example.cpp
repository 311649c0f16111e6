// A small program built against the INSTALLED libember, as an outside user
// would (tests/e2e/scenarios/embed-pool.host compiles it):
//
//   c++ -std=c++20 -static embed-example.cpp $(pkg-config --cflags --libs --static ember)
//   embed-example KERNEL INITRD CHECKPOINT_DIR
//
// Boots the test guest running its counting script (guest-images/init.sh,
// tests/e2e/guest/count.sh), pauses and resumes it, checkpoints it and stops,
// restores the checkpoint into a new VM that counts on to the end, and prints
// how each VM ended and its counters (Vm::metrics()). Exit status 0 when the restored guest powered
// off.
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>

#include <ember/ember.h>

namespace embed = ember::embed;

namespace {

// Collects the console and lets the main thread wait for a line.
class ConsoleWatch {
  public:
    void feed(std::string_view text) {
        {
            std::lock_guard lock(mu_);
            text_.append(text);
        }
        cv_.notify_all();
        std::fwrite(text.data(), 1, text.size(), stdout);
    }
    bool wait_for_text(const std::string& what, std::chrono::seconds timeout) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, timeout, [&] { return text_.find(what) != std::string::npos; });
    }

  private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::string text_;
};

const char* state_name(const embed::Vm& vm) {
    return embed::to_string(vm.state());
}

// One line of the VM's counters (Vm::metrics()).
void print_metrics(const char* which, const embed::Vm& vm) {
    const embed::Metrics m = vm.metrics();
    unsigned long long exits = 0;
    for (const auto& v : m.vcpus)
        exits += v.exits;
    std::printf("embed-example: %s metrics: state %s, %zu vcpu(s), %llu exits\n", which,
                embed::to_string(m.state), m.vcpus.size(), exits);
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: embed-example KERNEL INITRD CHECKPOINT_DIR\n");
        return 2;
    }
    try {
        ConsoleWatch first_console;
        embed::VmConfig config;
        config.kernel = argv[1];
        config.initrd = argv[2];
        config.cmdline = "console=ttyS0 reboot=k panic=1 quiet ember.run=count ember.count=8";
        config.memory_bytes = 256ULL << 20;
        config.console =
            embed::ConsoleConfig::to_callback([&](std::string_view t) { first_console.feed(t); });

        auto vm = embed::Vm::create(config);
        std::printf("embed-example: created, state %s, libember %s\n", state_name(vm),
                    embed::version());
        vm.start();
        if (!first_console.wait_for_text("EMBER-GUEST COUNT 3", std::chrono::seconds(300))) {
            std::printf("embed-example: the guest never counted to 3\n");
            return 1;
        }
        print_metrics("running VM", vm);
        vm.pause();
        std::printf("embed-example: paused, state %s\n", state_name(vm));
        vm.resume();
        std::printf("embed-example: resumed, state %s\n", state_name(vm));
        const auto info = vm.checkpoint(argv[3], embed::AfterCheckpoint::stop);
        const auto first = vm.wait();
        std::printf("embed-example: checkpoint of %llu MiB; first VM exit: %s (%s)\n",
                    static_cast<unsigned long long>(info.memory_bytes >> 20),
                    embed::to_string(first.reason), first.message.c_str());

        ConsoleWatch second_console;
        embed::RestoreOverrides overrides;
        overrides.console =
            embed::ConsoleConfig::to_callback([&](std::string_view t) { second_console.feed(t); });
        auto restored = embed::Vm::restore(argv[3], overrides);
        restored.start();
        const auto second = restored.wait_for(std::chrono::seconds(300));
        if (!second) {
            std::printf("embed-example: the restored guest did not stop within 300 s\n");
            return 1;
        }
        std::printf("embed-example: restored VM exit: %s%s%s\n", embed::to_string(second->reason),
                    second->message.empty() ? "" : ": ", second->message.c_str());
        print_metrics("restored VM", restored); // the final counts, since the restore
        return second->reason == embed::ExitReason::poweroff ? 0 : 1;
    } catch (const ember::Error& e) {
        std::printf("embed-example: error: %s\n", e.what());
        return 1;
    }
}
