// SIP, SIPS and tel URIs as views over the text they were parsed from (RFC 3261 §19.1,
// RFC 3966), with RFC 3261 §19.1.4 comparison. Other schemes parse as opaque absolute URIs
// so a proxy can answer 416 instead of 400.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace sb::core {

enum class Scheme : uint8_t { Sip, Sips, Tel, Other };
enum class HostType : uint8_t { None, Name, IPv4, IPv6 };

struct Uri {
  std::string_view raw;        // the whole URI text
  std::string_view scheme_raw; // as written, e.g. "SIP"
  Scheme scheme = Scheme::Other;
  std::string_view user;       // still %-escaped; for tel: the number
  std::string_view password;
  bool has_user = false;
  bool has_password = false;
  std::string_view host;       // IPv6 without brackets
  HostType host_type = HostType::None;
  uint16_t port = 0;           // 0 when absent
  std::string_view params;     // after the first ';' up to '?', without that ';'
  std::string_view headers;    // after '?', without it
  std::string_view opaque;     // for Other schemes: everything after "scheme:"

  bool is_sip() const { return scheme == Scheme::Sip || scheme == Scheme::Sips; }
  // A URI parameter: its value ("" for a flag such as ;lr), nullopt when absent.
  std::optional<std::string_view> param(std::string_view name) const;
  bool has_param(std::string_view name) const { return param(name).has_value(); }
  // host[:port] as written (IPv6 with brackets).
  std::string_view hostport() const;
};

Result<Uri> parse_uri(std::string_view text);
// The same into `out` (reset first), without copying the result. On failure `out` holds
// what was read before the fault.
Status parse_uri(std::string_view text, Uri& out);

// RFC 3261 §19.1.4 equality (case rules, escapes, the user/ttl/method/maddr/transport
// params, headers). An escape of an unreserved character equals the character; an escaped
// reserved character does not equal the reserved character itself.
bool uri_equal(const Uri& a, const Uri& b);

// %-decode into `out` (appends). Returns false on a bad escape.
bool unescape(std::string_view in, std::string& out);

// The canonical address-of-record for a SIP URI (§10.3 step 5): scheme, user and host,
// lower-cased scheme and host, no port/params/headers. Escapes in the user are normalised:
// unreserved characters are decoded, every other escape is kept with upper-case hex, so
// "sip:%75se%72@Example.COM" gives "sip:user@example.com" and an escaped NUL stays "%00".
// Returns "" for non-SIP URIs.
std::string canonical_aor(const Uri& uri);

// Parameter list helper, shared by URIs and header params: ";a=b;c" style (leading ';'
// already stripped, LWS around ';' and '=' allowed). Finds `name` case-insensitively, also
// when the list writes the name with %-escapes. The value is returned as written.
std::optional<std::string_view> find_param(std::string_view params, std::string_view name);

}  // namespace sb::core
