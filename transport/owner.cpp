#include "transport/owner.h"

#include <string_view>

#include "core/branch.h"
#include "core/text.h"

namespace sb::transport {

namespace {

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t fnv1a(uint64_t h, std::string_view s) {
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= kFnvPrime;
  }
  return h;
}

// Host names compare case-insensitively (§19.1.4), so a retransmission that only changed
// the case of its sent-by still finds the same worker.
uint64_t fnv1a_lower(uint64_t h, std::string_view s) {
  for (char c : s) {
    h ^= static_cast<unsigned char>(core::ascii_lower(c));
    h *= kFnvPrime;
  }
  return h;
}

uint32_t pick(uint64_t h, uint32_t workers) {
  // Fold the high bits in: FNV's low bits alone spread poorly over small moduli.
  return static_cast<uint32_t>((h ^ (h >> 32)) % workers);
}

uint32_t by_transaction(const core::Message& m, uint32_t workers) {
  const core::Via& via = m.top_via();
  if (via.rfc3261_branch()) {
    uint64_t h = fnv1a(kFnvOffset, via.branch);
    h = fnv1a(h, "\x01");  // separator: "ab"+"c" must not equal "a"+"bc"
    h = fnv1a_lower(h, via.host);
    const char port[2] = {static_cast<char>(via.port & 0xff), static_cast<char>(via.port >> 8)};
    h = fnv1a(h, std::string_view(port, 2));
    return pick(h, workers);
  }
  return pick(fnv1a(kFnvOffset, m.call_id()), workers);
}

}  // namespace

uint32_t owner_of(const core::Message& m, uint32_t workers, uint32_t receiver, Dispatch dispatch) {
  if (workers <= 1) return 0;
  if (m.is_response()) {
    if (auto w = core::branch_worker(m.top_via().branch); w && *w < workers) return *w;
  }
  if (dispatch == Dispatch::ByTransaction) return by_transaction(m, workers);
  return receiver < workers ? receiver : 0;
}

}  // namespace sb::transport
