// Seeded randomness for the hostile-guest tests: a run is reproduced from its
// seed, which each test names in its failure message.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <random>

namespace ember::testing {

using Rng = std::mt19937_64;

inline uint64_t pick(Rng& rng, uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
}
inline bool chance(Rng& rng, double p) {
    return std::bernoulli_distribution(p)(rng);
}

// A number from the environment (EMBER_FUZZ_SEED, EMBER_FUZZ_BATCHES), or
// `fallback` when it is unset or empty.
inline uint64_t env_or(const char* name, uint64_t fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 0) : fallback;
}

} // namespace ember::testing
