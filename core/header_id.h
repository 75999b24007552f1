// Header names known to the proxy, their compact forms (RFC 3261 §7.3.3 and the IANA SIP
// header registry) and whether a header may carry a comma-separated list (§7.3.1).
#pragma once
#include <cstdint>
#include <string_view>

namespace sb::core {

enum class HeaderId : uint8_t {
  Other = 0,
  Via, From, To, CallId, CSeq, Contact, MaxForwards, Route, RecordRoute,
  ContentLength, ContentType, ContentEncoding, Expires, MinExpires,
  Require, ProxyRequire, Supported, Unsupported, Allow, Accept, AcceptEncoding,
  AcceptLanguage, Authorization, ProxyAuthorization, WWWAuthenticate, ProxyAuthenticate,
  AuthenticationInfo, Subject, Event, AllowEvents, ReferTo, ReferredBy,
  AcceptContact, RejectContact, RequestDisposition, SessionExpires, Identity, IdentityInfo,
  Path, ServiceRoute, UserAgent, Server, Date, Timestamp, RetryAfter, Warning, Reason,
  Priority, Organization, InReplyTo, ReplyTo, CallInfo, AlertInfo, ErrorInfo,
  MimeVersion, ContentDisposition, ContentLanguage,
  Count_
};
inline constexpr int kHeaderIdCount = static_cast<int>(HeaderId::Count_);

// Identify a header name (full or compact, any case). Unknown names map to Other.
HeaderId header_id(std::string_view name);
// The same for the `len`-byte name at `p` when at least kHeaderIdLookahead bytes from `p`
// are readable (a parser's receive buffer): reads them without copying the name.
inline constexpr size_t kHeaderIdLookahead = 24;
HeaderId header_id_in_buffer(const char* p, size_t len);
// The canonical full name, e.g. "Call-ID"; "" for Other.
std::string_view header_name(HeaderId id);
// True for headers whose grammar is a comma-separated list (Via, Contact, Route, ...).
bool header_is_list(HeaderId id);
// True for headers that may appear at most once (§20: Call-ID, CSeq, From, To, ...).
bool header_is_single(HeaderId id);

}  // namespace sb::core
