#include "core/uri.h"

#include <algorithm>
#include <array>

#include "core/text.h"

namespace sb::core {

namespace {

bool valid_escapes(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) return false;
      if (!is_hex(s[i + 1]) || !is_hex(s[i + 2])) return false;
      i += 2;
    }
  }
  return true;
}

// Characters allowed unescaped in a URI (user, params, headers): RFC 3261 §25.1 unreserved,
// reserved minus those that delimit, and '%' for escapes. We reject controls, space, <>, ",
// and non-ASCII: those must be escaped.
bool uri_char(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7f) return false;
  switch (c) {
    case '<': case '>': case '"': case '{': case '}': case '|': case '\\': case '^': case '`':
      return false;
    default:
      return true;
  }
}

bool valid_hostname(std::string_view h) {
  if (h.empty() || h.size() > 255) return false;
  for (char c : h)
    if (!is_alnum(c) && c != '-' && c != '.' && c != '_') return false;
  return true;
}

bool valid_ipv4(std::string_view h) {
  int parts = 0;
  size_t i = 0;
  while (i <= h.size()) {
    size_t j = h.find('.', i);
    if (j == std::string_view::npos) j = h.size();
    auto v = parse_uint(h.substr(i, j - i), 255);
    if (!v || j - i > 3) return false;
    ++parts;
    i = j + 1;
    if (j == h.size()) break;
  }
  return parts == 4;
}

bool valid_ipv6(std::string_view h) {
  // Tolerant check (RFC 5118 §4.10 asks us to accept the three-colon form): hex digits,
  // colons and an optional trailing dotted IPv4.
  if (h.size() < 2 || h.size() > 45) return false;
  int colons = 0;
  for (char c : h) {
    if (c == ':') ++colons;
    else if (!is_hex(c) && c != '.') return false;
  }
  return colons >= 2;
}

}  // namespace

std::optional<std::string_view> find_param(std::string_view params, std::string_view name) {
  size_t i = 0;
  while (i <= params.size()) {
    size_t end = find_unquoted(params, ';', i);
    if (end == std::string_view::npos) end = params.size();
    std::string_view p = trim(params.substr(i, end - i));
    size_t eq = p.find('=');
    std::string_view n = trim(p.substr(0, eq));
    if (iequals(n, name)) {
      if (eq == std::string_view::npos) return std::string_view{};
      return trim(p.substr(eq + 1));
    }
    if (end == params.size()) break;
    i = end + 1;
  }
  return std::nullopt;
}

std::optional<std::string_view> Uri::param(std::string_view name) const {
  return find_param(params, name);
}

std::string_view Uri::hostport() const {
  if (host.empty()) return {};
  const char* b = host.data();
  const char* e = host.data() + host.size();
  if (host_type == HostType::IPv6) { --b; ++e; }
  if (port) {
    e += 1;
    while (e < raw.data() + raw.size() && is_digit(*e)) ++e;
  }
  return std::string_view(b, size_t(e - b));
}

bool unescape(std::string_view in, std::string& out) {
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      if (i + 2 >= in.size()) return false;
      if (!is_hex(in[i + 1]) || !is_hex(in[i + 2])) return false;
      out.push_back(char(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i]);
    }
  }
  return true;
}

Result<Uri> parse_uri(std::string_view text) {
  Uri u;
  u.raw = text;
  size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) return Error{"URI: missing scheme"};
  u.scheme_raw = text.substr(0, colon);
  if (!is_alpha(u.scheme_raw[0])) return Error{"URI: bad scheme"};
  for (char c : u.scheme_raw)
    if (!is_alnum(c) && c != '+' && c != '-' && c != '.') return Error{"URI: bad scheme"};
  std::string_view rest = text.substr(colon + 1);
  for (char c : rest)
    if (!uri_char(c) && c != '[' && c != ']') return Error{"URI: illegal character"};
  if (!valid_escapes(rest)) return Error{"URI: bad %-escape"};

  if (iequals(u.scheme_raw, "sip")) u.scheme = Scheme::Sip;
  else if (iequals(u.scheme_raw, "sips")) u.scheme = Scheme::Sips;
  else if (iequals(u.scheme_raw, "tel")) u.scheme = Scheme::Tel;
  else {
    if (rest.empty()) return Error{"URI: empty"};
    u.opaque = rest;
    return u;
  }

  if (u.scheme == Scheme::Tel) {
    size_t semi = rest.find(';');
    u.user = rest.substr(0, semi);
    u.has_user = true;
    if (u.user.empty()) return Error{"URI: empty tel number"};
    if (semi != std::string_view::npos) u.params = rest.substr(semi + 1);
    u.opaque = rest;
    return u;
  }

  size_t q = rest.find('?');
  std::string_view before_headers = rest.substr(0, q);
  if (q != std::string_view::npos) u.headers = rest.substr(q + 1);
  std::string_view hostpart = before_headers;
  size_t at = before_headers.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = before_headers.substr(0, at);
    size_t pc = userinfo.find(':');
    u.user = userinfo.substr(0, pc);
    u.has_user = true;
    if (pc != std::string_view::npos) {
      u.password = userinfo.substr(pc + 1);
      u.has_password = true;
    }
    if (u.user.empty()) return Error{"URI: empty user"};
    hostpart = before_headers.substr(at + 1);
  }
  if (hostpart.empty()) return Error{"URI: missing host"};
  size_t hend;
  if (hostpart[0] == '[') {
    size_t rb = hostpart.find(']');
    if (rb == std::string_view::npos) return Error{"URI: unterminated IPv6 reference"};
    u.host = hostpart.substr(1, rb - 1);
    if (!valid_ipv6(u.host)) return Error{"URI: bad IPv6 reference"};
    u.host_type = HostType::IPv6;
    hend = rb + 1;
  } else {
    hend = 0;
    while (hend < hostpart.size() && hostpart[hend] != ':' && hostpart[hend] != ';') ++hend;
    u.host = hostpart.substr(0, hend);
    if (!valid_hostname(u.host)) return Error{"URI: bad host"};
    // A host made of digits and dots is an IPv4 address, and must be a valid one.
    bool numeric = std::all_of(u.host.begin(), u.host.end(),
                               [](char c) { return is_digit(c) || c == '.'; });
    if (numeric) {
      if (!valid_ipv4(u.host)) return Error{"URI: bad IPv4 address"};
      u.host_type = HostType::IPv4;
    } else {
      u.host_type = HostType::Name;
    }
  }
  std::string_view after = hostpart.substr(hend);
  if (!after.empty() && after[0] == ':') {
    size_t pe = 1;
    while (pe < after.size() && is_digit(after[pe])) ++pe;
    auto port = parse_uint(after.substr(1, pe - 1), 65535);
    if (!port || *port == 0) return Error{"URI: bad port"};
    u.port = static_cast<uint16_t>(*port);
    after = after.substr(pe);
  }
  if (!after.empty()) {
    if (after[0] != ';') return Error{"URI: junk after host"};
    u.params = after.substr(1);
    // Every parameter needs a name.
    size_t i = 0;
    while (i <= u.params.size()) {
      size_t e = u.params.find(';', i);
      if (e == std::string_view::npos) e = u.params.size();
      std::string_view p = u.params.substr(i, e - i);
      if (p.empty() || p[0] == '=') return Error{"URI: empty parameter"};
      if (e == u.params.size()) break;
      i = e + 1;
    }
  }
  return u;
}

namespace {

bool equal_unescaped(std::string_view a, std::string_view b, bool icase) {
  if (a.find('%') == std::string_view::npos && b.find('%') == std::string_view::npos)
    return icase ? iequals(a, b) : a == b;
  std::string ua, ub;
  unescape(a, ua);
  unescape(b, ub);
  return icase ? iequals(ua, ub) : ua == ub;
}

template <class F>
void for_each_param(std::string_view params, char sep, F&& f) {
  size_t i = 0;
  while (i < params.size()) {
    size_t e = params.find(sep, i);
    if (e == std::string_view::npos) e = params.size();
    std::string_view p = params.substr(i, e - i);
    size_t eq = p.find('=');
    f(p.substr(0, eq), eq == std::string_view::npos ? std::string_view{} : p.substr(eq + 1));
    i = e + 1;
  }
}

bool params_equal(const Uri& a, const Uri& b) {
  // §19.1.4: user, ttl, method, maddr, transport must match if present in either;
  // any other parameter is compared only when present in both.
  static constexpr std::string_view kSpecial[] = {"user", "ttl", "method", "maddr", "transport"};
  for (auto name : kSpecial) {
    auto pa = a.param(name), pb = b.param(name);
    if (pa.has_value() != pb.has_value()) return false;
    if (pa && !equal_unescaped(*pa, *pb, true)) return false;
  }
  bool ok = true;
  for_each_param(a.params, ';', [&](std::string_view n, std::string_view v) {
    auto pb = b.param(n);
    if (pb && !equal_unescaped(v, *pb, true)) ok = false;
  });
  return ok;
}

bool headers_equal(const Uri& a, const Uri& b) {
  auto find_header = [](std::string_view hs, std::string_view name)
      -> std::optional<std::string_view> {
    std::optional<std::string_view> out;
    for_each_param(hs, '&', [&](std::string_view n, std::string_view v) {
      if (!out && equal_unescaped(n, name, true)) out = v;
    });
    return out;
  };
  bool ok = true;
  auto check = [&](const Uri& x, const Uri& y) {
    for_each_param(x.headers, '&', [&](std::string_view n, std::string_view v) {
      auto other = find_header(y.headers, n);
      if (!other || !equal_unescaped(v, *other, false)) ok = false;
    });
  };
  check(a, b);
  check(b, a);
  return ok;
}

}  // namespace

bool uri_equal(const Uri& a, const Uri& b) {
  if (a.scheme != b.scheme) return false;
  if (a.scheme == Scheme::Other) return iequals(a.scheme_raw, b.scheme_raw) && a.opaque == b.opaque;
  if (a.scheme == Scheme::Tel) return equal_unescaped(a.user, b.user, true) && params_equal(a, b);
  if (a.has_user != b.has_user || !equal_unescaped(a.user, b.user, false)) return false;
  if (a.has_password != b.has_password || !equal_unescaped(a.password, b.password, false))
    return false;
  if (!iequals(a.host, b.host) || a.port != b.port) return false;
  return params_equal(a, b) && headers_equal(a, b);
}

std::string canonical_aor(const Uri& uri) {
  if (!uri.is_sip()) return {};
  std::string out;
  out.reserve(uri.user.size() + uri.host.size() + 8);
  out += uri.scheme == Scheme::Sips ? "sips:" : "sip:";
  if (uri.has_user) {
    unescape(uri.user, out);
    out += '@';
  }
  if (uri.host_type == HostType::IPv6) out += '[';
  for (char c : uri.host) out += ascii_lower(c);
  if (uri.host_type == HostType::IPv6) out += ']';
  return out;
}

}  // namespace sb::core
