// Comma-separated option values ("--qd 1,32", "--points a,b") for the
// benchmarks and the native crash suite.
#pragma once

#include <string>
#include <vector>

namespace ember::testing {

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

} // namespace ember::testing
