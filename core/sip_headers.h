// Typed views of the headers a proxy reads: Via, name-addr (From/To/Contact/Route/...),
// CSeq, Contact (with '*'), auth credentials/challenges. Each parser takes one header
// value (one list element for list headers) and returns a view or an Error naming the fault.
// The parsers for one header (Via, Contact, CSeq, Max-Forwards) name it in Error::header;
// the shared ones (name-addr, auth) leave that to the caller (core::in_header).
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

#include "core/method.h"
#include "core/result.h"
#include "core/text.h"
#include "core/uri.h"

namespace sb::core {

// Split a list header value at commas outside quotes and <...> (§7.3.1). `f(element)` gets
// each element trimmed; returns false to stop. Empty elements are passed as "" so callers can
// reject them where the grammar forbids it.
template <class F>
void for_each_list_element(std::string_view value, F&& f);

// RFC 3261 §20.42 Via, one via-parm.
struct Via {
  std::string_view raw;        // the whole via-parm
  std::string_view protocol;   // "SIP/2.0"
  std::string_view transport;  // "UDP", "TCP", "TLS", "WS", "WSS", "SCTP"
  std::string_view host;       // IPv6 without brackets
  bool host_is_ipv6 = false;
  uint16_t port = 0;           // 0 when absent
  std::string_view sent_by;    // host[:port] as written
  std::string_view params;     // after the first ';', without it
  std::string_view branch;
  std::string_view received;
  std::string_view maddr;
  bool has_rport = false;
  std::string_view rport;      // "" when present without value
  std::optional<std::string_view> param(std::string_view name) const;
  // RFC 3261 §8.1.1.7: a branch starting with the magic cookie z9hG4bK.
  bool rfc3261_branch() const { return branch.size() > 7 && branch.substr(0, 7) == "z9hG4bK"; }
};
Result<Via> parse_via(std::string_view value);
// The same into `out` (reset first). On failure `out` keeps what was read: when `out.host`
// is set, the sent-by was readable and a response can still be sent there (§18.2.2).
Status parse_via(std::string_view value, Via& out);

// name-addr / addr-spec with header params (From, To, Contact, Route, Record-Route, Path...).
struct NameAddr {
  std::string_view raw;
  std::string_view display;     // without quotes, still escaped ("" when none)
  std::string_view uri_text;    // the URI without <>
  Uri uri;
  bool angle = false;           // written with <...>
  std::string_view params;      // header params after the URI, without the leading ';'
  std::optional<std::string_view> param(std::string_view name) const;
  std::string_view tag() const { return param("tag").value_or(std::string_view{}); }
};
Result<NameAddr> parse_name_addr(std::string_view value);
// The same into `out` (reset first), without copying the result. With `with_uri` false the
// URI is only delimited (uri_text) and `uri` stays empty: for a response's From and To, which
// a proxy relays reading only their tags (§16.7).
Status parse_name_addr(std::string_view value, NameAddr& out, bool with_uri = true);

// Contact: '*' or a name-addr with q / expires.
struct ContactValue {
  bool star = false;
  NameAddr addr;
  // The expires param when present and a valid delta-seconds below 2**32. A malformed or
  // overlarge one reads as absent: the registrar then uses its default (RFC 4475 §3.1.2.4).
  std::optional<uint32_t> expires;
  uint16_t q1000 = 1000;              // q as thousandths; 1000 when absent
};
Result<ContactValue> parse_contact(std::string_view value);

struct CSeq {
  uint32_t number = 0;
  std::string_view method_text;
  Method method = Method::Other;
};
Result<CSeq> parse_cseq(std::string_view value);

// Credentials / challenges (§25.1, RFC 7616): scheme plus comma-separated auth-params.
struct AuthHeader {
  std::string_view scheme;  // "Digest"
  std::string_view params;  // the auth-param list
  // A parameter's value, unquoted (still with \-escapes when the value had any).
  std::optional<std::string_view> param(std::string_view name) const;
};
Result<AuthHeader> parse_auth(std::string_view value);

// Max-Forwards (0..255), Expires/Min-Expires (delta-seconds, 32 bit).
Result<uint32_t> parse_max_forwards(std::string_view value);
Result<uint32_t> parse_delta_seconds(std::string_view value, const char* err);

// ---- implementation of the template ----
template <class F>
void for_each_list_element(std::string_view value, F&& f) {
  size_t i = 0;
  while (true) {
    size_t c = find_unquoted(value, ',', i);
    size_t e = c == std::string_view::npos ? value.size() : c;
    if (!f(trim(slice(value, i, e - i)))) return;
    if (c == std::string_view::npos) return;
    i = c + 1;
  }
}

}  // namespace sb::core
