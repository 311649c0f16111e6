// The ember command's system-call filter: what it lets through and what it
// stops, each case in a child process (a filter cannot be taken off again).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <pty.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "devices/virtio/quiesce.h"
#include "tests/support/block_rig.h"
#include "vmm/console.h"
#include "vmm/fault/fault_points.h"
#include "vmm/log.h"
#include "vmm/seccomp.h"
#include "vmm/thread_confinement.h"

namespace {

struct ChildResult {
    int status = -1; // exit status, or -signal when killed
    std::string err; // what it wrote to stderr
};

// Runs `work` in a child under the filter; its return value is the exit status.
ChildResult run_filtered(const std::function<int()>& work) {
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::dup2(pipe_fds[1], STDERR_FILENO);
        ::close(pipe_fds[0]);
        try {
            ember::seccomp::install();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "install: %s\n", e.what());
            ::_exit(99);
        }
        ::_exit(work());
    }
    ::close(pipe_fds[1]);
    ChildResult r;
    char buf[512];
    ssize_t n;
    while ((n = ::read(pipe_fds[0], buf, sizeof buf)) > 0)
        r.err.append(buf, static_cast<size_t>(n));
    ::close(pipe_fds[0]);
    int ws = 0;
    REQUIRE(::waitpid(pid, &ws, 0) == pid);
    r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws);
    return r;
}

void check_blocked(const ChildResult& r, const std::string& call) {
    CHECK(r.status == ember::seccomp::kBlockedExitStatus);
    INFO("stderr: " << r.err);
    CHECK(r.err.find("ember: seccomp: system call " + call + " (") != std::string::npos);
    CHECK(r.err.find("--no-seccomp") != std::string::npos);
}

} // namespace

TEST_CASE(
    "seccomp: every allowed name is a system call here, and the dangerous ones are not allowed") {
    const auto names = ember::seccomp::allowed_names();
    CHECK(names.size() > 50);
    for (const auto& n : names) {
        INFO(n);
        CHECK(seccomp_syscall_resolve_name(n.c_str()) != __NR_SCMP_ERROR);
    }
    for (const char* n : {"execve",     "execveat",    "fork",
                          "vfork",      "ptrace",      "process_vm_writev",
                          "mount",      "umount2",     "pivot_root",
                          "chroot",     "init_module", "finit_module",
                          "kexec_load", "bpf",         "perf_event_open",
                          "setuid",     "unshare",     "setns",
                          "reboot",     "keyctl",      "userfaultfd"}) {
        INFO(n);
        CHECK(std::find(names.begin(), names.end(), n) == names.end());
    }
}

TEST_CASE("seccomp: the work of a VMM goes on under the filter") {
    const auto dir =
        std::filesystem::temp_directory_path() / ("ember-seccomp-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto r = run_filtered([&]() -> int {
        // Files: what disks, checkpoints and logs do.
        const auto f = dir / "disk.img";
        int fd = ::open(f.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return 1;
        const char data[] = "ember";
        if (::pwrite(fd, data, sizeof data, 4096) != sizeof data) return 2;
        if (::fdatasync(fd) != 0 || ::ftruncate(fd, 1 << 20) != 0) return 3;
        char back[sizeof data] = {};
        if (::pread(fd, back, sizeof back, 4096) != sizeof back) return 4;
        ::close(fd);
        std::filesystem::rename(f, dir / "renamed.img");
        std::filesystem::create_directories(dir / "snap");
        // A thread: glibc tries clone3 first (ENOSYS) and falls back to clone.
        int from_thread = 0;
        std::thread t([&] { from_thread = 7; });
        t.join();
        if (from_thread != 7) return 5;
        // eventfds, memfds, Unix sockets, signals to itself.
        const int efd = ::eventfd(0, EFD_CLOEXEC);
        if (efd < 0) return 6;
        const int mfd = ::memfd_create("inflight", MFD_CLOEXEC);
        if (mfd < 0 || ::ftruncate(mfd, 4096) != 0) return 7;
        void* m = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
        if (m == MAP_FAILED) return 8;
        const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) return 9;
        if (::kill(::getpid(), 0) != 0) return 10;
        rlimit lim{};
        if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 11;
        int nonblocking = 1;
        if (::ioctl(efd, FIONBIO, &nonblocking) != 0) return 12;
        return 0;
    });
    std::filesystem::remove_all(dir);
    INFO("stderr: " << r.err);
    CHECK(r.status == 0);
    CHECK(r.err.empty());
}

TEST_CASE("seccomp: starting a program stops ember with exit status 148, naming execve") {
    const auto r = run_filtered([] {
        char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
        ::execv("/bin/true", argv);
        return 0;
    });
    check_blocked(r, "execve");
}

TEST_CASE("seccomp: a new process, a network socket, a signal to another process are stopped") {
    SUBCASE("fork") {
        // glibc's fork is a clone without CLONE_THREAD.
        check_blocked(run_filtered([] { return ::fork() >= 0 ? 0 : 1; }), "clone");
    }
    SUBCASE("an IPv4 socket") {
        check_blocked(run_filtered([] { return ::socket(AF_INET, SOCK_STREAM, 0) >= 0 ? 0 : 1; }),
                      "socket");
    }
    SUBCASE("a signal to init") {
        check_blocked(run_filtered([] { return ::kill(1, 0); }), "kill");
    }
    SUBCASE("raising a resource limit") {
        check_blocked(run_filtered([] {
                          rlimit lim{};
                          ::getrlimit(RLIMIT_NOFILE, &lim);
                          return ::setrlimit(RLIMIT_NOFILE, &lim);
                      }),
                      "prlimit64");
    }
    SUBCASE("an ioctl that is not KVM's or the console's") {
        // TIOCSTI pushes input into a terminal: not something a VMM does.
        check_blocked(run_filtered([] {
                          char c = 'x';
                          return ::ioctl(STDIN_FILENO, TIOCSTI, &c);
                      }),
                      "ioctl");
    }
    SUBCASE("ptrace") {
        check_blocked(
            run_filtered([] { return static_cast<int>(::syscall(SYS_ptrace, 0, 0, 0, 0)); }),
            "ptrace");
    }
}

TEST_CASE("seccomp: the message also goes to the log file") {
    const auto log_file = std::filesystem::temp_directory_path() /
                          ("ember-seccomp-log-" + std::to_string(::getpid()));
    const auto r = run_filtered([&] {
        const int fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) return 1;
        ember::log::set_output(fd, log_file.string());
        ::syscall(SYS_ptrace, 0, 0, 0, 0);
        return 0;
    });
    check_blocked(r, "ptrace");
    std::string text;
    if (FILE* f = std::fopen(log_file.c_str(), "r")) {
        char buf[512];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
            text.append(buf, n);
        std::fclose(f);
    }
    std::filesystem::remove(log_file);
    CHECK(text.find("ember: seccomp: system call ptrace (101) on thread ") != std::string::npos);
    CHECK(text.find(" is not allowed by ember's filter") != std::string::npos);
}

namespace {

// How many seccomp filters thread `tid` of this process runs under.
int filters_of(pid_t tid) {
    const auto path = "/proc/self/task/" + std::to_string(tid) + "/status";
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) return -1;
    char line[256];
    int n = -1;
    while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "Seccomp_filters: %d", &n) == 1) break;
    std::fclose(f);
    return n;
}

// In a child under the filter, with ember's confiner set: `body` on a thread
// named and confined as ember's vcpu or I/O threads are.
ChildResult run_on_confined_thread(const char* name, ember::ConfinedThread kind,
                                   const std::function<void()>& body) {
    return run_filtered([&]() -> int {
        ember::set_thread_confiner(&ember::seccomp::confine_thread);
        std::thread t([&] {
            ::prctl(PR_SET_NAME, name, 0, 0, 0);
            ember::confine_this_thread(kind);
            body();
        });
        t.join();
        return 0;
    });
}

bool has(const std::vector<std::string>& names, const char* n) {
    return std::find(names.begin(), names.end(), n) != names.end();
}

} // namespace

TEST_CASE("seccomp: what vcpu and disk I/O threads may not do") {
    const auto vcpu = ember::seccomp::denied_names(ember::ConfinedThread::vcpu);
    const auto io = ember::seccomp::denied_names(ember::ConfinedThread::disk_io);
    for (const char* n : {"openat", "open", "creat", "socket", "connect", "execve", "fork",
                          "unlinkat", "renameat2", "mkdir", "truncate"}) {
        INFO(n);
        CHECK(has(vcpu, n));
        CHECK(has(io, n));
    }
    // A vcpu starts the disks' I/O threads, rings and in-flight regions at
    // DRIVER_OK; an I/O thread starts nothing.
    for (const char* n : {"clone", "clone3", "memfd_create", "io_uring_setup"}) {
        INFO(n);
        CHECK_FALSE(has(vcpu, n));
        CHECK(has(io, n));
    }
    for (const auto& n : io) {
        INFO(n);
        CHECK(seccomp_syscall_resolve_name(n.c_str()) != __NR_SCMP_ERROR);
    }
}

TEST_CASE("seccomp: a vcpu thread and the I/O thread it starts do their work but open nothing; "
          "other threads still may") {
    using ember::ConfinedThread;
    const auto dir =
        std::filesystem::temp_directory_path() / ("ember-seccomp-io-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto disk = dir / "disk.img";
    SUBCASE("their I/O goes on, the filters stack, and the main thread opens files afterwards") {
        const auto r = run_filtered([&]() -> int {
            ember::set_thread_confiner(&ember::seccomp::confine_thread);
            const int fd = ::open(disk.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
            const int efd = ::eventfd(0, EFD_CLOEXEC);
            if (fd < 0 || efd < 0) return 1;
            // The confined threads cannot open /proc themselves: they wait
            // while this thread reads their filter counts.
            std::atomic<pid_t> vcpu_tid{0};
            std::atomic<pid_t> io_tid{0};
            std::atomic<bool> counted{false};
            std::atomic<int> result{-1};
            std::thread vcpu([&] {
                ember::confine_this_thread(ConfinedThread::vcpu);
                vcpu_tid = ::gettid();
                // What DRIVER_OK does on a vcpu: an in-flight region and an
                // I/O thread, which confines itself further.
                const int region = ::memfd_create("ember-inflight", MFD_CLOEXEC);
                std::thread io([&] {
                    ember::confine_this_thread(ConfinedThread::disk_io);
                    const char data[] = "block";
                    char back[sizeof data] = {};
                    const uint64_t one = 1;
                    const bool ok = ::pwrite(fd, data, sizeof data, 512) == sizeof data &&
                                    ::fdatasync(fd) == 0 &&
                                    ::pread(fd, back, sizeof back, 512) == sizeof back &&
                                    ::write(efd, &one, sizeof one) == sizeof one;
                    result = region < 0 ? 2 : ok ? 0 : 3;
                    io_tid = ::gettid();
                    while (!counted)
                        std::this_thread::sleep_for(std::chrono::milliseconds(1));
                });
                io.join();
            });
            while (io_tid == 0)
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            // The process's filter and the vcpu's; for the I/O thread its own too.
            const int vcpu_filters = filters_of(vcpu_tid);
            const int io_filters = filters_of(io_tid);
            counted = true;
            vcpu.join();
            if (result != 0) return 10 + result;
            if (vcpu_filters != 2) return 20 + vcpu_filters;
            if (io_filters != 3) return 30 + io_filters;
            const int again = ::open(disk.c_str(), O_RDONLY | O_CLOEXEC);
            return again >= 0 && filters_of(::gettid()) == 1 ? 0 : 6;
        });
        INFO("stderr: " << r.err);
        CHECK(r.status == 0);
    }
    SUBCASE("opening a file on an I/O thread stops ember, naming the call and the thread") {
        const auto r = run_on_confined_thread("ember-blk-io", ConfinedThread::disk_io,
                                              [&] { ::open(disk.c_str(), O_RDONLY | O_CLOEXEC); });
        check_blocked(r, "openat");
        // The file it tried, for a report of a filter bug.
        const auto want = "openat (257) of \"" + disk.string() + "\" on thread ember-blk-io";
        CHECK(r.err.find(want) != std::string::npos);
    }
    SUBCASE("a socket on a vcpu thread stops ember, naming the call and the thread") {
        const auto r = run_on_confined_thread("vcpu0", ConfinedThread::vcpu, [] {
            ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        });
        check_blocked(r, "socket");
        CHECK(r.err.find("on thread vcpu0 is not allowed") != std::string::npos);
    }
    SUBCASE("without a confiner (libember), the hook does nothing") {
        const auto r = run_filtered([&]() -> int {
            ember::set_thread_confiner(nullptr);
            int opened = -1;
            std::thread io([&] {
                ember::confine_this_thread(ConfinedThread::vcpu);
                ember::confine_this_thread(ConfinedThread::disk_io);
                opened = ::open(disk.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
            });
            io.join();
            return opened >= 0 && filters_of(::gettid()) == 1 ? 0 : 1;
        });
        CHECK(r.status == 0);
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("seccomp: a disk activated from a confined vcpu thread serves the guest from its "
          "own confined I/O thread") {
    // As in ember: the guest's driver sets DRIVER_OK from a vcpu thread,
    // under the vcpu's filter, and that starts the disk's I/O thread. Session
    // 20's first vcpu filter broke this: naming the new thread from the vcpu
    // opened its /proc comm file.
    ember::testing::TempFile image(1 << 20);
    const auto r = run_filtered([&]() -> int {
        ember::set_thread_confiner(&ember::seccomp::confine_thread);
        ember::testing::BlockRig rig(image.path() + ",engine=uring");
        std::atomic<int> result{-1};
        std::thread vcpu([&] {
            ember::confine_this_thread(ember::ConfinedThread::vcpu);
            try {
                rig.driver->init(~0ull); // DRIVER_OK: the I/O thread starts
                const auto data = ember::testing::pattern(8, 4096);
                const auto w = rig.write(8, data);
                const auto back = rig.read(8, 4096);
                result = w.status == 0 && back.status == 0 && back.data == data ? 0 : 2;
            } catch (const std::exception& e) {
                std::fprintf(stderr, "vcpu: %s\n", e.what());
                result = 3;
            }
        });
        vcpu.join();
        if (result != 0) return 10 + result;
        // The I/O thread named itself, and runs under three filters.
        for (const auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
            FILE* f = std::fopen((t.path() / "comm").c_str(), "r");
            char comm[32] = {};
            if (f == nullptr) continue;
            const bool named = std::fgets(comm, sizeof comm, f) != nullptr &&
                               std::string(comm) == "ember-blk-io\n";
            std::fclose(f);
            if (named) return filters_of(std::stoi(t.path().filename())) == 3 ? 0 : 4;
        }
        return 5;
    });
    INFO("stderr: " << r.err);
    CHECK(r.status == 0);
}

TEST_CASE("seccomp: many threads a vcpu started allocate at once (glibc's malloc counts CPUs "
          "by opening a file when it needs a ninth arena)") {
    // A vcpu starts the disks' I/O threads (up to eight), which run under its
    // filter from their first instruction: with ember's own threads, more
    // than the 8 arenas glibc makes before it first counts the CPUs.
    const auto r = run_filtered([]() -> int {
        ember::set_thread_confiner(&ember::seccomp::confine_thread);
        constexpr int kThreads = 24;
        std::atomic<int> started{0};
        std::atomic<bool> done{false};
        std::atomic<int> failed{0};
        std::thread vcpu([&] {
            ember::confine_this_thread(ember::ConfinedThread::vcpu);
            std::vector<std::thread> threads;
            for (int i = 0; i < kThreads; ++i)
                threads.emplace_back([&] {
                    // Held until every thread has one: each keeps its arena busy.
                    void* p = std::malloc(1000);
                    if (p == nullptr) failed++;
                    started++;
                    while (!done)
                        std::this_thread::sleep_for(std::chrono::milliseconds(1));
                    std::free(p);
                });
            for (auto& t : threads)
                t.join();
        });
        while (started < kThreads)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        done = true;
        vcpu.join();
        return failed == 0 ? 0 : 1;
    });
    INFO("stderr: " << r.err);
    CHECK(r.status == 0);
}

TEST_CASE("seccomp: a call stopped on a thread that blocks every other signal still ends with "
          "148 and the message") {
    // The I/O threads block all but the synchronous signals; with SIGSYS
    // among the blocked ones the kernel would kill ember with a core dump.
    const auto r = run_filtered([]() -> int {
        std::thread io([] {
            ember::QuiescePoint quiesce;
            quiesce.attach_current_thread();
            ::prctl(PR_SET_NAME, "ember-blk-io", 0, 0, 0);
            ::socket(AF_INET, SOCK_STREAM, 0);
        });
        io.join();
        return 0;
    });
    check_blocked(r, "socket");
    CHECK(r.err.find("on thread ember-blk-io") != std::string::npos);
}

TEST_CASE("seccomp: the escape fault (a thread a guest took over) is stopped on an I/O thread, "
          "a vcpu thread and the main thread") {
    using ember::ConfinedThread;
    using ember::fault::Point;
    // The thread as ember names and confines it, escaping at `point`.
    const auto escape_on = [](const char* name, ConfinedThread kind, Point point) {
        const auto r = run_on_confined_thread(name, kind, [&] {
            ember::fault::arm({false, point, 1, ember::fault::Action::escape, 0});
            ember::fault::hit(point);
        });
        check_blocked(r, "openat");
        CHECK(r.err.find(std::string("openat (257) of \"/etc/passwd\" on thread ") + name) !=
              std::string::npos);
    };
    SUBCASE("an I/O thread may not open the host file") {
        escape_on("ember-blk-io", ConfinedThread::disk_io, Point::blk_popped);
    }
    SUBCASE("nor may a vcpu thread") {
        escape_on("vcpu0", ConfinedThread::vcpu, Point::vcpu_mmio);
    }
    SUBCASE("the main thread may open it, but not reach the network") {
        const auto r = run_filtered([]() -> int {
            ember::fault::arm({false, ember::fault::Point::checkpoint_memory, 1,
                               ember::fault::Action::escape, 0});
            ember::fault::hit(ember::fault::Point::checkpoint_memory);
            return 0;
        });
        check_blocked(r, "socket");
    }
    ember::fault::disarm_all();
}

TEST_CASE("seccomp: a call the filter stops gives the terminal back its mode before ember exits") {
    int master = -1;
    int slave = -1;
    REQUIRE(::openpty(&master, &slave, nullptr, nullptr, nullptr) == 0);
    termios before{};
    REQUIRE(::tcgetattr(slave, &before) == 0);
    REQUIRE((before.c_lflag & (ICANON | ECHO)) == (ICANON | ECHO));
    const auto r = run_filtered([&]() -> int {
        ::dup2(slave, STDIN_FILENO);
        ember::Console console(ember::ConsoleSpec{});
        console.start_input([](std::span<const uint8_t>) {}, [] {});
        termios raw{};
        if (::tcgetattr(STDIN_FILENO, &raw) != 0 || (raw.c_lflag & (ICANON | ECHO)) != 0)
            return 1; // the console did not switch to raw mode: nothing to test
        char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
        ::execv("/bin/true", argv);
        return 2;
    });
    check_blocked(r, "execve");
    termios after{};
    REQUIRE(::tcgetattr(slave, &after) == 0);
    CHECK((after.c_lflag & (ICANON | ECHO)) == (ICANON | ECHO));
    CHECK(after.c_oflag == before.c_oflag);
    ::close(slave);
    ::close(master);
}
