// The synchronous engine: preadv/pwritev/fdatasync on the I/O thread. Used
// with engine=sync and when io_uring cannot be set up.
#include <unistd.h>

#include <cerrno>

#include "devices/block/io_engine.h"

namespace ember {

namespace {
class SyncEngine final : public IoEngine {
  public:
    explicit SyncEngine(int fd) : fd_(fd) {}
    std::string_view name() const override { return "sync"; }

    void enqueue(const HostIo& io) override {
        int64_t r = 0;
        switch (io.op) {
        case HostIo::Op::read:
        case HostIo::Op::write: {
            const bool rd = io.op == HostIo::Op::read;
            do {
                r = rd ? ::preadv(fd_, io.iov.data(), static_cast<int>(io.iov.size()),
                                  static_cast<off_t>(io.offset))
                       : ::pwritev(fd_, io.iov.data(), static_cast<int>(io.iov.size()),
                                   static_cast<off_t>(io.offset));
            } while (r < 0 && errno == EINTR);
            break;
        }
        case HostIo::Op::flush:
            r = ::fdatasync(fd_);
            break;
        }
        done_.push_back(HostCompletion{io.cookie, r < 0 ? -errno : r});
    }
    void submit() override {}
    void reap(std::vector<HostCompletion>& out) override {
        out.insert(out.end(), done_.begin(), done_.end());
        done_.clear();
    }
    void drain(std::vector<HostCompletion>& out) override { reap(out); }
    bool completions_ready() const noexcept override { return !done_.empty(); }
    int completion_fd() const noexcept override { return -1; }
    size_t in_flight() const noexcept override { return 0; }

  private:
    int fd_;
    std::vector<HostCompletion> done_;
};
} // namespace

std::unique_ptr<IoEngine> make_sync_engine(int fd) {
    return std::make_unique<SyncEngine>(fd);
}

} // namespace ember
