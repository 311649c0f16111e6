// Option values for the benchmarks and the native crash suite: numbers checked
// whole and against a range, and comma-separated lists ("--qd 1,32"). A bad
// value is a UsageError naming the flag, so a typo exits 2 with a message
// instead of aborting on std::stoul's exception or running with "32x" as 32.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace ember::testing {

class UsageError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// "a,b,,c" -> {"a", "b", "", "c"}; "" -> {""}. Callers validate each item.
inline std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        const size_t comma = s.find(',', start);
        out.push_back(s.substr(start, comma - start));
        if (comma == std::string::npos) return out;
        start = comma + 1;
    }
}

// FLAG's value V as a whole number in [min, max].
inline uint64_t number_option(const std::string& flag, const std::string& v, uint64_t min,
                              uint64_t max) {
    if (v.empty()) throw UsageError(fmt::format("{}: empty value", flag));
    uint64_t n = 0;
    try {
        size_t used = 0;
        // stoull takes "-1" as 2^64-1; a leading '-' is never a count.
        if (v[0] == '-') throw std::invalid_argument(v);
        n = std::stoull(v, &used);
        if (used != v.size()) throw std::invalid_argument(v);
    } catch (const std::logic_error&) {
        throw UsageError(fmt::format("{} {}: not a number", flag, v));
    }
    if (n < min || n > max)
        throw UsageError(fmt::format("{} {}: must be in [{}, {}]", flag, v, min, max));
    return n;
}

// FLAG's value V as a comma-separated list of whole numbers, each in
// [min, max] ("--qd 1,32").
inline std::vector<unsigned> number_list_option(const std::string& flag, const std::string& v,
                                                unsigned min, unsigned max) {
    std::vector<unsigned> out;
    for (const auto& item : split_list(v))
        out.push_back(static_cast<unsigned>(number_option(flag, item, min, max)));
    return out;
}

// FLAG's value V as a decimal number in [min, max] ("--seconds 0.3").
inline double decimal_option(const std::string& flag, const std::string& v, double min,
                             double max) {
    double d = 0;
    try {
        size_t used = 0;
        d = std::stod(v, &used);
        if (used != v.size()) throw std::invalid_argument(v);
    } catch (const std::logic_error&) {
        throw UsageError(fmt::format("{} {}: not a number", flag, v));
    }
    if (!std::isfinite(d) || d < min || d > max)
        throw UsageError(fmt::format("{} {}: must be in [{}, {}]", flag, v, min, max));
    return d;
}

} // namespace ember::testing
