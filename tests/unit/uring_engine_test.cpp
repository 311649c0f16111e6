// The io_uring engine on its own, in both ring setups: built on one thread,
// driven on another (as BlockIoThread does), completions found through the
// eventfd the I/O thread's io_context waits on.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "devices/block/io_engine.h"
#include "devices/block/uring_restrictions.h"
#include "tests/support/block_rig.h"
#include "vmm/errors.h"
#include "vmm/unique_fd.h"

using namespace ember;
using namespace ember::testing;

namespace {
constexpr size_t kBlock = 4096;
constexpr unsigned kOps = 32;

// Reaps until `n` operations completed, sleeping on the completion fd in
// between exactly like the I/O thread. A completion the eventfd does not
// announce ends the wait after 5 s (the caller's count check fails) instead
// of hanging the test. Runs on the engine's thread: no doctest assertions.
std::vector<HostCompletion> wait_for(IoEngine& e, size_t n) {
    std::vector<HostCompletion> done;
    while (done.size() < n) {
        e.reap(done);
        if (done.size() >= n) break;
        pollfd p{e.completion_fd(), POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1) break;
        uint64_t v = 0;
        [[maybe_unused]] auto r = ::read(e.completion_fd(), &v, sizeof v);
    }
    return done;
}

// The thread that drove the engine waits out what is still in flight (only
// after a failed wait): the buffers must outlive the host I/O.
void drain_on_this_thread(IoEngine& e) {
    std::vector<HostCompletion> ignored;
    e.drain(ignored);
}

void check_each_once(const std::vector<HostCompletion>& done, uint64_t first_cookie) {
    std::set<uint64_t> seen;
    for (const auto& c : done) {
        CHECK(c.result == static_cast<int64_t>(kBlock));
        CHECK(c.cookie >= first_cookie);
        CHECK(c.cookie < first_cookie + kOps);
        CHECK(seen.insert(c.cookie).second);
    }
    CHECK(seen.size() == kOps);
}

void round_trip(UringSetup setup, bool direct) {
    TempFile f(kOps * kBlock);
    UniqueFd fd(::open(f.path().c_str(), O_RDWR | O_CLOEXEC | (direct ? O_DIRECT : 0)));
    REQUIRE(fd.get() >= 0);
    auto engine = make_uring_engine(fd.get(), 64, setup);
    REQUIRE(engine->completion_fd() >= 0);

    // O_DIRECT wants aligned buffers; the same for both keeps it simple.
    auto* out = static_cast<uint8_t*>(std::aligned_alloc(kBlock, kOps * kBlock));
    auto* in = static_cast<uint8_t*>(std::aligned_alloc(kBlock, kOps * kBlock));
    for (size_t i = 0; i < kOps * kBlock; ++i)
        out[i] = static_cast<uint8_t>(i * 7 + i / kBlock);
    std::memset(in, 0, kOps * kBlock);

    std::vector<HostCompletion> writes, reads;
    std::thread io([&] {
        engine->bind_to_current_thread();
        std::vector<iovec> iov(kOps);
        for (unsigned i = 0; i < kOps; ++i) {
            iov[i] = {out + i * kBlock, kBlock};
            engine->enqueue(HostIo{HostIo::Op::write, i * kBlock, {&iov[i], 1}, i});
        }
        engine->submit();
        writes = wait_for(*engine, kOps);
        for (unsigned i = 0; i < kOps; ++i) {
            iov[i] = {in + i * kBlock, kBlock};
            engine->enqueue(HostIo{HostIo::Op::read, i * kBlock, {&iov[i], 1}, 100 + i});
        }
        engine->enqueue(HostIo{HostIo::Op::flush, 0, {}, 999});
        engine->submit();
        reads = wait_for(*engine, kOps + 1);
        drain_on_this_thread(*engine);
    });
    io.join();

    REQUIRE(writes.size() == kOps);
    check_each_once(writes, 0);
    REQUIRE(reads.size() == kOps + 1);
    std::erase_if(reads, [](const HostCompletion& c) {
        if (c.cookie != 999) return false;
        CHECK(c.result == 0); // the flush
        return true;
    });
    check_each_once(reads, 100);
    CHECK(std::memcmp(in, out, kOps * kBlock) == 0);
    CHECK(f.contents(5 * kBlock, kBlock) ==
          std::vector<uint8_t>(out + 5 * kBlock, out + 6 * kBlock));
    std::free(out);
    std::free(in);
    engine.reset(); // nothing in flight: the destructor has nothing to drain
}
} // namespace

TEST_CASE("io_uring engine: built on one thread, driven on another, both ring setups") {
    for (const auto setup : {UringSetup::deferred, UringSetup::plain}) {
        CAPTURE(setup == UringSetup::deferred ? "deferred" : "plain");
        SUBCASE("page cache") { round_trip(setup, false); }
        SUBCASE("O_DIRECT") { round_trip(setup, true); }
    }
}

TEST_CASE("io_uring engine: deferred completions still wake a thread that sleeps on the eventfd") {
    // Completions the kernel finishes later (a worker for buffered writes, a
    // disk interrupt for O_DIRECT) are queued for the bound thread; the
    // eventfd must announce them although nobody enters the ring.
    TempFile f(1 << 20);
    UniqueFd fd(::open(f.path().c_str(), O_RDWR | O_CLOEXEC));
    REQUIRE(fd.get() >= 0);
    auto engine = make_uring_engine(fd.get(), 64, UringSetup::deferred);
    std::vector<uint8_t> buf(kBlock, 0x5a);
    iovec v{buf.data(), kBlock};
    size_t total = 0;
    std::thread io([&] {
        engine->bind_to_current_thread();
        // Many rounds of single writes: each waits on the fd alone.
        for (uint64_t i = 0; i < 200; ++i) {
            engine->enqueue(HostIo{HostIo::Op::write, (i % 256) * kBlock, {&v, 1}, i});
            engine->submit();
            const size_t got = wait_for(*engine, 1).size();
            total += got;
            if (got == 0) break; // not announced: stop here
        }
        drain_on_this_thread(*engine);
    });
    io.join();
    CHECK(total == 200);
}

namespace {
// Submits one SQE that `prep` fills and returns its completion's result.
template <typename Prep> int submit_one(io_uring& ring, Prep prep) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    REQUIRE(sqe != nullptr);
    prep(sqe);
    REQUIRE(io_uring_submit(&ring) == 1);
    io_uring_cqe* cqe = nullptr;
    REQUIRE(io_uring_wait_cqe(&ring, &cqe) == 0);
    const int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    return res;
}
} // namespace

TEST_CASE("io_uring restrictions: a disk's ring reads, writes and syncs, and does nothing else") {
    TempFile f(kBlock);
    UniqueFd fd(::open(f.path().c_str(), O_RDWR | O_CLOEXEC));
    REQUIRE(fd);
    io_uring ring{};
    REQUIRE(io_uring_queue_init(8, &ring, IORING_SETUP_R_DISABLED) == 0);
    restrict_block_ring(ring.ring_fd);
    enable_ring(ring.ring_fd);
    std::vector<char> buf(kBlock, 'e');
    CHECK(submit_one(ring, [&](io_uring_sqe* s) {
              io_uring_prep_write(s, fd.get(), buf.data(), kBlock, 0);
          }) == static_cast<int>(kBlock));
    CHECK(submit_one(ring, [&](io_uring_sqe* s) {
              io_uring_prep_fsync(s, fd.get(), IORING_FSYNC_DATASYNC);
          }) == 0);
    std::vector<char> back(kBlock, 0);
    CHECK(submit_one(ring, [&](io_uring_sqe* s) {
              io_uring_prep_read(s, fd.get(), back.data(), kBlock, 0);
          }) == static_cast<int>(kBlock));
    CHECK(back == buf);
    // What a thread under seccomp could otherwise do through the ring.
    CHECK(submit_one(ring, [&](io_uring_sqe* s) {
              io_uring_prep_openat(s, AT_FDCWD, f.path().c_str(), O_RDONLY, 0);
          }) == -EACCES);
    CHECK(submit_one(ring, [&](io_uring_sqe* s) {
              io_uring_prep_unlinkat(s, AT_FDCWD, f.path().c_str(), 0);
          }) == -EACCES);
    CHECK(::access(f.path().c_str(), F_OK) == 0);
    // SQE flags (here: run it on a kernel worker) are not allowed either.
    CHECK(submit_one(ring, [&](io_uring_sqe* s) {
              io_uring_prep_read(s, fd.get(), back.data(), kBlock, 0);
              io_uring_sqe_set_flags(s, IOSQE_ASYNC);
          }) == -EACCES);
    // Nor registering anything once enabled.
    UniqueFd efd(::eventfd(0, EFD_CLOEXEC));
    CHECK(io_uring_register_eventfd(&ring, efd.get()) == -EACCES);
    io_uring_queue_exit(&ring);
}

TEST_CASE("io_uring restrictions: refused on a ring already enabled") {
    io_uring ring{};
    REQUIRE(io_uring_queue_init(8, &ring, 0) == 0);
    CHECK_THROWS_WITH_AS(restrict_block_ring(ring.ring_fd),
                         doctest::Contains("IORING_REGISTER_RESTRICTIONS"), SystemError);
    io_uring_queue_exit(&ring);
}
