#include "vmm/seccomp.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <malloc.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/ucontext.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>

#include <fmt/format.h>

#include "vmm/errors.h"
#include "vmm/log.h"
#include "vmm/raw_terminal.h"

namespace ember::seccomp {
namespace {

// One allowance: the system call, and conditions on its arguments that must
// all hold (none: any arguments). Several rules for one call are alternatives.
struct Rule {
    const char* name;
    std::vector<scmp_arg_cmp> args;
};

// What ember does after its command line is read: guest memory, KVM, the
// disks (io_uring or plain calls), checkpoints (files and directories), the
// control socket (a Unix socket), logs and metrics, its own threads and
// signals. Not allowed, among others: execve, fork, ptrace, mount, module
// and kexec calls, bpf, perf_event_open, network sockets, signals to other
// processes, setuid and friends.
std::vector<Rule> rules(pid_t pid) {
    std::vector<Rule> r;
    auto any = [&r](std::initializer_list<const char*> names) {
        for (const char* n : names)
            r.push_back({n, {}});
    };
    // Files and descriptors: disks, kernels, checkpoints, logs, metrics.
    any({"read",      "write",      "readv",      "writev",     "pread64",
         "pwrite64",  "preadv",     "pwritev",    "preadv2",    "pwritev2",
         "lseek",     "open",       "openat",     "close",      "close_range",
         "dup",       "dup2",       "dup3",       "fcntl",      "fstat",
         "stat",      "lstat",      "newfstatat", "statx",      "access",
         "faccessat", "faccessat2", "readlink",   "readlinkat", "getdents64",
         "getcwd",    "mkdir",      "mkdirat",    "rmdir",      "unlink",
         "unlinkat",  "rename",     "renameat",   "renameat2",  "ftruncate",
         "truncate",  "fallocate",  "fsync",      "fdatasync",  "copy_file_range",
         "chmod",     "fchmod",     "fchmodat",   "umask",      "statfs",
         "fstatfs",   "pipe2"});
    // Memory: guest RAM, the in-flight regions (memfd), the heap.
    any({"mmap", "munmap", "mprotect", "madvise", "mremap", "brk", "memfd_create"});
    // Threads, time and identity.
    any({"futex",
         "set_robust_list",
         "rseq",
         "set_tid_address",
         "gettid",
         "getpid",
         "getppid",
         "sched_yield",
         "sched_getaffinity",
         "sched_setaffinity",
         "nanosleep",
         "clock_nanosleep",
         "clock_gettime",
         "clock_getres",
         "gettimeofday",
         "getrusage",
         "getuid",
         "geteuid",
         "getgid",
         "getegid",
         "uname",
         "getrandom",
         "exit",
         "exit_group"});
    // Threads only: a clone without CLONE_THREAD would be a new process.
    r.push_back({"clone", {SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)}});
    // Limits may be read (glibc does for thread stacks), never changed.
    r.push_back({"prlimit64", {SCMP_A2(SCMP_CMP_EQ, 0)}});
    // Thread names (pthread_setname_np on the calling thread).
    r.push_back({"prctl", {SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME)}});
    r.push_back({"prctl", {SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME)}});
    // More filters on top (confine_thread): a filter can only be added,
    // never loosened or removed.
    any({"seccomp"});
    // Signals: handlers and masks (the checkpoint and quiesce signals), and
    // signals to this process's own threads only.
    any({"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "rt_sigtimedwait",
         "rt_sigsuspend", "restart_syscall", "signalfd4"});
    const auto own = static_cast<scmp_datum_t>(pid);
    for (const char* n : {"kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"})
        r.push_back({n, {SCMP_A0(SCMP_CMP_EQ, own)}});
    // Waiting: Asio, the I/O threads, ioeventfd/irqfd, io_uring.
    any({"eventfd2", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
         "poll", "ppoll", "select", "pselect6", "timerfd_create", "timerfd_settime",
         "timerfd_gettime", "io_uring_setup", "io_uring_enter", "io_uring_register"});
    // The control socket: Unix sockets only.
    r.push_back({"socket", {SCMP_A0(SCMP_CMP_EQ, AF_UNIX)}});
    r.push_back({"socketpair", {SCMP_A0(SCMP_CMP_EQ, AF_UNIX)}});
    any({"bind", "listen", "accept", "accept4", "connect", "recvfrom", "sendto", "recvmsg",
         "sendmsg", "shutdown", "setsockopt", "getsockopt", "getsockname", "getpeername"});
    // ioctl: every KVM request (type KVMIO), the console's terminal, Asio's
    // non-blocking switch, a disk's size (block devices), reflinked disk
    // copies for checkpoints, attaching a tap (network devices, when the
    // control socket adds one or a checkpoint is restored).
    r.push_back({"ioctl", {SCMP_A1(SCMP_CMP_MASKED_EQ, 0xff00, KVMIO << 8)}});
    const unsigned long requests[] = {TCGETS,       TCSETS,    TCSETSW,  TCSETSF,  TIOCGWINSZ,
                                      FIONBIO,      FIONREAD,  FIOCLEX,  FIONCLEX, FICLONE,
                                      BLKGETSIZE64, BLKSSZGET, TUNSETIFF};
    for (unsigned long req : requests)
        r.push_back({"ioctl", {SCMP_A1(SCMP_CMP_EQ, req)}});
    return r;
}

// What the threads most exposed to the guest must not do on top of the
// process filter (some of it the process filter already stops, e.g. fork;
// stopping it again costs nothing and keeps these lists meaningful alone).
// Every file, disk and socket they use is opened before they start.
constexpr const char* kGuestFacingDenied[] = {
    "open",     "openat",    "openat2",  "creat",   "socket",   "socketpair", "connect",
    "bind",     "listen",    "accept",   "accept4", "fork",     "vfork",      "execve",
    "execveat", "mkdir",     "mkdirat",  "rmdir",   "unlink",   "unlinkat",   "rename",
    "renameat", "renameat2", "truncate", "chmod",   "fchmodat",
};
// An I/O thread (a disk's or a network device's) also starts nothing: a vcpu
// starts the I/O threads, and their io_uring instances and in-flight regions
// (memfds), when the driver sets DRIVER_OK, so it keeps those calls.
constexpr const char* kIoThreadAlsoDenied[] = {"clone", "clone3", "memfd_create", "io_uring_setup"};

// Names for the SIGSYS handler, resolved before the filter goes in: the
// handler may call nothing that allocates.
constexpr int kMaxSyscall = 512;
std::array<std::array<char, 32>, kMaxSyscall> g_names{};

void resolve_names() {
    for (int nr = 0; nr < kMaxSyscall; ++nr) {
        char* n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        if (!n) continue;
        std::strncpy(g_names[nr].data(), n, g_names[nr].size() - 1);
        std::free(n);
    }
}

// Async-signal-safe text building for the handler.
struct Line {
    std::array<char, 512> buf{};
    size_t len = 0;
    void add(std::string_view s) {
        const size_t n = std::min(s.size(), buf.size() - len);
        std::memcpy(buf.data() + len, s.data(), n);
        len += n;
    }
    void add_number(long v) {
        char digits[24];
        int i = 0;
        unsigned long u =
            v < 0 ? 0UL - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
        do {
            digits[i++] = static_cast<char>('0' + u % 10);
            u /= 10;
        } while (u != 0);
        if (v < 0) add("-");
        while (i > 0)
            add(std::string_view(&digits[--i], 1));
    }
};

// The path argument of an open-like call, from the registers the call was
// made with (x86-64: arguments in rdi, rsi, ...), or nullptr.
const char* opened_path(int nr, void* context) {
    if (context == nullptr) return nullptr;
    const auto& regs = static_cast<const ucontext_t*>(context)->uc_mcontext.gregs;
    greg_t arg = 0;
    if (nr == SYS_open || nr == SYS_creat)
        arg = regs[REG_RDI];
    else if (nr == SYS_openat || nr == SYS_openat2)
        arg = regs[REG_RSI];
    return reinterpret_cast<const char*>(arg); // 0: nullptr
}

// The filter's default action traps here (SCMP_ACT_TRAP) instead of killing
// silently, so the user learns which call it was.
void on_blocked(int, siginfo_t* info, void* context) {
    // First, so that the message below reads right on a terminal the
    // console had in raw mode, and the user's shell has its echo back.
    raw_terminal::restore_before_exit();
    Line l;
    const int nr = info->si_syscall;
    l.add("ember: seccomp: system call ");
    if (nr >= 0 && nr < kMaxSyscall && g_names[nr][0] != '\0')
        l.add(g_names[nr].data());
    else
        l.add("?");
    l.add(" (");
    l.add_number(nr);
    l.add(")");
    // The file a blocked open names: what a report of a filter bug needs
    // most. The pointer is ember's own argument to the call it just made.
    if (const char* path = opened_path(nr, context)) {
        l.add(" of \"");
        l.add(std::string_view(path, ::strnlen(path, 200)));
        l.add("\"");
    }
    l.add(" on thread ");
    char thread[16] = "?"; // the kernel's limit, with the terminating zero
    ::prctl(PR_GET_NAME, thread, 0, 0, 0);
    l.add(std::string_view(thread, ::strnlen(thread, sizeof thread)));
    l.add(" is not allowed by ember's filter; ember stops (exit status 148). If ember made it "
          "doing its own work, that is a bug in the filter: run with --no-seccomp meanwhile\n");
    (void)!::write(STDERR_FILENO, l.buf.data(), l.len);
    if (const int fd = log::output_fd(); fd != STDERR_FILENO)
        (void)!::write(fd, l.buf.data(), l.len);
    ::_exit(kBlockedExitStatus);
}

struct ContextDeleter {
    void operator()(scmp_filter_ctx c) const { seccomp_release(c); }
};
using Context = std::unique_ptr<void, ContextDeleter>;

[[noreturn]] void fail(std::string_view what, int rc) {
    throw Error(fmt::format("seccomp: cannot install the system-call filter ({}: {}); on a kernel "
                            "without seccomp, run with --no-seccomp",
                            what, std::strerror(-rc)));
}

} // namespace

std::vector<std::string> allowed_names() {
    std::vector<std::string> names;
    for (const auto& r : rules(::getpid()))
        if (names.empty() || names.back() != r.name) names.emplace_back(r.name);
    names.emplace_back("clone3"); // refused with ENOSYS, so glibc falls back to clone
    return names;
}

std::vector<std::string> denied_names(ConfinedThread kind) {
    std::vector<std::string> names(std::begin(kGuestFacingDenied), std::end(kGuestFacingDenied));
    if (kind == ConfinedThread::disk_io || kind == ConfinedThread::net_io)
        names.insert(names.end(), std::begin(kIoThreadAlsoDenied), std::end(kIoThreadAlsoDenied));
    return names;
}

void confine_thread(ConfinedThread kind) {
    Context ctx(seccomp_init(SCMP_ACT_ALLOW));
    if (!ctx) throw Error("seccomp: cannot install a thread's filter (seccomp_init failed)");
    // no_new_privs is set already: install() set it, and threads inherit it.
    // (Setting it again would be a prctl the process filter stops.)
    if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0); rc < 0)
        fail("SCMP_FLTATR_CTL_NNP", rc);
    for (const auto& name : denied_names(kind)) {
        const int nr = seccomp_syscall_resolve_name(name.c_str());
        if (nr == __NR_SCMP_ERROR) continue;
        if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_TRAP, nr, 0); rc < 0) fail(name, rc);
    }
    if (int rc = seccomp_load(ctx.get()); rc < 0) fail("seccomp_load (thread)", rc);
}

void install() {
    resolve_names();
    // glibc's malloc counts the CPUs, by opening /sys/devices/system/cpu/online,
    // the first time the process needs more than 8 arenas, on whichever thread
    // that is: with eight disks, an I/O thread or a vcpu, whose filters stop
    // opening files. Fixing the limit now, at glibc's own default (8 arenas per
    // CPU), leaves nothing to count later.
    ::mallopt(M_ARENA_MAX, 8 * ::get_nprocs());
    struct sigaction sa {};
    sa.sa_sigaction = on_blocked;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGSYS, &sa, nullptr) != 0) throw_errno("sigaction(SIGSYS)");
    // SIGSYS must reach the handler on every thread: a thread that blocked it
    // would be killed by the kernel without a word.
    sigset_t sys;
    sigemptyset(&sys);
    sigaddset(&sys, SIGSYS);
    ::pthread_sigmask(SIG_UNBLOCK, &sys, nullptr);

    Context ctx(seccomp_init(SCMP_ACT_TRAP));
    if (!ctx) throw Error("seccomp: cannot install the system-call filter (seccomp_init failed)");
    // Every thread, not just this one (threads started later inherit it).
    if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_TSYNC, 1); rc < 0)
        fail("SCMP_FLTATR_CTL_TSYNC", rc);
    for (const auto& rule : rules(::getpid())) {
        const int nr = seccomp_syscall_resolve_name(rule.name);
        if (nr == __NR_SCMP_ERROR) continue; // newer than this libseccomp: not needed here
        const int rc = seccomp_rule_add_array(ctx.get(), SCMP_ACT_ALLOW, nr,
                                              static_cast<unsigned>(rule.args.size()),
                                              rule.args.empty() ? nullptr : rule.args.data());
        if (rc < 0) fail(rule.name, rc);
    }
    // glibc 2.34+ starts threads with clone3, whose flags sit in memory a
    // filter cannot read; ENOSYS makes it fall back to clone, checked above.
    if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0); rc < 0)
        fail("clone3", rc);
    if (int rc = seccomp_load(ctx.get()); rc < 0) fail("seccomp_load", rc);
}

} // namespace ember::seccomp
