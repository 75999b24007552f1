#include "core/uri.h"

#include "core/text.h"

namespace sb::core {

namespace {

constexpr size_t npos = std::string_view::npos;

// ---- %-escapes --------------------------------------------------------------------------

// One unit of an escaped string, normalised for comparison (§19.1.4): a character, or, for
// an escape of anything but an unreserved character, 256 + the escaped octet (so "%3B"
// differs from ";" but "%61" equals "a"). -1 at the end.
int next_unit(std::string_view s, size_t& i, bool icase) {
  if (i >= s.size()) return -1;
  char c = s[i];
  if (c == '%' && i + 2 < s.size() && is_hex(s[i + 1]) && is_hex(s[i + 2])) {
    char d = static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
    i += 3;
    if (chars::is(d, chars::kUnreserved)) return static_cast<unsigned char>(icase ? ascii_lower(d) : d);
    return 256 + static_cast<unsigned char>(d);
  }
  ++i;
  return static_cast<unsigned char>(icase ? ascii_lower(c) : c);
}

bool equal_escaped(std::string_view a, std::string_view b, bool icase) {
  if (a.find('%') == npos && b.find('%') == npos) return icase ? iequals(a, b) : a == b;
  size_t i = 0, j = 0;
  while (true) {
    int x = next_unit(a, i, icase), y = next_unit(b, j, icase);
    if (x != y) return false;
    if (x < 0) return true;
  }
}

void append_normalised(std::string& out, std::string_view s) {
  static constexpr char kHexDigits[] = "0123456789ABCDEF";
  size_t i = 0;
  while (true) {
    int u = next_unit(s, i, false);
    if (u < 0) return;
    if (u < 256) {
      out.push_back(static_cast<char>(u));
    } else {
      out.push_back('%');
      out.push_back(kHexDigits[(u - 256) >> 4]);
      out.push_back(kHexDigits[(u - 256) & 15]);
    }
  }
}

// ---- hosts ------------------------------------------------------------------------------

// Four dot-separated decimal parts of 1 to 3 digits, each at most 255 (leading zeros are
// accepted), in one pass: every URI host of a call on an IP network comes through here.
bool valid_ipv4(std::string_view h) {
  int dots = 0, digits = 0;
  unsigned part = 0;
  for (const char c : h) {
    if (c == '.') {
      if (digits == 0 || ++dots > 3) return false;
      digits = 0;
      part = 0;
      continue;
    }
    const unsigned d = static_cast<unsigned char>(c) - unsigned('0');
    if (d > 9 || ++digits > 3) return false;
    part = part * 10 + d;
    if (part > 255) return false;
  }
  return dots == 3 && digits > 0;
}

bool valid_ipv6(std::string_view h) {
  // Hex groups of at most four digits between colons, optionally ending in a dotted IPv4
  // address. Empty groups are tolerated beyond the single "::" (RFC 5118 §4.10 asks us to
  // accept the three-colon form).
  if (h.size() < 2 || h.size() > 45) return false;
  size_t last_colon = h.rfind(':');
  if (last_colon == npos) return false;
  std::string_view tail = slice(h, last_colon + 1);
  std::string_view groups = slice(h, 0, last_colon + 1);
  if (tail.find('.') != npos) {
    if (!valid_ipv4(tail)) return false;
  } else {
    groups = h;
  }
  int colons = 0, run = 0;
  for (char c : groups) {
    if (c == ':') {
      ++colons;
      run = 0;
    } else if (is_hex(c) && ++run <= 4) {
      continue;
    } else {
      return false;
    }
  }
  return colons >= 2 && colons <= 8;
}

bool valid_hostname(std::string_view h) {
  if (h.empty() || h.size() > 255) return false;
  return is_alnum(h[0]) || h[0] == '_';
}

}  // namespace

// ---- parameters -------------------------------------------------------------------------

std::optional<std::string_view> find_param(std::string_view params, std::string_view name) {
  const size_t n = params.size();
  size_t i = 0;
  while (i < n) {
    i = skip_lws(params, i);
    size_t ns = i;
    while (i < n && params[i] != '=' && params[i] != ';' && !is_lws_char(params[i])) ++i;
    std::string_view pname = slice(params, ns, i - ns);
    i = skip_lws(params, i);
    bool has_value = false;
    size_t vb = i, ve = i;
    if (i < n && params[i] == '=') {
      has_value = true;
      i = skip_lws(params, i + 1);
      vb = i;
      size_t q = (i < n && params[i] == '"') ? scan_quoted(params, i) : npos;
      if (q != npos) {
        i = q;
      } else {
        while (i < n && params[i] != ';' && !is_lws_char(params[i])) ++i;
      }
      ve = i;
    }
    if (!pname.empty() && equal_escaped(pname, name, true))
      return has_value ? slice(params, vb, ve - vb) : std::string_view{};
    size_t semi = find_unquoted(params, ';', i);
    if (semi == npos) break;
    i = semi + 1;
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
  const char* end = raw.data() + raw.size();
  if (host_type == HostType::IPv6 && b > raw.data() && e < end) {
    --b;
    ++e;
  }
  if (port && e < end && *e == ':') {
    ++e;
    while (e < end && is_digit(*e)) ++e;
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

// ---- parsing ----------------------------------------------------------------------------

Status parse_uri(std::string_view text, Uri& u) {
  u = Uri{};
  u.raw = text;
  const size_t n = text.size();
  if (n == 0) return Error{"empty URI"};
  if (!is_alpha(text[0])) return Error{"bad URI scheme"};
  size_t i = 1;
  while (i < n && (is_alnum(text[i]) || text[i] == '+' || text[i] == '-' || text[i] == '.')) ++i;
  if (i >= n || text[i] != ':') return Error{"bad URI scheme"};
  u.scheme_raw = slice(text, 0, i);
  if (i == 3 && iequals(u.scheme_raw, "sip")) u.scheme = Scheme::Sip;
  else if (i == 4 && iequals(u.scheme_raw, "sips")) u.scheme = Scheme::Sips;
  else if (i == 3 && iequals(u.scheme_raw, "tel")) u.scheme = Scheme::Tel;
  std::string_view rest = slice(text, i + 1);
  const size_t rn = rest.size();

  // One pass: every character allowed, every escape complete, where the userinfo ends.
  size_t at = npos;
  for (size_t k = 0; k < rn; ++k) {
    const char c = rest[k];
    if (chars::is(c, chars::kUriPlain)) continue;
    if (c == '%') {
      if (k + 2 >= rn || !is_hex(rest[k + 1]) || !is_hex(rest[k + 2]))
        return Error{"bad %-escape in URI"};
      k += 2;
    } else if (c == '@') {
      if (at == npos) at = k;
    } else {
      return Error{"illegal character in URI"};
    }
  }

  if (u.scheme == Scheme::Other) {
    // Unknown schemes stay opaque, so the proxy can answer 416 (RFC 3261 §16.3 step 2).
    if (rest.empty()) return Error{"empty URI"};
    u.opaque = rest;
    return {};
  }
  if (u.scheme == Scheme::Tel) {
    size_t semi = rest.find(';');
    u.user = slice(rest, 0, semi);
    u.has_user = true;
    if (u.user.empty()) return Error{"empty tel number"};
    if (semi != npos) u.params = slice(rest, semi + 1);
    u.opaque = rest;
    return {};
  }

  // sip(s): [ userinfo "@" ] hostport uri-parameters [ headers ]. '@' appears only as the
  // end of the userinfo: params and headers must escape it, the user may hold ';' and '?'.
  size_t hs = 0;
  if (at != npos) {
    std::string_view userinfo = slice(rest, 0, at);
    size_t pc = userinfo.find(':');
    u.user = slice(userinfo, 0, pc);
    u.has_user = true;
    if (pc != npos) {
      u.password = slice(userinfo, pc + 1);
      u.has_password = true;
    }
    if (u.user.empty()) return Error{"empty URI user"};
    hs = at + 1;
  }
  if (hs >= rn) return Error{"missing URI host"};
  size_t p;
  if (rest[hs] == '[') {
    size_t rb = rest.find(']', hs);
    if (rb == npos) return Error{"unterminated IPv6 reference"};
    u.host = slice(rest, hs + 1, rb - hs - 1);
    if (!valid_ipv6(u.host)) return Error{"bad IPv6 reference"};
    u.host_type = HostType::IPv6;
    p = rb + 1;
  } else {
    // Scan the hostname, noting whether it holds anything but digits and dots.
    uint16_t seen = 0;
    p = hs;
    while (p < rn) {
      const uint16_t cls = chars::kTable[static_cast<unsigned char>(rest[p])];
      if (!(cls & chars::kHost)) break;
      seen |= cls;
      ++p;
    }
    u.host = slice(rest, hs, p - hs);
    if (u.host.empty()) return Error{"missing URI host"};
    if (!(seen & chars::kHostAlpha)) {
      if (u.host.find('.') == npos || !valid_ipv4(u.host)) return Error{"bad URI host"};
      u.host_type = HostType::IPv4;
    } else {
      if (!valid_hostname(u.host)) return Error{"bad URI host"};
      u.host_type = HostType::Name;
    }
  }
  if (p < rn && rest[p] == ':') {
    size_t pe = scan_while(rest, p + 1, chars::kDigit);
    auto port = parse_uint(slice(rest, p + 1, pe - p - 1), 65535);
    if (!port || *port == 0) return Error{"bad URI port"};
    u.port = static_cast<uint16_t>(*port);
    p = pe;
  }
  if (p < rn && rest[p] == ';') {
    size_t q = rest.find('?', p + 1);
    if (q == npos) q = rn;
    u.params = slice(rest, p + 1, q - p - 1);
    // Every parameter needs a name.
    size_t b = 0;
    while (true) {
      size_t e = u.params.find(';', b);
      if (e == npos) e = u.params.size();
      if (e == b || u.params[b] == '=') return Error{"empty URI parameter"};
      if (e == u.params.size()) break;
      b = e + 1;
    }
    p = q;
  }
  if (p < rn && rest[p] == '?') {
    u.headers = slice(rest, p + 1);
    p = rn;
  }
  if (p != rn) return Error{"junk after URI host"};
  return {};
}

Result<Uri> parse_uri(std::string_view text) {
  Uri u;
  Status st = parse_uri(text, u);
  if (!st) return st.error();
  return u;
}

// ---- comparison -------------------------------------------------------------------------

namespace {

// f(name, value) for each element of a ';' or '&' separated list; false stops.
template <class F>
void for_each_item(std::string_view list, char sep, F&& f) {
  size_t i = 0;
  while (i < list.size()) {
    size_t e = list.find(sep, i);
    if (e == npos) e = list.size();
    std::string_view item = slice(list, i, e - i);
    size_t eq = item.find('=');
    if (!f(slice(item, 0, eq), eq == npos ? std::string_view{} : slice(item, eq + 1))) return;
    i = e + 1;
  }
}

size_t count_items(std::string_view list, char sep) {
  if (list.empty()) return 0;
  size_t c = 1;
  for (char ch : list) c += ch == sep;
  return c;
}

// Beyond this many parameters or headers, two URIs compare equal only when those parts are
// written identically: it keeps comparison linear on hostile input.
constexpr size_t kMaxCompared = 32;

bool params_equal(const Uri& a, const Uri& b) {
  if (count_items(a.params, ';') > kMaxCompared || count_items(b.params, ';') > kMaxCompared)
    return a.params == b.params;
  // §19.1.4: user, ttl, method, maddr and transport must match when present in either;
  // any other parameter is compared only when present in both.
  static constexpr std::string_view kSpecial[] = {"user", "ttl", "method", "maddr", "transport"};
  for (auto name : kSpecial) {
    auto pa = a.param(name), pb = b.param(name);
    if (pa.has_value() != pb.has_value()) return false;
    if (pa && !equal_escaped(*pa, *pb, true)) return false;
  }
  bool ok = true;
  for_each_item(a.params, ';', [&](std::string_view n, std::string_view v) {
    auto pb = b.param(n);
    if (pb && !equal_escaped(v, *pb, true)) ok = false;
    return ok;
  });
  return ok;
}

bool headers_contained(std::string_view x, std::string_view y) {
  bool ok = true;
  for_each_item(x, '&', [&](std::string_view n, std::string_view v) {
    bool found = false;
    for_each_item(y, '&', [&](std::string_view n2, std::string_view v2) {
      if (equal_escaped(n, n2, true)) {
        found = true;
        ok = equal_escaped(v, v2, false);
        return false;
      }
      return true;
    });
    ok = ok && found;
    return ok;
  });
  return ok;
}

bool headers_equal(const Uri& a, const Uri& b) {
  // §19.1.4: header components are never ignored; each must be in both and match.
  if (count_items(a.headers, '&') > kMaxCompared || count_items(b.headers, '&') > kMaxCompared)
    return a.headers == b.headers;
  return headers_contained(a.headers, b.headers) && headers_contained(b.headers, a.headers);
}

}  // namespace

bool uri_equal(const Uri& a, const Uri& b) {
  // The same text is the same URI (each rule below is reflexive): the common case of a
  // refresh, compared without walking the parameters.
  if (!a.raw.empty() && a.raw == b.raw) return true;
  if (a.scheme != b.scheme) return false;
  if (a.scheme == Scheme::Other)
    return iequals(a.scheme_raw, b.scheme_raw) && a.opaque == b.opaque;
  if (a.scheme == Scheme::Tel) return equal_escaped(a.user, b.user, true) && params_equal(a, b);
  // Userinfo is case-sensitive; host, params and header names are not.
  if (a.has_user != b.has_user || !equal_escaped(a.user, b.user, false)) return false;
  if (a.has_password != b.has_password || !equal_escaped(a.password, b.password, false))
    return false;
  if (!equal_escaped(a.host, b.host, true) || a.port != b.port) return false;
  return params_equal(a, b) && headers_equal(a, b);
}

std::string canonical_aor(const Uri& uri) {
  if (!uri.is_sip()) return {};
  std::string out;
  out.reserve(uri.user.size() + uri.host.size() + 8);
  out += uri.scheme == Scheme::Sips ? "sips:" : "sip:";
  if (uri.has_user) {
    append_normalised(out, uri.user);
    out += '@';
  }
  if (uri.host_type == HostType::IPv6) out += '[';
  for (char c : uri.host) out += ascii_lower(c);
  if (uri.host_type == HostType::IPv6) out += ']';
  return out;
}

}  // namespace sb::core
