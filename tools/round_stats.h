// What N rounds of a noisy benchmark say: the median, and an interval that
// holds the true median with a stated confidence. bench-blk's ratio to fio
// moves by more than its 0.95 goal's margin from run to run on a virtual
// disk; the interval says whether a run shows the goal met, missed, or
// neither.
//
// The interval is distribution-free (sign test): between order statistics
// k and N+1-k, the true median lies with probability 1 - 2*P(B <= k-1) for
// B ~ Binomial(N, 1/2), whatever the rounds' distribution, if the rounds are
// independent. No resampling, so the same rounds give the same interval.
#pragma once

#include <optional>
#include <vector>

namespace ember::bench {

// The middle value; for an even count, the mean of the two middle ones.
// nullopt for no values.
std::optional<double> median_of(std::vector<double> v);

struct MedianInterval {
    double lo{0};
    double hi{0};
    double coverage{0}; // the probability the interval holds the median, >= asked
};

// The narrowest order-statistic interval with coverage >= confidence
// (0 < confidence < 1). nullopt when N is too small for that confidence:
// even [min, max] covers only 1 - 2^(1-N) (N >= 6 for 95%).
std::optional<MedianInterval> median_interval(std::vector<double> v, double confidence);

} // namespace ember::bench
