#include "vmm/unique_fd.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "vmm/errors.h"

namespace ember {

void UniqueFd::reset(int fd) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

EventFd::EventFd() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!fd_) throw_errno("eventfd");
}

void EventFd::signal() const noexcept {
    uint64_t one = 1;
    // EAGAIN only when the counter would overflow, which cannot lose a wakeup.
    [[maybe_unused]] auto n = ::write(fd_.get(), &one, sizeof one);
}

uint64_t EventFd::drain() const noexcept {
    uint64_t v = 0;
    if (::read(fd_.get(), &v, sizeof v) != sizeof v) return 0;
    return v;
}

} // namespace ember
