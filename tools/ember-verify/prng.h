// Deterministic mixing and a tiny generator. The verifier's whole write sequence
// and every payload byte derive from these, so host and guest must agree on them
// bit for bit: no std::mt19937 distributions (their output is not specified
// across standard libraries), only fixed integer arithmetic.
#pragma once

#include <cstdint>

namespace ember::verify {

inline constexpr uint64_t kGolden64 = 0x9e3779b97f4a7c15ull;

// The SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix.
constexpr uint64_t mix64(uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// SplitMix64 generator.
class SplitMix64 final {
public:
    explicit constexpr SplitMix64(uint64_t seed) noexcept : state_{seed} {}
    constexpr uint64_t next() noexcept { return mix64(state_ += kGolden64); }
    // A value in [0, bound) for bound <= 2^32, by multiply-shift (Lemire); the small
    // bias does not matter here, only that it is the same everywhere.
    constexpr uint64_t below(uint64_t bound) noexcept { return ((next() >> 32) * bound) >> 32; }

private:
    uint64_t state_;
};

} // namespace ember::verify
