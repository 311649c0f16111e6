// The ember command's system-call filter: what it lets through and what it
// stops, each case in a child process (a filter cannot be taken off again).
#include <doctest/doctest.h>

#include <fcntl.h>
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
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

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

TEST_CASE("seccomp: a disk I/O thread does its I/O but opens nothing; other threads still may") {
    const auto denied = ember::seccomp::io_thread_denied_names();
    for (const char* n : {"openat", "socket", "clone", "clone3", "memfd_create", "io_uring_setup",
                          "unlinkat", "renameat2"}) {
        INFO(n);
        CHECK(std::find(denied.begin(), denied.end(), n) != denied.end());
    }
    for (const auto& n : denied) {
        INFO(n);
        CHECK(seccomp_syscall_resolve_name(n.c_str()) != __NR_SCMP_ERROR);
    }
    const auto dir =
        std::filesystem::temp_directory_path() / ("ember-seccomp-io-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto disk = dir / "disk.img";
    SUBCASE("its I/O goes on, and the main thread opens files after it is confined") {
        const auto r = run_filtered([&]() -> int {
            ember::set_io_thread_confiner(&ember::seccomp::confine_io_thread);
            const int fd = ::open(disk.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
            const int efd = ::eventfd(0, EFD_CLOEXEC);
            if (fd < 0 || efd < 0) return 1;
            int io_result = -1;
            std::thread io([&] {
                ember::confine_io_thread();
                const char data[] = "block";
                char back[sizeof data] = {};
                const uint64_t one = 1;
                const bool ok = ::pwrite(fd, data, sizeof data, 512) == sizeof data &&
                                ::fdatasync(fd) == 0 &&
                                ::pread(fd, back, sizeof back, 512) == sizeof back &&
                                ::write(efd, &one, sizeof one) == sizeof one;
                io_result = ok ? 0 : 2;
            });
            io.join();
            if (io_result != 0) return 10 + io_result;
            const int again = ::open(disk.c_str(), O_RDONLY | O_CLOEXEC);
            return again >= 0 ? 0 : 3;
        });
        INFO("stderr: " << r.err);
        CHECK(r.status == 0);
    }
    SUBCASE("opening a file there stops ember, naming the call and the thread") {
        const auto r = run_filtered([&]() -> int {
            ember::set_io_thread_confiner(&ember::seccomp::confine_io_thread);
            std::thread io([&] {
                ::prctl(PR_SET_NAME, "ember-blk-io", 0, 0, 0);
                ember::confine_io_thread();
                ::open(disk.c_str(), O_RDONLY | O_CLOEXEC);
            });
            io.join();
            return 0;
        });
        check_blocked(r, "openat");
        CHECK(r.err.find("on thread ember-blk-io is not allowed") != std::string::npos);
    }
    SUBCASE("without a confiner (libember), the hook does nothing") {
        const auto r = run_filtered([&]() -> int {
            ember::set_io_thread_confiner(nullptr);
            int opened = -1;
            std::thread io([&] {
                ember::confine_io_thread();
                opened = ::open(disk.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
            });
            io.join();
            return opened >= 0 ? 0 : 1;
        });
        CHECK(r.status == 0);
    }
    std::filesystem::remove_all(dir);
}
