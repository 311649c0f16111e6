// What a disk's io_uring may be asked to do. io_uring runs its operations
// without system calls, so seccomp cannot see them: a ring left open to every
// operation would let a thread confined by seccomp (confine_this_thread) still
// open files or sockets through IORING_OP_OPENAT or IORING_OP_SOCKET. The
// kernel's ring restrictions close that (io_uring_register(2),
// IORING_REGISTER_RESTRICTIONS; Linux 5.10).
#pragma once

namespace ember {

// Limits the ring `ring_fd`, created disabled (IORING_SETUP_R_DISABLED) and
// not yet enabled, to what the block engine submits: read, readv, write,
// writev and fsync, without SQE flags; and, once enabled, to no further
// registrations. Throws SystemError when the kernel refuses.
void restrict_block_ring(int ring_fd);

// Enables a ring created disabled: from now on the restrictions hold, and the
// calling thread is its one submitter when it was set up SINGLE_ISSUER.
// Throws SystemError.
void enable_ring(int ring_fd);

} // namespace ember
