#include "proxy/transaction_key.h"

#include "core/text.h"

namespace sb::proxy {

namespace {

// FNV-1a over the fields, one separator byte between them so ("ab","c") != ("a","bc").
constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

inline uint64_t mix(uint64_t h, unsigned char c) { return (h ^ c) * kFnvPrime; }

uint64_t hash_exact(uint64_t h, std::string_view s) {
  for (char c : s) h = mix(h, static_cast<unsigned char>(c));
  return mix(h, 0xff);
}

uint64_t hash_lower(uint64_t h, std::string_view s) {
  for (char c : s) h = mix(h, static_cast<unsigned char>(core::ascii_lower(c)));
  return mix(h, 0xff);
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
  uint64_t h = kFnvOffset;
  h = hash_lower(h, k.branch);
  h = hash_lower(h, k.sent_by);
  h = hash_exact(h, k.method);
  if (k.branch.empty()) {
    // Only RFC 2543 keys carry these; skipping them keeps the common case short.
    h = hash_exact(h, k.call_id);
    h = hash_exact(h, k.from_tag);
    h = hash_exact(h, k.via);
    for (int i = 0; i < 4; ++i) h = mix(h, static_cast<unsigned char>(k.cseq >> (8 * i)));
  }
  return static_cast<size_t>(h);
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
