// --disk parsing and disk image validation: every mistake is a clear error
// naming the bad part or the path, before the guest starts.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include <fmt/format.h>

#include "devices/block/block_disk.h"
#include "devices/block/disk_spec.h"
#include "tests/support/block_rig.h"
#include "tests/support/threads.h"
#include "vmm/cpu_affinity.h"

using namespace ember;
using namespace ember::testing;

namespace {
std::string error_of(auto&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}
bool contains(const std::string& s, std::string_view part) {
    return s.find(part) != std::string::npos;
}
} // namespace

TEST_CASE("parse_disk_spec: path alone gets the defaults") {
    const auto s = parse_disk_spec("/var/disk.img");
    CHECK(s.path == "/var/disk.img");
    CHECK_FALSE(s.readonly);
    CHECK(s.id.empty());
    CHECK(s.cache == DiskSpec::Cache::writeback);
    CHECK(s.engine == DiskSpec::Engine::uring);
}

TEST_CASE("parse_disk_spec: every option") {
    const auto s = parse_disk_spec("d.img,readonly,id=root-disk,cache=none,engine=sync");
    CHECK(s.path == "d.img");
    CHECK(s.readonly);
    CHECK(s.id == "root-disk");
    CHECK(s.cache == DiskSpec::Cache::none);
    CHECK(s.engine == DiskSpec::Engine::sync);
    CHECK(parse_disk_spec("d.img,cache=writeback,engine=uring").engine == DiskSpec::Engine::uring);
    CHECK(parse_disk_spec("d.img").poll_us == 0);
    CHECK(parse_disk_spec("d.img,cache=none,poll=50").poll_us == 50);
    CHECK(parse_disk_spec("d.img,poll=10000,cache=none").poll_us == 10000);
    // poll=0 is "never spin", allowed with any cache mode.
    CHECK(parse_disk_spec("d.img,poll=0").poll_us == 0);
}

TEST_CASE("parse_disk_spec: poll= needs a number, cache=none and io_uring") {
    CHECK(contains(error_of([] { parse_disk_spec("d.img,cache=none,poll=x"); }), "poll 'x'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,cache=none,poll="); }), "poll ''"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,cache=none,poll=-1"); }), "poll '-1'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,cache=none,poll=50us"); }), "poll '50us'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,cache=none,poll=10001"); }),
                   "from 0 to 10000"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,cache=none,poll=1,poll=2"); }),
                   "given twice"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,poll=50"); }), "needs cache=none"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,cache=writeback,poll=50"); }),
                   "needs cache=none"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,cache=none,engine=sync,poll=50"); }),
                   "needs engine=uring"));
    DiskSpec s;
    s.path = "d.img";
    s.cache = DiskSpec::Cache::none;
    s.poll_us = kMaxPollUs + 1;
    CHECK_THROWS_AS(check_disk_spec(s), DiskSpecError);
    s.poll_us = kMaxPollUs;
    CHECK_NOTHROW(check_disk_spec(s));
}

TEST_CASE("parse_disk_spec: iothread-cpu= names a CPU this process may run on") {
    const cpu_set_t allowed = ember_cpus();
    const uint32_t first = first_allowed_cpu();
    const auto spec = parse_disk_spec("d.img,iothread-cpu=" + std::to_string(first));
    REQUIRE(spec.iothread_cpu.has_value());
    CHECK(*spec.iothread_cpu == first);
    CHECK_FALSE(parse_disk_spec("d.img").iothread_cpu.has_value());

    CHECK(contains(error_of([] { parse_disk_spec("d.img,iothread-cpu=x"); }),
                   "iothread-cpu 'x' is not a CPU number"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,iothread-cpu="); }), "iothread-cpu ''"));
    CHECK(
        contains(error_of([] { parse_disk_spec("d.img,iothread-cpu=-1"); }), "iothread-cpu '-1'"));
    CHECK(
        contains(error_of([] { parse_disk_spec("d.img,iothread-cpu=1x"); }), "iothread-cpu '1x'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,iothread-cpu=0,iothread-cpu=0"); }),
                   "given twice"));
    // Beyond what a mask holds, and a CPU outside this process's mask: the
    // message names the CPUs it may use.
    const std::string beyond = error_of([] { parse_disk_spec("d.img,iothread-cpu=99999"); });
    CHECK(contains(beyond, "iothread-cpu=99999 is not a CPU ember may run on"));
    CHECK(contains(beyond, "(allowed: " + cpu_list(allowed) + ")"));
    unsigned outside = CPU_SETSIZE - 1;
    while (outside > 0 && CPU_ISSET(outside, &allowed))
        --outside;
    REQUIRE_FALSE(CPU_ISSET(outside, &allowed));
    DiskSpec s;
    s.path = "d.img";
    s.iothread_cpu = outside;
    CHECK(contains(error_of([&] { check_disk_spec(s); }),
                   fmt::format("iothread-cpu={} is not a CPU ember may run on", outside)));
    s.iothread_cpu = first;
    CHECK_NOTHROW(check_disk_spec(s));
}

TEST_CASE("cpu_list: the kernel's list format") {
    cpu_set_t set;
    CPU_ZERO(&set);
    CHECK(cpu_list(set) == "none");
    for (int c : {0, 1, 2, 3, 6, 9, 10})
        CPU_SET(c, &set);
    CHECK(cpu_list(set) == "0-3,6,9-10");
    CPU_ZERO(&set);
    CPU_SET(CPU_SETSIZE - 1, &set);
    CHECK(cpu_list(set) == std::to_string(CPU_SETSIZE - 1));
}

TEST_CASE("parse_disk_spec: errors name the bad part") {
    CHECK(contains(error_of([] { parse_disk_spec(""); }), "path is missing"));
    CHECK(contains(error_of([] { parse_disk_spec(",readonly"); }), "path is missing"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,rw"); }), "unknown option 'rw'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,cache=unsafe"); }), "cache 'unsafe'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,engine=aio"); }), "engine 'aio'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,id=123456789012345678901"); }),
                   "1 to 20 bytes"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,id="); }), "1 to 20 bytes"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,readonly,readonly"); }), "given twice"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,"); }), "unknown option ''"));
    CHECK_THROWS_AS(parse_disk_spec("d.img,id"), DiskSpecError);
    CHECK(parse_disk_spec("d.img,id=12345678901234567890").id.size() == 20);
}

TEST_CASE("BlockDisk::open: bad files are clear errors naming the path") {
    SUBCASE("missing") {
        const auto e = error_of([] { BlockDisk::open(parse_disk_spec("/nonexistent/ember.img")); });
        CHECK(contains(e, "/nonexistent/ember.img"));
        CHECK(contains(e, "does not exist"));
    }
    SUBCASE("a directory") {
        CHECK(
            contains(error_of([] { BlockDisk::open(parse_disk_spec("/tmp")); }), "is a directory"));
    }
    SUBCASE("zero size") {
        TempFile f(0);
        const auto e = error_of([&] { BlockDisk::open(parse_disk_spec(f.path())); });
        CHECK(contains(e, f.path()));
        CHECK(contains(e, "empty"));
    }
    SUBCASE("size not a multiple of 512") {
        TempFile f(1000);
        CHECK(contains(error_of([&] { BlockDisk::open(parse_disk_spec(f.path())); }),
                       "not a multiple of 512"));
    }
    SUBCASE("not a file") {
        CHECK(contains(error_of([] { BlockDisk::open(parse_disk_spec("/dev/null")); }),
                       "neither a regular file nor a block device"));
    }
    SUBCASE("id longer than 20 bytes") {
        TempFile f(4096);
        DiskSpec s;
        s.path = f.path();
        s.id = std::string(21, 'x');
        CHECK(contains(error_of([&] { BlockDisk::open(s); }), "longer than 20 bytes"));
    }
    SUBCASE("unreadable (as a non-root user)") {
        TempFile f(4096);
        ::chmod(f.path().c_str(), 0);
        if (::geteuid() != 0) {
            CHECK(contains(error_of([&] { BlockDisk::open(parse_disk_spec(f.path())); }),
                           "cannot be opened"));
        } else {
            // Root bypasses file permissions; the open then succeeds.
            CHECK_NOTHROW(BlockDisk::open(parse_disk_spec(f.path())));
        }
    }
}

TEST_CASE("BlockDisk::open: size, id and flags of a good image") {
    TempFile f(1 << 20, "good-name-longer-than-twenty");
    {
        const auto d = BlockDisk::open(parse_disk_spec(f.path()));
        CHECK(d.sectors() == 2048);
        CHECK(d.size_bytes() == 1 << 20);
        CHECK(d.id().size() == 20);
        CHECK(f.path().find(d.id()) != std::string::npos); // a prefix of the file name
        CHECK_FALSE(d.readonly());
    }
    const auto ro = BlockDisk::open(parse_disk_spec(f.path() + ",readonly,id=abc,cache=none"));
    CHECK(ro.readonly());
    CHECK(ro.direct());
    CHECK(ro.id() == "abc");
    CHECK(ro.offset_align() % 512 == 0);
}

TEST_CASE("BlockDisk::open: an image is locked while open: one writer, or any readers") {
    TempFile f(1 << 20);
    const auto writable = parse_disk_spec(f.path());
    const auto readonly = parse_disk_spec(f.path() + ",readonly");
    {
        const auto w = BlockDisk::open(writable);
        // Another VM (here another open file description) writing or reading it: refused.
        const auto twice = error_of([&] { BlockDisk::open(writable); });
        CHECK(contains(twice, "disk image " + f.path() + ": is in use"));
        CHECK(contains(twice, "two VMs writing one image corrupt it"));
        CHECK(contains(error_of([&] { BlockDisk::open(readonly); }),
                       "another process has it open for writing"));
    }
    {
        // Read-only disks share it; a writer is refused while they have it.
        const auto r1 = BlockDisk::open(readonly);
        const auto r2 = BlockDisk::open(readonly);
        CHECK(r2.readonly());
        CHECK(contains(error_of([&] { BlockDisk::open(writable); }), "is in use"));
    }
    // Closed: the lock is gone with the descriptor.
    CHECK(BlockDisk::open(writable).sectors() == 2048);
}

TEST_CASE("open_disks: in order, at most 8, never one image twice") {
    TempFile a(4096), b(8192);
    std::vector<DiskSpec> specs{parse_disk_spec(a.path()), parse_disk_spec(b.path() + ",readonly")};
    {
        const auto disks = open_disks(specs);
        REQUIRE(disks.size() == 2);
        CHECK(disks[0].sectors() == 8);
        CHECK(disks[1].readonly());
    } // closed, and so unlocked, for the next opens
    // The same file under another name is still the same image.
    const std::string alias = a.path() + ".alias";
    REQUIRE(::symlink(a.path().c_str(), alias.c_str()) == 0);
    specs.push_back(parse_disk_spec(alias));
    CHECK(contains(error_of([&] { open_disks(specs); }), "more than once"));
    ::unlink(alias.c_str());
    std::vector<DiskSpec> nine(9, parse_disk_spec(a.path()));
    CHECK(contains(error_of([&] { open_disks(nine); }), "at most 8"));
}

TEST_CASE("parse_disk_spec: bw= and iops= are rates per second, with one-time bursts") {
    const auto none = parse_disk_spec("d.img");
    CHECK_FALSE(none.rate_limit.enabled());
    const auto s = parse_disk_spec("d.img,bw=10M,iops=500,iops-burst=1000");
    REQUIRE(s.rate_limit.bandwidth.has_value());
    CHECK(*s.rate_limit.bandwidth == TokenBucketSpec{10u << 20, 0, 1000});
    REQUIRE(s.rate_limit.ops.has_value());
    CHECK(*s.rate_limit.ops == TokenBucketSpec{500, 1000, 1000});
    CHECK(parse_disk_spec("d.img,bw=4096,bw-burst=1G").rate_limit.bandwidth ==
          TokenBucketSpec{4096, 1u << 30, 1000});
    CHECK(parse_disk_spec("d.img,bw=1K").rate_limit.bandwidth->size == 1024);
    CHECK(parse_disk_spec("d.img,bw=2T").rate_limit.bandwidth->size == uint64_t{2} << 40);
    CHECK_FALSE(parse_disk_spec("d.img,iops=1").rate_limit.bandwidth.has_value());
}

TEST_CASE("parse_disk_spec: bad rates and bursts are named") {
    CHECK(contains(error_of([] { parse_disk_spec("d.img,bw=0"); }),
                   "bw '0' is not a number of bytes from 1 to"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,bw=10X"); }), "bw '10X'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,bw=10MB"); }), "bw '10MB'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,bw="); }), "bw ''"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,bw=M"); }), "bw 'M'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,bw=-1"); }), "bw '-1'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,bw=2000T"); }), "bw '2000T'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,iops=1K"); }),
                   "iops '1K' is not a number of requests"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,iops=1.5"); }), "iops '1.5'"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,iops=5,iops=6"); }), "given twice"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,bw-burst=1M,bw-burst=1M,bw=1M"); }),
                   "given twice"));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,iops-burst=100"); }),
                   "iops-burst= needs iops="));
    CHECK(contains(error_of([] { parse_disk_spec("d.img,bw-burst=1M,iops=5"); }),
                   "bw-burst= needs bw="));
    // Specs built without the parser (libember, a checkpoint) are checked too.
    DiskSpec s;
    s.path = "d.img";
    s.rate_limit.ops = TokenBucketSpec{0, 0, 1000};
    CHECK(contains(error_of([&] { check_disk_spec(s); }),
                   "disk d.img: the rate limit's ops bucket: its size must be more than 0"));
    s.rate_limit.ops.reset();
    s.rate_limit.bandwidth = TokenBucketSpec{100, 0, 0};
    CHECK(contains(error_of([&] { check_disk_spec(s); }),
                   "the rate limit's bandwidth bucket: its refill time must be more than 0 ms"));
    s.rate_limit.bandwidth = TokenBucketSpec{100, 0, 10};
    CHECK_NOTHROW(check_disk_spec(s));
}
