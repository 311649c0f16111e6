// RAII ownership of file descriptors, and eventfd as used for ioeventfd/irqfd.
#pragma once

#include <cstdint>
#include <utility>

namespace ember {

class UniqueFd final {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    int get() const noexcept { return fd_; }
    bool valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return valid(); }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept;

private:
    int fd_ = -1;
};

// A non-blocking eventfd. The same object serves KVM (KVM_IOEVENTFD / KVM_IRQFD)
// and the unit tests, which read it to count kicks and interrupts.
class EventFd final {
public:
    EventFd(); // throws SystemError
    int fd() const noexcept { return fd_.get(); }
    // Adds one to the counter; async-signal-safe.
    void signal() const noexcept;
    // Returns the counter and resets it; 0 when nothing was signalled.
    uint64_t drain() const noexcept;

private:
    UniqueFd fd_;
};

} // namespace ember
