// Small, fully specified hashing for reproducible pseudo-random values: the same
// input gives the same bits on every platform and standard library, which the
// demo catalog, the distortion suite and training seeds rely on (std::
// distributions are not specified that precisely).
#pragma once

#include <cstdint>

namespace lookalike {

// SplitMix64 (Steele, Lea and Flood, 2014): x plus the golden-ratio increment,
// then its finaliser. Used as a hash of x, and as a generator whose state steps by
// kSplitMix64Increment (image/distort.cpp).
inline constexpr std::uint64_t kSplitMix64Increment = 0x9e3779b97f4a7c15ULL;

inline std::uint64_t splitmix64(std::uint64_t x) {
  x += kSplitMix64Increment;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace lookalike
