#include "devices/block/uring_restrictions.h"

#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "vmm/errors.h"

namespace ember {

namespace {
// The system call itself: Debian 12's shared liburing (2.3) does not export
// io_uring_enable_rings (its version map lacks it), so neither helper is used.
int ring_register(int ring_fd, unsigned op, const void* arg, unsigned n) {
    return static_cast<int>(::syscall(__NR_io_uring_register, ring_fd, op, arg, n));
}
} // namespace

void restrict_block_ring(int ring_fd) {
    // Every SQE opcode the engine uses (uring_engine.cpp), and nothing else.
    // No IORING_RESTRICTION_REGISTER_OP entry: no registration after enable.
    // No SQE_FLAGS_ALLOWED entry: no SQE may carry flags.
    constexpr std::array<uint8_t, 5> ops{IORING_OP_READ, IORING_OP_READV, IORING_OP_WRITE,
                                         IORING_OP_WRITEV, IORING_OP_FSYNC};
    std::array<io_uring_restriction, ops.size()> res{};
    for (size_t i = 0; i < ops.size(); ++i) {
        res[i].opcode = IORING_RESTRICTION_SQE_OP;
        res[i].sqe_op = ops[i];
    }
    if (ring_register(ring_fd, IORING_REGISTER_RESTRICTIONS, res.data(),
                      static_cast<unsigned>(res.size())) < 0)
        throw SystemError("io_uring_register(IORING_REGISTER_RESTRICTIONS)", errno);
}

void enable_ring(int ring_fd) {
    if (ring_register(ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) < 0)
        throw SystemError("io_uring_register(IORING_REGISTER_ENABLE_RINGS)", errno);
}

} // namespace ember
