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

NetSpec parse_net_spec(std::string_view text) {
    NetSpec spec;
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
            throw NetSpecError(fmt::format(
                "--net {}: \"{}\" is not KEY=VALUE (tap=NAME[,mac=AA:BB:CC:DD:EE:FF][,id=NAME])",
                text, part));
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
        } else {
            throw NetSpecError(
                fmt::format("--net {}: unknown option \"{}\" (known: tap, mac, id)", text, key));
        }
    }
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
