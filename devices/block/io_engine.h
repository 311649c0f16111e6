// Host I/O for the block I/O thread: io_uring (many requests in flight) or a
// synchronous fallback. One engine per I/O thread, used from that thread only.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace ember {

struct HostIo {
    enum class Op : uint8_t { read, write, flush };
    Op op;
    uint64_t offset;
    std::span<const iovec> iov; // must stay valid until the completion
    uint64_t cookie;
};

struct HostCompletion {
    uint64_t cookie;
    int64_t result; // bytes transferred, or -errno
};

class IoEngine {
  public:
    virtual ~IoEngine() = default;
    virtual std::string_view name() const = 0;
    // Queues one operation; nothing reaches the host before submit() (the
    // sync engine runs it at once). Capacity is the depth given at creation.
    virtual void enqueue(const HostIo& io) = 0;
    virtual void submit() = 0;
    // Appends finished operations; never blocks.
    virtual void reap(std::vector<HostCompletion>& out) = 0;
    // Blocks until every submitted operation finished, appending them.
    virtual void drain(std::vector<HostCompletion>& out) = 0;
    // Readable when completions may be waiting; -1 when none ever wait
    // (every completion is available right after submit()).
    virtual int completion_fd() const noexcept = 0;
    virtual size_t in_flight() const noexcept = 0;
    // True when reap() would return something now; reads only memory shared
    // with the kernel (no system call), so a polling loop may call it often.
    // With a completion_fd() it must not miss a ready completion: the I/O
    // thread drains that fd after its work and asks this for what the drain
    // swallowed.
    virtual bool completions_ready() const noexcept = 0;
    // Called on the I/O thread before its first enqueue(): an engine whose
    // host interface belongs to one thread (io_uring's single issuer) binds
    // to that thread here, not to the one that constructed it.
    virtual void bind_to_current_thread() {}
};

// Makes the engine of one I/O thread for a disk fd and a queue depth. Tests
// and benchmarks substitute engines (e.g. one with random latency); ember
// itself uses io_uring or the sync engine (BlockIoThread).
using IoEngineFactory = std::function<std::unique_ptr<IoEngine>(int fd, unsigned depth)>;

// How the io_uring engine sets up its ring.
enum class UringSetup {
    // Completions are posted only when the I/O thread asks for them
    // (IORING_SETUP_DEFER_TASKRUN, Linux 6.1), instead of interrupting the
    // thread, with an IPI, once per completion while it runs.
    deferred,
    plain,   // no setup flags: the fallback for older kernels
    best,    // deferred where the kernel has it, else plain
};

// Throws SystemError when io_uring is unavailable (old kernel, seccomp,
// io_uring_disabled) or lacks what `setup` asks for; ember's caller falls
// back to the sync engine.
std::unique_ptr<IoEngine> make_uring_engine(int fd, unsigned depth,
                                            UringSetup setup = UringSetup::best);
std::unique_ptr<IoEngine> make_sync_engine(int fd);

} // namespace ember
