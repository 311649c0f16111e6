// tools/round_stats.h: the median and its sign-test interval.
#include "tools/round_stats.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace ember::bench {

std::optional<double> median_of(std::vector<double> v) {
    if (v.empty()) return std::nullopt;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::optional<MedianInterval> median_interval(std::vector<double> v, double confidence) {
    if (!(confidence > 0 && confidence < 1))
        throw std::invalid_argument("median_interval: confidence must be in (0, 1)");
    const size_t n = v.size();
    if (n == 0) return std::nullopt;
    std::sort(v.begin(), v.end());
    // tail = P(B <= j) for B ~ Binomial(n, 1/2), built term by term:
    // C(n, j) / 2^n, in logs so n in the thousands does not overflow.
    auto term = [n](size_t j) {
        return std::exp(std::lgamma(double(n) + 1) - std::lgamma(double(j) + 1) -
                        std::lgamma(double(n - j) + 1) - double(n) * std::log(2.0));
    };
    // Interval [x(k), x(n+1-k)] (1-based) covers 1 - 2*P(B <= k-1). Widen
    // from the middle: the largest k whose coverage is still enough.
    std::optional<MedianInterval> best;
    double tail = term(0); // P(B <= k-1), for k = 1
    for (size_t k = 1; 2 * k <= n + 1; ++k) {
        const double coverage = 1 - 2 * tail;
        if (coverage + 1e-12 < confidence) break;
        best = MedianInterval{v[k - 1], v[n - k], coverage};
        tail += term(k);
    }
    return best;
}

} // namespace ember::bench
