// ember-verify end to end on regular files: write-verify, continuous mode, the
// flush log, check-image after damage, and the usage/setup error paths.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>

#include "tools/ember-verify/block_format.h"
#include "tools/ember-verify/cli.h"
#include "tools/ember-verify/errors.h"
#include "tools/ember-verify/write_sequence.h"

using namespace ember::verify;
namespace fs = std::filesystem;

namespace {

class CaptureConsole final : public Console {
public:
    std::vector<std::string> lines;
    std::vector<std::string> errors;
    // Called for every line, for tests that react to output (e.g. raise stop).
    std::function<void(const std::string&)> on_line;

    void line(std::string_view text) override {
        lines.emplace_back(text);
        if (on_line) on_line(lines.back());
    }
    void error(std::string_view text) override { errors.emplace_back(text); }

    std::vector<std::string> starting(std::string_view prefix) const {
        std::vector<std::string> out;
        for (const auto& l : lines)
            if (l.starts_with(prefix)) out.push_back(l);
        return out;
    }
    std::string last() const { return lines.empty() ? "" : lines.back(); }
    std::string all_errors() const {
        std::string s;
        for (const auto& e : errors) s += e + "\n";
        return s;
    }
};

class TempDir final {
public:
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "ember-verify-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path_ = pattern;
    }
    ~TempDir() { fs::remove_all(path_); }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    fs::path path_;
};

int run(CaptureConsole& console, std::vector<std::string> args, const std::atomic<bool>* stop = nullptr) {
    return run_cli(args, console, stop);
}

uint64_t field(const std::string& line, const std::string& key) {
    const auto at = line.find(" " + key + "=");
    REQUIRE_MESSAGE(at != std::string::npos, "no " << key << " in: " << line);
    return std::stoull(line.substr(at + key.size() + 2));
}

void write_block_at(const std::string& path, uint64_t block, const BlockStamp& stamp) {
    std::array<uint8_t, kBlockSize> b{};
    encode_block(stamp, b);
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(block * kBlockSize));
    f.write(reinterpret_cast<const char*>(b.data()), kBlockSize);
}

void flip_byte(const std::string& path, uint64_t offset) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
}

constexpr uint64_t kBlocks = 256;
constexpr uint64_t kHalf = kBlocks / 2;

// Writes a 1 MiB file with seed 99, three passes; returns its path.
std::string written_image(const TempDir& dir, CaptureConsole& console) {
    std::string path = dir.file("disk.img");
    REQUIRE(run(console, {"write-verify", "--device", path, "--size", "1M", "--create", "--seed",
                          "99", "--flush-every", "64", "--log-flushes"}) == 0);
    return path;
}

} // namespace

TEST_CASE("write-verify: passes on a regular file and reports exact counts") {
    TempDir dir;
    CaptureConsole console;
    const std::string path = dir.file("disk.img");
    REQUIRE(run(console, {"write-verify", "--device", path, "--size", "1M", "--create", "--seed", "5",
                          "--passes", "3", "--flush-every", "100"}) == kExitPass);
    CHECK(console.starting("VERIFY START").size() == 1);
    CHECK(console.starting("VERIFY PROGRESS pass=").size() == 3);
    CHECK(console.starting("VERIFY PASS").size() + console.starting("VERIFY FAIL").size() == 1);
    // 256 + 128 + 128 writes; flushes: pass 0 in batches of 100 -> 3, passes 1, 2 -> 2 each.
    CHECK(console.last() == "VERIFY PASS blocks=256 writes=512 reads=256 flushes=7");
    CHECK(fs::file_size(path) == 1u << 20);
}

TEST_CASE("write-verify: queue depth, O_DIRECT and a pre-existing file") {
    TempDir dir;
    const std::string path = dir.file("disk.img");
    {
        std::ofstream f(path, std::ios::binary);
        f.seekp((2 << 20) - 1);
        f.put('\0');
    }
    CaptureConsole console;
    CHECK(run(console, {"write-verify", "--device", path, "--seed", "0x10", "--qd", "8",
                        "--passes", "4"}) == kExitPass);
    // Without --size the whole 2 MiB file is used.
    // Flushes: pass 0 = 512 writes in batches of 256 -> 2, passes 1..3 -> 1 each.
    CHECK(console.last() == fmt::format("VERIFY PASS blocks=512 writes={} reads=512 flushes=5",
                                        512 + 3 * 256));
    CHECK(console.starting("VERIFY START")[0].find(" seed=16 ") != std::string::npos);

    // O_DIRECT needs a file system that supports it; ext4/xfs/btrfs do, tmpfs does not.
    const int probe = ::open(path.c_str(), O_RDWR | O_DIRECT);
    if (probe < 0) {
        MESSAGE("skipping --direct: " << fs::temp_directory_path() << " does not support O_DIRECT");
        return;
    }
    ::close(probe);
    CaptureConsole direct;
    CHECK(run(direct, {"write-verify", "--device", path, "--size", "512K", "--direct", "--qd", "4"}) ==
          kExitPass);
    CHECK(direct.last().starts_with("VERIFY PASS blocks=128 "));
}

TEST_CASE("write-verify: each VERIFY FLUSHED line is a prefix that check-image accepts") {
    TempDir dir;
    CaptureConsole console;
    const std::string path = written_image(dir, console);
    const auto flushed = console.starting("VERIFY FLUSHED");
    // Pass 0: 256/64 = 4 flushes, passes 1, 2: 128/64 = 2 each.
    REQUIRE(flushed.size() == 8);
    uint64_t previous = 0;
    for (const auto& line : flushed) {
        CHECK(line.starts_with("VERIFY FLUSHED seed=99 size=1048576 writes="));
        const uint64_t w = field(line, "writes");
        CHECK(w > previous);
        CHECK(w % 64 == 0);
        previous = w;
        CaptureConsole check;
        CHECK(run(check, {"check-image", "--image", path, "--seed", "99", "--writes",
                          std::to_string(w)}) == kExitPass);
        CHECK(check.last().starts_with(fmt::format("CHECK PASS blocks=256 writes={} ", w)));
    }
    CHECK(previous == kBlocks + 2 * kHalf);
}

TEST_CASE("check-image: exact count, smaller count, and a flushed write that is missing") {
    TempDir dir;
    CaptureConsole console;
    const std::string path = written_image(dir, console);
    const uint64_t total = kBlocks + 2 * kHalf;

    CaptureConsole exact;
    CHECK(run(exact, {"check-image", "--image", path, "--seed", "99", "--writes",
                      std::to_string(total), "--size", "1M"}) == kExitPass);
    CHECK(exact.last() == "CHECK PASS blocks=256 writes=512 current=256 newer=0 unwritten=0");

    // Fewer flushed writes: later generations are allowed on disk.
    CaptureConsole fewer;
    CHECK(run(fewer, {"check-image", "--image", path, "--seed", "99", "--writes", "300"}) == kExitPass);
    CHECK(field(fewer.last(), "newer") > 0);
    CHECK(field(fewer.last(), "current") + field(fewer.last(), "newer") == kBlocks);

    // One write more than happened: its block holds an older generation.
    const WriteSequence seq{99, kBlocks};
    const Write missing = seq.at(total);
    CaptureConsole more;
    CHECK(run(more, {"check-image", "--image", path, "--seed", "99", "--writes",
                     std::to_string(total + 1)}) == kExitFail);
    CHECK(more.last().starts_with(fmt::format("CHECK FAIL 1 errors; first: block={} expected gen>={} got gen=",
                                              missing.block, missing.generation)));
    CHECK(more.last().find("is missing") != std::string::npos);
}

TEST_CASE("check-image: a corrupted, stale or misdirected block is named") {
    TempDir dir;
    CaptureConsole console;
    const std::string path = written_image(dir, console);
    const uint64_t total = kBlocks + 2 * kHalf;
    const WriteSequence seq{99, kBlocks};
    const auto last = seq.last_writes(total);
    auto check = [&](CaptureConsole& c) {
        return run(c, {"check-image", "--image", path, "--seed", "99", "--writes", std::to_string(total)});
    };

    SUBCASE("one flipped byte in the payload") {
        flip_byte(path, 77 * kBlockSize + 2000);
        CaptureConsole c;
        CHECK(check(c) == kExitFail);
        CHECK(c.last().starts_with("CHECK FAIL 1 errors; first: block=77 expected gen>="));
        CHECK(c.last().find("bad checksum") != std::string::npos);
        CHECK(c.last().find(fmt::format("[offset {}]", 77 * kBlockSize)) != std::string::npos);
        CHECK(c.starting("CHECK ERROR block=77 ").size() == 1);
    }
    SUBCASE("a stale generation: the block's pass-0 version put back") {
        // A block last rewritten in pass 2 (generation 3).
        uint64_t block = 0;
        while (seq.generation_of(last[block]) != 3) ++block;
        const auto first_pass = seq.pass_order(0);
        const uint64_t index0 =
            static_cast<uint64_t>(std::find(first_pass.begin(), first_pass.end(), block) - first_pass.begin());
        write_block_at(path, block,
                       BlockStamp{.seed = 99, .block = block, .generation = 1, .write_index = index0,
                                  .region_blocks = kBlocks});
        CaptureConsole c;
        CHECK(check(c) == kExitFail);
        CHECK(c.last() == fmt::format("CHECK FAIL 1 errors; first: block={} expected gen>=3 got gen=1 "
                                      "(write {} was flushed but is missing) [offset {}]",
                                      block, last[block], block * kBlockSize));
    }
    SUBCASE("a block written to the wrong sector") {
        write_block_at(path, 10,
                       BlockStamp{.seed = 99, .block = 11, .generation = seq.generation_of(last[11]),
                                  .write_index = last[11], .region_blocks = kBlocks});
        CaptureConsole c;
        CHECK(check(c) == kExitFail);
        CHECK(c.last().starts_with("CHECK FAIL 1 errors; first: block=10 "));
        CHECK(c.last().find("block=11") != std::string::npos);
        CHECK(c.last().find("misdirected") != std::string::npos);
    }
    SUBCASE("a zeroed block (a flushed write that never reached the disk)") {
        {
            std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(200 * kBlockSize);
            const std::vector<char> zeros(kBlockSize, 0);
            f.write(zeros.data(), kBlockSize);
        }
        CaptureConsole c;
        CHECK(check(c) == kExitFail);
        CHECK(c.last().starts_with("CHECK FAIL 1 errors; first: block=200 "));
        CHECK(c.last().find("zeros (never written)") != std::string::npos);
    }
    SUBCASE("the wrong seed fails every block") {
        CaptureConsole c;
        CHECK(run(c, {"check-image", "--image", path, "--seed", "98", "--writes", "1", "--size", "1M"}) ==
              kExitFail);
        CHECK(c.last().find("another run") != std::string::npos);
        CHECK(c.last().starts_with("CHECK FAIL "));
    }
}

TEST_CASE("check-image: with no flushed writes anything but misdirected data passes") {
    TempDir dir;
    const std::string path = dir.file("blank.img");
    { std::ofstream(path, std::ios::binary) << std::string(64 * kBlockSize, '\0'); }
    CaptureConsole c;
    CHECK(run(c, {"check-image", "--image", path, "--seed", "1", "--writes", "0"}) == kExitPass);
    CHECK(c.last() == "CHECK PASS blocks=64 writes=0 current=0 newer=0 unwritten=64");
    CaptureConsole d;
    CHECK(run(d, {"check-image", "--image", path, "--seed", "1", "--writes", "1"}) == kExitFail);
    CHECK(d.last().find("zeros (never written)") != std::string::npos);
}

TEST_CASE("write-verify --continuous: cycles, progress lines, and a stop request") {
    TempDir dir;
    const std::string path = dir.file("disk.img");

    CaptureConsole cycles;
    CHECK(run(cycles, {"write-verify", "--device", path, "--size", "256K", "--create", "--seed", "3",
                       "--cycles", "3", "--log-flushes", "--qd", "2"}) == kExitPass);
    const auto progress = cycles.starting("VERIFY PROGRESS");
    REQUIRE(progress.size() == 3);
    CHECK(progress[0].starts_with("VERIFY PROGRESS cycle=1 gen=1 writes=64 reads=64 "));
    CHECK(progress[2].starts_with("VERIFY PROGRESS cycle=3 gen=3 writes=128 reads=192 "));
    CHECK(cycles.last() == "VERIFY PASS blocks=64 writes=128 reads=192 flushes=3");
    CaptureConsole check;
    CHECK(run(check, {"check-image", "--image", path, "--seed", "3", "--writes", "128"}) == kExitPass);

    // A stop request (SIGINT/SIGTERM in the real program) raised right after the
    // first flush: the run finishes that batch, verifies and reports PASS.
    std::atomic<bool> stop{false};
    CaptureConsole stopped;
    stopped.on_line = [&](const std::string& l) {
        if (l.starts_with("VERIFY FLUSHED")) stop = true;
    };
    CHECK(run(stopped, {"write-verify", "--device", path, "--size", "256K", "--seed", "4",
                        "--continuous", "--flush-every", "16", "--log-flushes"},
              &stop) == kExitPass);
    CHECK(stopped.starting("VERIFY FLUSHED").size() == 1);
    CHECK(stopped.last() == "VERIFY PASS blocks=64 writes=16 reads=64 flushes=1");

    // The same stop request ends a passes-mode run early, verified just as well.
    stop = false;
    CaptureConsole passes;
    passes.on_line = stopped.on_line;
    CHECK(run(passes, {"write-verify", "--device", path, "--size", "256K", "--seed", "5", "--passes",
                       "3", "--flush-every", "8", "--log-flushes"},
              &stop) == kExitPass);
    CHECK(passes.starting("VERIFY PROGRESS pass=").size() == 1);
    CHECK(passes.last() == "VERIFY PASS blocks=64 writes=8 reads=64 flushes=1");

    CaptureConsole timed;
    CHECK(run(timed, {"write-verify", "--device", path, "--size", "256K", "--duration", "0.05"}) ==
          kExitPass);
    CHECK(timed.starting("VERIFY PROGRESS cycle=1 ").size() == 1);
    CHECK(timed.last().starts_with("VERIFY PASS blocks=64 "));
}

TEST_CASE("write-verify: the read-back of a cycle names a block damaged behind its back") {
    TempDir dir;
    const std::string path = dir.file("disk.img");
    const WriteSequence seq{21, 64};
    const auto rewritten = seq.pass_order(1);
    // A block that cycle 2 does not rewrite, so it must still hold generation 1.
    uint64_t victim = 0;
    while (std::find(rewritten.begin(), rewritten.end(), victim) != rewritten.end()) ++victim;
    CaptureConsole console;
    console.on_line = [&](const std::string& l) {
        if (l.starts_with("VERIFY PROGRESS cycle=1 ")) flip_byte(path, victim * kBlockSize + 3000);
    };
    CHECK(run(console, {"write-verify", "--device", path, "--size", "256K", "--create", "--seed", "21",
                        "--cycles", "2"}) == kExitFail);
    CHECK(console.starting("VERIFY PROGRESS cycle=1 ")[0].find(" errors=0") != std::string::npos);
    CHECK(console.starting("VERIFY PROGRESS cycle=2 ")[0].find(" errors=1") != std::string::npos);
    CHECK(console.last() == fmt::format("VERIFY FAIL 1 errors; first: block={} expected gen=1 got bad "
                                        "checksum (header says gen=1) [offset {}]",
                                        victim, victim * kBlockSize));
}

TEST_CASE("write-verify: write errors are reported with errno and offset, and the run fails") {
    TempDir dir;
    const std::string path = dir.file("disk.img");
    CaptureConsole setup;
    REQUIRE(run(setup, {"write-verify", "--device", path, "--size", "256K", "--create", "--seed", "1",
                        "--passes", "1"}) == kExitPass);
    // RLIMIT_FSIZE makes every write at or past 128 KiB fail with EFBIG, a real
    // I/O error from the kernel without needing a faulty device.
    struct rlimit old {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = old;
    limit.rlim_cur = rlim_t{128} * 1024;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
    CaptureConsole console;
    const int rc = run(console, {"write-verify", "--device", path, "--seed", "2", "--passes", "1"});
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);

    CHECK(rc == kExitFail);
    const std::string last = console.last();
    CHECK(last.starts_with("VERIFY FAIL "));
    // 32 failed writes, then the same 32 blocks read back with seed 1 data.
    CHECK(last.starts_with("VERIFY FAIL 64 errors; first: block="));
    CHECK(last.find("got write error: File too large (errno 27) [offset ") != std::string::npos);
    CHECK(console.starting("VERIFY ERROR").size() == ErrorLog::kPrintLimit + 1);
}

TEST_CASE("usage errors exit 2 with a message and print no result line") {
    TempDir dir;
    const std::string path = dir.file("disk.img");
    { std::ofstream(path, std::ios::binary) << std::string(16 * kBlockSize, '\0'); }
    struct Case {
        std::vector<std::string> args;
        std::string message;
    };
    const std::vector<Case> cases{
        {{}, "no command given"},
        {{"frobnicate"}, "unknown command 'frobnicate'"},
        {{"write-verify"}, "--device is required"},
        {{"write-verify", "--device", path, "--bogus"}, "unknown option '--bogus'"},
        {{"write-verify", "--device", path, "--size"}, "--size needs a value"},
        {{"write-verify", "--device", path, "--size", "1000"}, "not a multiple of 4096"},
        {{"write-verify", "--device", path, "--size", "0"}, "must be at least 4096"},
        {{"write-verify", "--device", path, "--size", "12Q"}, "is not a size"},
        {{"write-verify", "--device", path, "--qd", "0"}, "out of range"},
        {{"write-verify", "--device", path, "--qd", "300"}, "out of range"},
        {{"write-verify", "--device", path, "--seed", "12x"}, "'12x' is not a number"},
        {{"write-verify", "--device", path, "--passes", "2", "--continuous"}, "cannot be combined"},
        {{"write-verify", "--device", path, "--duration", "-1"}, "positive number of seconds"},
        {{"write-verify", "--device", path, "--direct=1"}, "--direct takes no value"},
        {{"write-verify", "--device", path, "--qd", "2", "--qd", "3"}, "--qd given twice"},
        {{"write-verify", "--device", path, "stray"}, "unexpected argument 'stray'"},
        {{"write-verify", "--device", dir.file("new.img"), "--create"}, "--create needs --size"},
        {{"check-image", "--image", path, "--seed", "1"}, "--writes is required"},
        {{"check-image", "--image", path, "--writes", "1"}, "--seed is required"},
        // Setup errors: nothing could be verified either.
        {{"write-verify", "--device", dir.file("missing")}, "no such device or file"},
        {{"write-verify", "--device", path, "--size", "128K"}, "is larger than the file (65536 bytes)"},
        {{"write-verify", "--device", dir.file("")}, "not a block device or regular file"},
        {{"check-image", "--image", path, "--seed", "1", "--writes", "1", "--size", "1M"},
         "is larger than the file"},
    };
    for (const auto& c : cases) {
        CaptureConsole console;
        std::string joined;
        for (const auto& a : c.args) joined += a + " ";
        INFO("args: " << joined);
        CHECK(run(console, c.args) == kExitUsage);
        CHECK(console.all_errors().find(c.message) != std::string::npos);
        CHECK(console.all_errors().starts_with("ember-verify: error: "));
        CHECK(console.starting("VERIFY PASS").empty());
        CHECK(console.starting("VERIFY FAIL").empty());
    }
    // The file was left alone by all of the above.
    std::ifstream in(path, std::ios::binary);
    const std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(contents == std::string(16 * kBlockSize, '\0'));
}

TEST_CASE("help prints the usage and exits 0") {
    CaptureConsole console;
    CHECK(run(console, {"help"}) == kExitPass);
    REQUIRE(console.lines.size() == 1);
    CHECK(console.lines[0].starts_with("usage: ember-verify write-verify --device PATH"));
    CHECK(console.lines[0].find("check-image --image PATH --seed S --writes W") != std::string::npos);
}

TEST_CASE("parse_size: bytes, binary suffixes, hex; rejects what is not a whole number of blocks") {
    CHECK(parse_size("4096") == 4096);
    CHECK(parse_size("64K") == 65536);
    CHECK(parse_size("16M") == 16u << 20);
    CHECK(parse_size("2GiB") == uint64_t{2} << 30);
    CHECK(parse_size("1T") == uint64_t{1} << 40);
    CHECK(parse_size("0x2000") == 8192);
    CHECK_THROWS_AS(parse_size("1K"), UsageError); // 1024 is not a multiple of 4096
    CHECK_THROWS_AS(parse_size("M"), UsageError);
    CHECK_THROWS_AS(parse_size("-4096"), UsageError);
    CHECK_THROWS_AS(parse_size("99999999999999999999"), UsageError);
    CHECK_THROWS_AS(parse_size("20000000T"), UsageError);
}
