#include "proxy/transaction_key.h"

#include <cstring>

#include "core/text.h"

namespace sb::proxy {

namespace {

// The fields 8 bytes at a time: each word is folded in with a multiply (a bijection for a
// given next word, so keys differing in one word stay apart), the length ends each field so
// ("ab","c") != ("a","bc"), and a final avalanche (MurmurHash3's fmix64) carries every bit
// into the low bits the tables index by. `fold` ORs 0x20 into every byte for the fields
// compared without case: strings equal but for ASCII case hash alike (bytes that differ only
// in that bit elsewhere collide, and equality tells them apart).
constexpr uint64_t kMul = 0x9e3779b97f4a7c15ull;
constexpr uint64_t kNoFold = 0;
constexpr uint64_t kCaseFold = 0x2020202020202020ull;

inline uint64_t load(const char* p, size_t n) {
  uint64_t w = 0;
  std::memcpy(&w, p, n);
  return w;
}

inline uint64_t hash_field(uint64_t h, std::string_view s, uint64_t fold) {
  const char* p = s.data();
  size_t n = s.size();
  for (; n >= 8; p += 8, n -= 8) h = (h ^ (load(p, 8) | fold)) * kMul;
  if (n) h = (h ^ (load(p, n) | fold)) * kMul;
  return (h ^ s.size()) * kMul;
}

inline uint64_t avalanche(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

std::string_view from_tag(const core::Message& m) {
  return m.has_from() ? m.from().tag() : std::string_view{};
}

}  // namespace

bool TransactionKey::operator==(const TransactionKey& o) const {
  return cseq == o.cseq && method == o.method && core::iequals(branch, o.branch) &&
         core::iequals(sent_by, o.sent_by) && call_id == o.call_id && from_tag == o.from_tag &&
         via == o.via;
}

size_t TransactionKeyHash::operator()(const TransactionKey& k) const {
  uint64_t h = hash_field(0, k.branch, kCaseFold);
  h = hash_field(h, k.sent_by, kCaseFold);
  h = hash_field(h, k.method, kNoFold);
  if (k.branch.empty()) {
    // Only RFC 2543 keys carry these; skipping them keeps the common case short.
    h = hash_field(h, k.call_id, kNoFold);
    h = hash_field(h, k.from_tag, kNoFold);
    h = hash_field(h, k.via, kNoFold);
    h = (h ^ k.cseq) * kMul;
  }
  return static_cast<size_t>(avalanche(h));
}

TransactionKey client_key(const core::Message& m) {
  TransactionKey k;
  k.branch = m.top_via().branch;
  k.method = m.cseq().method_text;
  return k;
}

TransactionKey server_key(const core::Message& req, std::string_view method) {
  TransactionKey k;
  if (method.empty())
    method = req.method() == core::Method::Ack ? std::string_view("INVITE") : req.cseq().method_text;
  k.method = method;
  const core::Via& via = req.top_via();
  if (via.rfc3261_branch()) {
    k.branch = via.branch;
    k.sent_by = via.sent_by;
  } else {
    k.call_id = req.call_id();
    k.from_tag = from_tag(req);
    k.via = via.raw;
    k.cseq = req.cseq().number;
  }
  return k;
}

void StoredKey::assign(const TransactionKey& k) {
  buf_.clear();
  buf_.reserve(k.branch.size() + k.sent_by.size() + k.method.size() + k.call_id.size() +
               k.from_tag.size() + k.via.size());
  // Append everything first, then take views: the buffer no longer moves.
  size_t offs[6];
  const std::string_view parts[6] = {k.branch, k.sent_by, k.method, k.call_id, k.from_tag, k.via};
  for (int i = 0; i < 6; ++i) {
    offs[i] = buf_.size();
    buf_.append(parts[i]);
  }
  std::string_view all = buf_;
  view_.branch = all.substr(offs[0], k.branch.size());
  view_.sent_by = all.substr(offs[1], k.sent_by.size());
  view_.method = all.substr(offs[2], k.method.size());
  view_.call_id = all.substr(offs[3], k.call_id.size());
  view_.from_tag = all.substr(offs[4], k.from_tag.size());
  view_.via = all.substr(offs[5], k.via.size());
  view_.cseq = k.cseq;
}

}  // namespace sb::proxy
