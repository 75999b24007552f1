#include "proxy/transaction_key.h"

#include "core/hash.h"
#include "core/text.h"

namespace sb::proxy {

namespace {

std::string_view from_tag(const core::Message& m) {
  return m.has_from() ? m.from().tag() : std::string_view{};
}

}  // namespace

bool TransactionKey::operator==(const TransactionKey& o) const {
  return cseq == o.cseq && method == o.method && core::iequals(branch, o.branch) &&
         core::iequals(sent_by, o.sent_by) && call_id == o.call_id && from_tag == o.from_tag &&
         via == o.via;
}

// The branch and the sent-by compare without case (operator== above), the rest exactly.
size_t TransactionKeyHash::operator()(const TransactionKey& k) const {
  namespace hash = core::hash;
  uint64_t h = hash::field(0, k.branch, hash::kCaseFold);
  h = hash::field(h, k.sent_by, hash::kCaseFold);
  h = hash::field(h, k.method);
  if (k.branch.empty()) {
    // Only RFC 2543 keys carry these; skipping them keeps the common case short.
    h = hash::field(h, k.call_id);
    h = hash::field(h, k.from_tag);
    h = hash::field(h, k.via);
    h = hash::number(h, k.cseq);
  }
  return static_cast<size_t>(hash::finish(h));
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
