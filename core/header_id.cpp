#include "core/header_id.h"

#include <array>

#include "core/text.h"

namespace sb::core {

namespace {

struct Entry {
  HeaderId id;
  std::string_view name;
  char compact;  // 0 when none
  bool list;
  bool single;
};

constexpr Entry kEntries[] = {
    {HeaderId::Other, "", 0, false, false},
    {HeaderId::Via, "Via", 'v', true, false},
    {HeaderId::From, "From", 'f', false, true},
    {HeaderId::To, "To", 't', false, true},
    {HeaderId::CallId, "Call-ID", 'i', false, true},
    {HeaderId::CSeq, "CSeq", 0, false, true},
    {HeaderId::Contact, "Contact", 'm', true, false},
    {HeaderId::MaxForwards, "Max-Forwards", 0, false, true},
    {HeaderId::Route, "Route", 0, true, false},
    {HeaderId::RecordRoute, "Record-Route", 0, true, false},
    {HeaderId::ContentLength, "Content-Length", 'l', false, true},
    {HeaderId::ContentType, "Content-Type", 'c', false, true},
    {HeaderId::ContentEncoding, "Content-Encoding", 'e', true, false},
    {HeaderId::Expires, "Expires", 0, false, true},
    {HeaderId::MinExpires, "Min-Expires", 0, false, true},
    {HeaderId::Require, "Require", 0, true, false},
    {HeaderId::ProxyRequire, "Proxy-Require", 0, true, false},
    {HeaderId::Supported, "Supported", 'k', true, false},
    {HeaderId::Unsupported, "Unsupported", 0, true, false},
    {HeaderId::Allow, "Allow", 0, true, false},
    {HeaderId::Accept, "Accept", 0, true, false},
    {HeaderId::AcceptEncoding, "Accept-Encoding", 0, true, false},
    {HeaderId::AcceptLanguage, "Accept-Language", 0, true, false},
    {HeaderId::Authorization, "Authorization", 0, false, false},
    {HeaderId::ProxyAuthorization, "Proxy-Authorization", 0, false, false},
    {HeaderId::WWWAuthenticate, "WWW-Authenticate", 0, false, false},
    {HeaderId::ProxyAuthenticate, "Proxy-Authenticate", 0, false, false},
    {HeaderId::AuthenticationInfo, "Authentication-Info", 0, false, true},
    {HeaderId::Subject, "Subject", 's', false, true},
    {HeaderId::Event, "Event", 'o', false, true},
    {HeaderId::AllowEvents, "Allow-Events", 'u', true, false},
    {HeaderId::ReferTo, "Refer-To", 'r', false, true},
    {HeaderId::ReferredBy, "Referred-By", 'b', false, true},
    {HeaderId::AcceptContact, "Accept-Contact", 'a', true, false},
    {HeaderId::RejectContact, "Reject-Contact", 'j', true, false},
    {HeaderId::RequestDisposition, "Request-Disposition", 'd', true, false},
    {HeaderId::SessionExpires, "Session-Expires", 'x', false, true},
    {HeaderId::Identity, "Identity", 'y', false, false},
    {HeaderId::IdentityInfo, "Identity-Info", 'n', false, false},
    {HeaderId::Path, "Path", 0, true, false},
    {HeaderId::ServiceRoute, "Service-Route", 0, true, false},
    {HeaderId::UserAgent, "User-Agent", 0, false, true},
    {HeaderId::Server, "Server", 0, false, true},
    {HeaderId::Date, "Date", 0, false, true},
    {HeaderId::Timestamp, "Timestamp", 0, false, true},
    {HeaderId::RetryAfter, "Retry-After", 0, false, true},
    {HeaderId::Warning, "Warning", 0, true, false},
    {HeaderId::Reason, "Reason", 0, true, false},
    {HeaderId::Priority, "Priority", 0, false, true},
    {HeaderId::Organization, "Organization", 0, false, true},
    {HeaderId::InReplyTo, "In-Reply-To", 0, true, false},
    {HeaderId::ReplyTo, "Reply-To", 0, false, true},
    {HeaderId::CallInfo, "Call-Info", 0, true, false},
    {HeaderId::AlertInfo, "Alert-Info", 0, true, false},
    {HeaderId::ErrorInfo, "Error-Info", 0, true, false},
    {HeaderId::MimeVersion, "MIME-Version", 0, false, true},
    {HeaderId::ContentDisposition, "Content-Disposition", 0, false, true},
    {HeaderId::ContentLanguage, "Content-Language", 0, true, false},
};
static_assert(std::size(kEntries) == kHeaderIdCount);

constexpr std::array<HeaderId, 128> make_compact() {
  std::array<HeaderId, 128> t{};
  for (const auto& e : kEntries)
    if (e.compact) {
      t[static_cast<unsigned char>(e.compact)] = e.id;
      t[static_cast<unsigned char>(e.compact - 32)] = e.id;
    }
  return t;
}
constexpr auto kCompact = make_compact();

}  // namespace

HeaderId header_id(std::string_view name) {
  if (name.size() == 1) {
    auto c = static_cast<unsigned char>(name[0]);
    return c < 128 ? kCompact[c] : HeaderId::Other;
  }
  // Linear over ~60 names but cut by length and first letter first: cheap and branch-friendly.
  char first = ascii_lower(name.empty() ? 0 : name[0]);
  for (size_t i = 1; i < std::size(kEntries); ++i) {
    const auto& e = kEntries[i];
    if (e.name.size() == name.size() && ascii_lower(e.name[0]) == first && iequals(e.name, name))
      return e.id;
  }
  return HeaderId::Other;
}

std::string_view header_name(HeaderId id) { return kEntries[static_cast<int>(id)].name; }
bool header_is_list(HeaderId id) { return kEntries[static_cast<int>(id)].list; }
bool header_is_single(HeaderId id) { return kEntries[static_cast<int>(id)].single; }

}  // namespace sb::core
