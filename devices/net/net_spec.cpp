#include "devices/net/net_spec.h"

#include <cctype>
#include <set>

#include <fmt/format.h>

#include "devices/net/tap.h"

namespace ember {

namespace {
int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
} // namespace

MacAddress parse_mac(std::string_view text) {
    MacAddress mac{};
    const auto bad = [&](std::string_view why) {
        return NetSpecError(fmt::format("MAC address \"{}\" {}", text, why));
    };
    if (text.size() != 17) throw bad("is not six hex pairs separated by ':' (AA:BB:CC:DD:EE:FF)");
    for (size_t i = 0; i < 6; ++i) {
        const int hi = hex_digit(text[i * 3]), lo = hex_digit(text[i * 3 + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && text[i * 3 + 2] != ':'))
            throw bad("is not six hex pairs separated by ':' (AA:BB:CC:DD:EE:FF)");
        mac[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    if (mac[0] & 1)
        throw bad("is a multicast address (the first byte is odd); a NIC needs a unicast one, "
                  "e.g. 06:00:AC:10:00:02");
    if (mac == MacAddress{}) throw bad("is all zeroes");
    return mac;
}

std::string format_mac(const MacAddress& m) {
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4],
                       m[5]);
}

namespace {
constexpr std::string_view kNetUsage =
    "tap=NAME[,mac=AA:BB:CC:DD:EE:FF][,id=NAME][,rx-bw=BYTES][,rx-ops=N][,tx-bw=BYTES][,tx-ops=N]"
    ", each rate with an optional -burst";

// rx-bw, rx-ops, tx-bw, tx-ops and their -burst: per second, as a disk's
// bw= and iops= (rate_limiter.h).
struct RateOptions {
    std::optional<uint64_t> value[2][2][2]; // [rx, tx][bw, ops][rate, burst]

    // False when `key` is not one of them.
    bool take(std::string_view text, std::string_view key, std::string_view value_text) {
        for (int dir = 0; dir < 2; ++dir)
            for (int kind = 0; kind < 2; ++kind)
                for (int burst = 0; burst < 2; ++burst) {
                    if (key != name(dir, kind, burst)) continue;
                    auto& slot = value[dir][kind][burst];
                    if (slot)
                        throw NetSpecError(
                            fmt::format("--net {}: option \"{}\" given twice", text, key));
                    slot = parse_rate_count(value_text, kind == 0);
                    if (!slot)
                        throw NetSpecError(fmt::format("--net {}: {} \"{}\" is not {}", text, key,
                                                       value_text,
                                                       rate_count_expected(kind == 0, "frames")));
                    return true;
                }
        return false;
    }
    void apply(std::string_view text, NetSpec& spec) const {
        for (int dir = 0; dir < 2; ++dir) {
            RateLimit& limit = dir == 0 ? spec.rx_limit : spec.tx_limit;
            for (int kind = 0; kind < 2; ++kind) {
                const auto& rate = value[dir][kind][0];
                const auto& burst = value[dir][kind][1];
                if (!rate && burst)
                    throw NetSpecError(fmt::format("--net {}: {}= needs {}= (the rate it bursts "
                                                   "above)",
                                                   text, name(dir, kind, 1), name(dir, kind, 0)));
                if (rate)
                    (kind == 0 ? limit.bandwidth : limit.ops) = per_second_bucket(*rate, burst);
            }
        }
    }
    static std::string name(int dir, int kind, int burst) {
        return fmt::format("{}-{}{}", dir == 0 ? "rx" : "tx", kind == 0 ? "bw" : "ops",
                           burst ? "-burst" : "");
    }
};
} // namespace

NetSpec parse_net_spec(std::string_view text) {
    NetSpec spec;
    RateOptions rates;
    bool have_tap = false;
    size_t pos = 0;
    while (pos <= text.size()) {
        const size_t comma = text.find(',', pos);
        const std::string_view part = text.substr(
            pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
        pos = comma == std::string_view::npos ? text.size() + 1 : comma + 1;
        const size_t eq = part.find('=');
        const std::string_view key = part.substr(0, eq);
        const std::string_view value =
            eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
        if (eq == std::string_view::npos)
            throw NetSpecError(
                fmt::format("--net {}: \"{}\" is not KEY=VALUE ({})", text, part, kNetUsage));
        if (key == "tap") {
            spec.tap = std::string(value);
            have_tap = true;
        } else if (key == "mac") {
            try {
                spec.mac = parse_mac(value);
            } catch (const NetSpecError& e) {
                throw NetSpecError(fmt::format("--net {}: {}", text, e.what()));
            }
        } else if (key == "id") {
            spec.id = std::string(value);
            if (spec.id.empty()) throw NetSpecError(fmt::format("--net {}: id= is empty", text));
        } else if (!rates.take(text, key, value)) {
            throw NetSpecError(fmt::format("--net {}: unknown option \"{}\" (known: tap, mac, id, "
                                           "rx-bw, rx-ops, tx-bw, tx-ops, each rate's -burst)",
                                           text, key));
        }
    }
    rates.apply(text, spec);
    if (!have_tap)
        throw NetSpecError(
            fmt::format("--net {}: tap=NAME is required (the host's TAP interface)", text));
    try {
        check_net_spec(spec);
    } catch (const NetSpecError& e) {
        throw NetSpecError(fmt::format("--net {}: {}", text, e.what()));
    }
    return spec;
}

void check_net_spec(const NetSpec& spec) {
    if (auto why = tap_name_problem(spec.tap)) throw NetSpecError(*why);
    if (!spec.id.empty()) {
        if (spec.id.size() > 64)
            throw NetSpecError(
                fmt::format("network device id \"{}\" is longer than 64 bytes", spec.id));
        for (char c : spec.id)
            if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
                throw NetSpecError(fmt::format(
                    "network device id \"{}\": only letters, digits, '-', '_' and '.' are allowed",
                    spec.id));
    }
    for (const auto* limit : {&spec.rx_limit, &spec.tx_limit})
        for (const auto* bucket : {&limit->bandwidth, &limit->ops})
            if (*bucket)
                if (auto problem = bucket_problem(**bucket))
                    throw NetSpecError(
                        fmt::format("the {} rate limit's {} bucket: {}",
                                    limit == &spec.rx_limit ? "receive" : "transmit",
                                    bucket == &limit->bandwidth ? "bandwidth" : "ops", *problem));
    if (spec.mac && ((*spec.mac)[0] & 1))
        throw NetSpecError(fmt::format("MAC address {} is a multicast address; a NIC needs a "
                                       "unicast one",
                                       format_mac(*spec.mac)));
}

void resolve_net_ids(std::vector<NetSpec>& specs) {
    if (specs.size() > kMaxNets)
        throw NetSpecError(fmt::format("{} network devices given; ember supports at most {}",
                                       specs.size(), kMaxNets));
    std::set<std::string> ids, taps;
    for (size_t i = 0; i < specs.size(); ++i) {
        check_net_spec(specs[i]);
        if (specs[i].id.empty()) specs[i].id = fmt::format("net{}", i);
        if (!ids.insert(specs[i].id).second)
            throw NetSpecError(fmt::format("two network devices have the id \"{}\"", specs[i].id));
        if (!taps.insert(specs[i].tap).second)
            throw NetSpecError(fmt::format(
                "two network devices use tap {}: a tap has one reader, so each device needs its "
                "own",
                specs[i].tap));
    }
}

} // namespace ember
