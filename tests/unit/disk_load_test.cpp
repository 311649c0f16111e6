// bench-blk --disk-load: reading the block layer's counters and what they
// say about a run (tools/disk_load.h).
#include <doctest/doctest.h>

#include "tools/disk_load.h"

using namespace ember::bench;

TEST_CASE("a stat line of Linux 6.x (17 fields) gives the counters bench-blk uses") {
    // Recorded from /sys/block/vda/stat on the development VM.
    const auto c = parse_disk_stat("57831085    84588 503246906 30098071 58979150   151746 "
                                   "1701087824 20450464        0  2482100 50694647   135841       "
                                   "51 1068888872   129999   204211    16112\n");
    REQUIRE(c);
    CHECK(c->reads == 57831085);
    CHECK(c->read_ms == 30098071);
    CHECK(c->writes == 58979150);
    CHECK(c->write_ms == 20450464);
    CHECK(c->busy_ms == 2482100);
    CHECK(c->queue_ms == 50694647);
}

TEST_CASE("the 11 fields of older kernels are enough; fewer or non-numbers are refused") {
    CHECK(parse_disk_stat("1 2 3 4 5 6 7 8 9 10 11"));
    CHECK_FALSE(parse_disk_stat("1 2 3 4 5 6 7 8 9 10"));
    CHECK_FALSE(parse_disk_stat(""));
    CHECK_FALSE(parse_disk_stat("1 2 3 4 5 six 7 8 9 10 11"));
    CHECK_FALSE(parse_disk_stat("1 2 3 4 5 6 7 8 9 10 -11"));
}

TEST_CASE("the load over a run: requests held, time busy, time per request") {
    const DiskCounters before{1000, 500, 2000, 100, 10'000, 40'000};
    // 4 s: 100k reads taking 40'000 ms in sum, 20k writes taking 8'000 ms,
    // busy 3'000 of the 4'000 ms, 48'000 request-ms held.
    const DiskCounters after{101'000, 40'500, 22'000, 8'100, 13'000, 88'000};
    const auto l = disk_load(before, after, 4.0);
    CHECK(l.in_flight == doctest::Approx(12.0));
    CHECK(l.busy == doctest::Approx(0.75));
    CHECK(l.ms_per_request == doctest::Approx(48'000.0 / 120'000.0));
}

TEST_CASE("no requests or no time gives zeros, and counters that went backwards count as none") {
    const DiskCounters c{5, 5, 5, 5, 5, 5};
    const auto idle = disk_load(c, c, 2.0);
    CHECK(idle.in_flight == 0);
    CHECK(idle.busy == 0);
    CHECK(idle.ms_per_request == 0);
    const auto none = disk_load(c, c, 0);
    CHECK(none.in_flight == 0);
    // The device went away and came back between the samples.
    const auto reset = disk_load(DiskCounters{100, 100, 100, 100, 100, 100}, c, 1.0);
    CHECK(reset.in_flight == 0);
    CHECK(reset.ms_per_request == 0);
}

TEST_CASE("a file on no block device has no disk statistics") {
    // procfs has an anonymous device (major 0), like tmpfs, overlayfs and 9p.
    CHECK_FALSE(DiskStatFile::for_file("/proc/self/status"));
    CHECK_FALSE(DiskStatFile::for_file("/nonexistent/ember-disk-load"));
}
