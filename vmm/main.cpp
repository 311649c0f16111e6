// The ember command: parse the command line, build the VM, run it, and turn
// the way it stopped into an exit status (0 guest power-off/reboot, 1 error or
// guest panic, 2 bad usage).
#include <cstdio>
#include <string>
#include <vector>

#include "vmm/cli.h"
#include "vmm/log.h"
#include "vmm/vm.h"

namespace ember {
const char* version_string();
}

int main(int argc, char** argv) {
    using namespace ember;
    std::vector<std::string> args(argv, argv + argc);
    Command cmd;
    try {
        cmd = parse_command_line(args);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "ember: %s\nRun 'ember --help' for usage.\n", e.what());
        return 2;
    }
    if (auto* h = std::get_if<HelpRequest>(&cmd)) {
        std::fputs(h->text.c_str(), stdout);
        return 0;
    }
    if (std::holds_alternative<VersionRequest>(cmd)) {
        std::printf("%s\n", version_string());
        return 0;
    }
    auto& run = std::get<RunRequest>(cmd);
    if (run.verbose) log::set_level(log::Level::debug);
    try {
        Vm vm(run.config);
        const VmExit e = vm.run();
        if (e.reason == ExitReason::error) {
            log::error("{}", e.message);
        } else if (e.message.empty()) {
            log::info("{}", describe(e.reason));
        } else {
            log::info("{} ({})", describe(e.reason), e.message);
        }
        return exit_status(e.reason);
    } catch (const std::exception& e) {
        log::error("{}", e.what());
        return 1;
    }
}
