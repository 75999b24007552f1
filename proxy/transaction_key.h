// Transaction matching keys (RFC 3261 §17.1.3, §17.2.3). A key is a set of views; the map
// stores a key whose views point into the transaction's own copy (StoredKey), and a lookup
// builds its key from views into the received message, so matching allocates nothing and
// costs one hash lookup. Internal to proxy/.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/message.h"

namespace sb::proxy {

struct TransactionKey {
  // RFC 3261 requests/responses (branch with the magic cookie, §8.1.1.7).
  std::string_view branch;
  std::string_view sent_by;   // server keys only (§17.2.3); "" for client keys
  // Both forms: the CSeq method, with ACK mapped to INVITE for server keys.
  std::string_view method;
  // RFC 2543 fallback (§17.2.3, last paragraphs): branch is "".
  std::string_view call_id;
  std::string_view from_tag;
  std::string_view via;       // the raw top via-parm
  uint32_t cseq = 0;

  // branch and sent-by compare case-insensitively (tokens and hosts, §7.3.1, §20.42);
  // the method is case-sensitive (§7.1), the Call-ID too (§20.8); the RFC 2543 fields
  // compare byte-for-byte, as a retransmission repeats them exactly.
  bool operator==(const TransactionKey& o) const;
};

struct TransactionKeyHash {
  size_t operator()(const TransactionKey& k) const;
};

// §17.1.3: a response matches the client transaction whose request carried the same top
// Via branch and the same CSeq method (CANCEL shares the INVITE's branch). Also used for the
// request the client transaction sends.
TransactionKey client_key(const core::Message& m);

// §17.2.3: a request with a magic-cookie branch matches by branch, sent-by and method,
// ACK counting as INVITE; without the cookie (RFC 2543 peers) by Call-ID, CSeq number,
// From tag, the raw top Via and method. The To tag is not part of the key: a
// retransmission repeats the original's To tag anyway, and an ACK to a non-2xx carries the
// tag of our response rather than the INVITE's, so leaving it out lets one key serve both.
// The Request-URI is left out for the same reason (an ACK and a CANCEL repeat it, §9.1,
// §17.1.1.3). `method` overrides the request's method (find_server_invite passes "INVITE"
// for a CANCEL, §9.2).
TransactionKey server_key(const core::Message& request, std::string_view method = {});

// A key owning its bytes: one buffer, with the views pointing into it. Neither copyable
// nor movable, so the views stay valid as long as the transaction holding it.
class StoredKey {
 public:
  StoredKey() = default;
  StoredKey(const StoredKey&) = delete;
  StoredKey& operator=(const StoredKey&) = delete;

  void assign(const TransactionKey& k);
  const TransactionKey& view() const { return view_; }

 private:
  std::string buf_;
  TransactionKey view_;
};

}  // namespace sb::proxy
