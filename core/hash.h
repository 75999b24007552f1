// Hashing a message's fields, 8 bytes at a time: the transaction tables' keys, the worker
// that owns a transaction (dispatch "transaction"), and the values the proxy writes into
// branches (the loop-detection hash of RFC 3261 §16.6 step 8, the branch of a stateless
// forward). No seed: the same fields give the same value in every pass,
// so a looped request or a retransmitted ACK hashes as it did before.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace sb::core::hash {

inline constexpr uint64_t kMul = 0x9e3779b97f4a7c15ull;
inline constexpr uint64_t kNoFold = 0;
inline constexpr uint64_t kCaseFold = 0x2020202020202020ull;

inline uint64_t load(const char* p, size_t n) {
  uint64_t w = 0;
  std::memcpy(&w, p, n);
  return w;
}

// Folds `s` into `h`: each word with a multiply (a bijection for a given next word, so inputs
// differing in one word stay apart), then the length, which ends the field so that ("ab", "c")
// and ("a", "bc") differ. `fold` ORs 0x20 into every byte for fields compared without case:
// strings equal but for ASCII case hash alike (bytes that differ only in that bit elsewhere
// collide, and equality tells them apart).
inline uint64_t field(uint64_t h, std::string_view s, uint64_t fold = kNoFold) {
  const char* p = s.data();
  size_t n = s.size();
  for (; n >= 8; p += 8, n -= 8) h = (h ^ (load(p, 8) | fold)) * kMul;
  if (n) h = (h ^ (load(p, n) | fold)) * kMul;
  return (h ^ s.size()) * kMul;
}

// Folds a number into `h`.
inline uint64_t number(uint64_t h, uint64_t v) { return (h ^ v) * kMul; }

// The final avalanche (MurmurHash3's fmix64): every bit of `h` reaches the low bits, which
// tables index by and branches carry.
inline uint64_t finish(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

}  // namespace sb::core::hash
