#include "tools/ember-verify/cli.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <optional>
#include <random>

#include <fmt/format.h>

#include "tools/ember-verify/block_format.h"
#include "tools/ember-verify/check_image.h"
#include "tools/ember-verify/errors.h"
#include "tools/ember-verify/write_verify.h"

namespace ember::verify {
namespace {

constexpr std::string_view kUsage = R"(usage: ember-verify write-verify --device PATH [--size SIZE] [options]
       ember-verify check-image --image PATH --seed S --writes W [--size SIZE]
       ember-verify help

write-verify: writes pseudo-random self-checking 4 KiB blocks over the first SIZE
bytes of PATH (destroying its contents), flushes with fdatasync, reads everything
back and checks each block against the generation it must hold.
  --device PATH       block device (e.g. /dev/vda) or regular file
  --size SIZE         bytes from offset 0, a multiple of 4096; suffixes K M G T
                      (powers of 1024); default: the whole device or file
  --create            create PATH as a regular file, or extend it, to SIZE
  --seed N            run id, decimal or 0x-hex (default: random, printed in START)
  --passes N          write passes before the read-back (default 3); pass 1
                      writes every block, each later pass rewrites a
                      pseudo-random half of them with the next generation
  --qd N              requests in flight, 1..256 (default 1)
  --direct            O_DIRECT (4 KiB-aligned buffers); without it the page
                      cache is dropped before reading back
  --flush-every N     fdatasync after every N writes (default 256) and at the
                      end of every pass
  --log-flushes       after each successful fdatasync print
                      VERIFY FLUSHED seed=S size=BYTES writes=W
  --continuous        repeat cycles (one pass, flush, read-verify of the whole
                      region) until SIGINT/SIGTERM
  --duration SECONDS  continuous, ending after SECONDS (steady clock)
  --cycles N          continuous, ending after N cycles
SIGINT/SIGTERM stop the writes at the next flush; what was written is then
verified and reported as usual (a second signal kills the program).

check-image: checks an image file or device after a crash: every block must hold
at least the generation given by the first W writes of run S (the writes=W of the
last VERIFY FLUSHED line), with a valid checksum.
  --image PATH        disk image or block device (opened read-only)
  --seed S            the run's seed
  --writes W          acknowledged and flushed writes
  --size SIZE         region size (default: from the run's block headers)

exit status: 0 PASS, 1 FAIL, 2 bad usage or unusable device (nothing verified))";

std::optional<uint64_t> to_u64(std::string_view text) {
    int base = 10;
    if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
        base = 16;
        text.remove_prefix(2);
    }
    uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) return std::nullopt;
    return value;
}

uint64_t parse_number(std::string_view option, std::string_view text, uint64_t min, uint64_t max) {
    const auto value = to_u64(text);
    if (!value)
        throw UsageError(fmt::format("{}: '{}' is not a number", option, text));
    if (*value < min || *value > max)
        throw UsageError(fmt::format("{}: {} is out of range [{}, {}]", option, *value, min, max));
    return *value;
}

double parse_seconds(std::string_view option, std::string_view text) {
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || text.empty() || !(value > 0) ||
        value > 1e9)
        throw UsageError(fmt::format("{}: '{}' is not a positive number of seconds", option, text));
    return value;
}

// Parsed "--name value" / "--name=value" / "--flag" options of one command.
class Options final {
public:
    Options(std::span<const std::string> args, std::initializer_list<std::string_view> valued,
            std::initializer_list<std::string_view> flags) {
        for (std::size_t i = 0; i < args.size(); ++i) {
            std::string_view arg = args[i];
            if (!arg.starts_with("--")) throw UsageError(fmt::format("unexpected argument '{}'", arg));
            std::string_view name = arg;
            std::optional<std::string_view> value;
            if (const auto eq = arg.find('='); eq != std::string_view::npos) {
                name = arg.substr(0, eq);
                value = arg.substr(eq + 1);
            }
            const bool is_valued = std::find(valued.begin(), valued.end(), name) != valued.end();
            const bool is_flag = std::find(flags.begin(), flags.end(), name) != flags.end();
            if (!is_valued && !is_flag) throw UsageError(fmt::format("unknown option '{}'", name));
            if (is_flag && value) throw UsageError(fmt::format("{} takes no value", name));
            if (is_valued && !value) {
                if (i + 1 >= args.size()) throw UsageError(fmt::format("{} needs a value", name));
                value = args[++i];
            }
            for (const auto& [seen, _] : given_)
                if (seen == name) throw UsageError(fmt::format("{} given twice", name));
            given_.emplace_back(std::string{name}, std::string{value.value_or("")});
        }
    }

    bool has(std::string_view name) const { return find(name) != nullptr; }
    std::optional<std::string_view> get(std::string_view name) const {
        const auto* v = find(name);
        return v ? std::optional<std::string_view>{*v} : std::nullopt;
    }
    std::string_view require(std::string_view name) const {
        const auto* v = find(name);
        if (v == nullptr) throw UsageError(fmt::format("{} is required", name));
        return *v;
    }

private:
    const std::string* find(std::string_view name) const {
        for (const auto& [n, v] : given_)
            if (n == name) return &v;
        return nullptr;
    }
    std::vector<std::pair<std::string, std::string>> given_;
};

uint64_t parse_size_option(const Options& options) {
    const auto text = options.get("--size");
    if (!text) return 0;
    try {
        return parse_size(*text);
    } catch (const UsageError& e) {
        throw UsageError(fmt::format("--size: {}", e.what()));
    }
}

uint64_t random_seed() {
    std::random_device device;
    return (uint64_t{device()} << 32) | device();
}

int write_verify_command(std::span<const std::string> args, Console& console,
                         const std::atomic<bool>* stop) {
    const Options options{args,
                          {"--device", "--size", "--seed", "--passes", "--qd", "--flush-every",
                           "--duration", "--cycles"},
                          {"--create", "--direct", "--log-flushes", "--continuous"}};
    WriteVerifyOptions o;
    o.device = std::string{options.require("--device")};
    if (o.device.empty()) throw UsageError("--device: empty path");
    o.size = parse_size_option(options);
    if (options.has("--size") && o.size == 0) throw UsageError("--size: must be at least 4096");
    o.create = options.has("--create");
    if (o.create && o.size == 0) throw UsageError("--create needs --size");
    o.direct = options.has("--direct");
    o.seed = options.has("--seed")
                 ? parse_number("--seed", options.require("--seed"), 0,
                                std::numeric_limits<uint64_t>::max())
                 : random_seed();
    o.queue_depth = static_cast<unsigned>(
        options.has("--qd") ? parse_number("--qd", options.require("--qd"), 1, 256) : 1);
    if (const auto v = options.get("--flush-every"))
        o.flush_every = parse_number("--flush-every", *v, 1, std::numeric_limits<uint32_t>::max());
    o.log_flushes = options.has("--log-flushes");
    o.continuous =
        options.has("--continuous") || options.has("--duration") || options.has("--cycles");
    if (const auto v = options.get("--duration")) o.duration_seconds = parse_seconds("--duration", *v);
    if (const auto v = options.get("--cycles"))
        o.cycles = parse_number("--cycles", *v, 1, std::numeric_limits<uint64_t>::max());
    if (const auto v = options.get("--passes")) {
        if (o.continuous)
            throw UsageError("--passes cannot be combined with --continuous, --duration or --cycles");
        o.passes = parse_number("--passes", *v, 1, 1'000'000);
    }
    o.stop = stop;
    return run_write_verify(o, console);
}

int check_image_command(std::span<const std::string> args, Console& console) {
    const Options options{args, {"--image", "--seed", "--writes", "--size"}, {}};
    CheckImageOptions o;
    o.image = std::string{options.require("--image")};
    if (o.image.empty()) throw UsageError("--image: empty path");
    o.seed = parse_number("--seed", options.require("--seed"), 0, std::numeric_limits<uint64_t>::max());
    o.writes =
        parse_number("--writes", options.require("--writes"), 0, std::numeric_limits<uint64_t>::max());
    o.size = parse_size_option(options);
    if (options.has("--size") && o.size == 0) throw UsageError("--size: must be at least 4096");
    return run_check_image(o, console);
}

} // namespace

std::string_view usage_text() { return kUsage; }

uint64_t parse_size(std::string_view text) {
    std::string_view digits = text;
    uint64_t multiplier = 1;
    struct Suffix {
        std::string_view name;
        unsigned shift;
    };
    for (const Suffix s : {Suffix{"KiB", 10}, Suffix{"MiB", 20}, Suffix{"GiB", 30}, Suffix{"TiB", 40},
                           Suffix{"K", 10}, Suffix{"M", 20}, Suffix{"G", 30}, Suffix{"T", 40}}) {
        if (digits.size() > s.name.size() && digits.ends_with(s.name) &&
            !(digits.starts_with("0x") || digits.starts_with("0X"))) {
            digits.remove_suffix(s.name.size());
            multiplier = uint64_t{1} << s.shift;
            break;
        }
    }
    const auto value = to_u64(digits);
    if (!value) throw UsageError(fmt::format("'{}' is not a size (e.g. 4096, 64K, 16M, 1G)", text));
    if (*value > std::numeric_limits<uint64_t>::max() / multiplier)
        throw UsageError(fmt::format("'{}' is too large", text));
    const uint64_t bytes = *value * multiplier;
    if (bytes % kBlockSize != 0)
        throw UsageError(fmt::format("{} bytes is not a multiple of {}", bytes, kBlockSize));
    return bytes;
}

int run_cli(std::span<const std::string> args, Console& console, const std::atomic<bool>* stop) {
    if (args.empty()) {
        console.error(fmt::format("ember-verify: error: no command given\n{}", kUsage));
        return kExitUsage;
    }
    const std::string_view command = args[0];
    try {
        if (command == "help" || command == "--help" || command == "-h") {
            console.line(kUsage);
            return kExitPass;
        }
        if (command == "write-verify") return write_verify_command(args.subspan(1), console, stop);
        if (command == "check-image") return check_image_command(args.subspan(1), console);
        throw UsageError(fmt::format("unknown command '{}'", command));
    } catch (const UsageError& e) {
        console.error(fmt::format("ember-verify: error: {}\n(run 'ember-verify help' for usage)",
                                  e.what()));
        return kExitUsage;
    } catch (const SetupError& e) {
        console.error(fmt::format("ember-verify: error: {}", e.what()));
        return kExitUsage;
    } catch (const std::bad_alloc&) {
        console.error("ember-verify: error: out of memory (try a smaller --size)");
        return kExitUsage;
    }
}

} // namespace ember::verify
