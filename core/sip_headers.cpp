#include "core/sip_headers.h"

#include "core/text.h"

namespace sb::core {

size_t find_list_comma(std::string_view s, size_t from) { return find_unquoted(s, ',', from); }

namespace {

// Skip SWS (spaces, tabs and folded line ends).
size_t skip_lws(std::string_view s, size_t i) {
  while (i < s.size() && is_lws_char(s[i])) ++i;
  return i;
}

size_t scan_token(std::string_view s, size_t i) {
  while (i < s.size() && is_token_char(s[i])) ++i;
  return i;
}

// Validate a header-param list "a=b ; c ; d="x"" (leading ';' already removed).
bool valid_params(std::string_view params) {
  size_t i = 0;
  while (true) {
    size_t e = find_unquoted(params, ';', i);
    std::string_view p = trim(params.substr(i, e == std::string_view::npos ? std::string_view::npos
                                                                           : e - i));
    if (p.empty()) return false;
    size_t eq = p.find('=');
    std::string_view name = trim(p.substr(0, eq));
    if (!is_token(name)) return false;
    if (eq != std::string_view::npos) {
      std::string_view v = trim(p.substr(eq + 1));
      if (v.empty()) return false;
      if (v[0] == '"') {
        if (v.size() < 2 || v.back() != '"') return false;
      } else {
        for (char c : v)
          if (!is_token_char(c) && c != ':' && c != '[' && c != ']') return false;
      }
    }
    if (e == std::string_view::npos) return true;
    i = e + 1;
  }
}

}  // namespace

std::optional<std::string_view> Via::param(std::string_view name) const {
  return find_param(params, name);
}

Result<Via> parse_via(std::string_view value) {
  Via v;
  v.raw = value;
  // sent-protocol: name SLASH version SLASH transport, SLASH = SWS "/" SWS.
  size_t i = skip_lws(value, 0);
  size_t pb = i;
  size_t e = scan_token(value, i);
  if (e == i) return Error{"missing protocol"};
  std::string_view name = value.substr(i, e - i);
  i = skip_lws(value, e);
  if (i >= value.size() || value[i] != '/') return Error{"malformed sent-protocol"};
  i = skip_lws(value, i + 1);
  e = scan_token(value, i);
  if (e == i) return Error{"missing protocol version"};
  std::string_view version = value.substr(i, e - i);
  v.protocol = value.substr(pb, e - pb);
  i = skip_lws(value, e);
  if (i >= value.size() || value[i] != '/') return Error{"malformed sent-protocol"};
  i = skip_lws(value, i + 1);
  e = scan_token(value, i);
  if (e == i) return Error{"missing transport"};
  v.transport = value.substr(i, e - i);
  if (!iequals(name, "SIP") || version != "2.0") return Error{"unsupported protocol"};
  size_t after_transport = e;
  i = skip_lws(value, e);
  if (i == after_transport || i >= value.size()) return Error{"missing sent-by"};
  // sent-by = host [ COLON port ]
  size_t sb = i;
  if (value[i] == '[') {
    size_t rb = value.find(']', i);
    if (rb == std::string_view::npos) return Error{"unterminated IPv6 reference"};
    v.host = value.substr(i + 1, rb - i - 1);
    v.host_is_ipv6 = true;
    if (v.host.empty()) return Error{"missing sent-by"};
    i = rb + 1;
  } else {
    size_t h = i;
    while (i < value.size() && (is_alnum(value[i]) || value[i] == '-' || value[i] == '.' ||
                                value[i] == '_'))
      ++i;
    if (i == h) return Error{"missing sent-by"};
    v.host = value.substr(h, i - h);
  }
  size_t j = skip_lws(value, i);
  if (j < value.size() && value[j] == ':') {
    j = skip_lws(value, j + 1);
    size_t pe = j;
    while (pe < value.size() && is_digit(value[pe])) ++pe;
    auto port = parse_uint(value.substr(j, pe - j), 65535);
    if (!port || *port == 0) return Error{"bad sent-by port"};
    v.port = static_cast<uint16_t>(*port);
    i = pe;
  }
  v.sent_by = value.substr(sb, i - sb);
  i = skip_lws(value, i);
  if (i < value.size()) {
    if (value[i] != ';') return Error{"junk after sent-by"};
    v.params = value.substr(i + 1);
    if (!valid_params(v.params)) return Error{"empty or malformed parameter"};
    if (auto b = v.param("branch")) {
      if (b->empty()) return Error{"empty branch"};
      v.branch = *b;
    }
    if (auto r = v.param("received")) v.received = *r;
    if (auto m = v.param("maddr")) v.maddr = *m;
    if (auto r = v.param("rport")) {
      v.has_rport = true;
      v.rport = *r;
      if (!v.rport.empty() && !parse_uint(v.rport, 65535)) return Error{"bad rport"};
    }
  }
  return v;
}

std::optional<std::string_view> NameAddr::param(std::string_view name) const {
  return find_param(params, name);
}

Result<NameAddr> parse_name_addr(std::string_view value) {
  NameAddr na;
  na.raw = value;
  std::string_view s = trim(value);
  if (s.empty()) return Error{"empty value"};
  size_t i = 0;
  size_t lt = std::string_view::npos;
  if (s[0] == '"') {
    size_t q = 1;
    for (; q < s.size(); ++q) {
      if (s[q] == '\\') { ++q; continue; }
      if (s[q] == '"') break;
    }
    if (q >= s.size()) return Error{"unterminated quoted string"};
    na.display = s.substr(1, q - 1);
    i = skip_lws(s, q + 1);
    if (i >= s.size() || s[i] != '<') return Error{"display name without <URI>"};
    lt = i;
  } else {
    lt = find_unquoted(s, '<');
    // find_unquoted skips <...>, so look for '<' directly outside quotes.
    lt = s.find('<');
    if (lt != std::string_view::npos) {
      std::string_view disp = trim(s.substr(0, lt));
      // Unquoted display name: *(token LWS).
      for (char c : disp)
        if (!is_token_char(c) && !is_lws_char(c)) return Error{"unquoted display name with special characters"};
      na.display = disp;
    }
  }
  if (lt != std::string_view::npos) {
    size_t gt = s.find('>', lt);
    if (gt == std::string_view::npos) return Error{"missing '>'"};
    na.uri_text = s.substr(lt + 1, gt - lt - 1);
    if (na.uri_text.empty()) return Error{"empty URI"};
    if (is_lws_char(na.uri_text.front()) || is_lws_char(na.uri_text.back()))
      return Error{"whitespace inside <URI>"};
    na.angle = true;
    i = skip_lws(s, gt + 1);
    if (i < s.size()) {
      if (s[i] != ';') return Error{"junk after URI"};
      na.params = s.substr(i + 1);
    }
  } else {
    // addr-spec: the URI ends at the first ';' (header params); it may not carry
    // headers, commas or spaces (§20: those need <...>).
    size_t semi = s.find(';');
    na.uri_text = trim(s.substr(0, semi));
    if (semi != std::string_view::npos) na.params = s.substr(semi + 1);
    for (char c : na.uri_text)
      if (c == '?' || c == ',' || is_lws_char(c)) return Error{"URI with '?', ',' or space must be in <>"};
  }
  if (!na.params.empty() && !valid_params(na.params)) return Error{"empty or malformed parameter"};
  auto uri = parse_uri(na.uri_text);
  if (!uri) return uri.error();
  na.uri = *uri;
  return na;
}

Result<ContactValue> parse_contact(std::string_view value) {
  ContactValue c;
  if (trim(value) == "*") {
    c.star = true;
    return c;
  }
  auto na = parse_name_addr(value);
  if (!na) return na.error();
  c.addr = *na;
  if (auto q = c.addr.param("q")) {
    // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
    std::string_view s = *q;
    if (s.empty() || (s[0] != '0' && s[0] != '1')) return Error{"bad q value"};
    uint32_t v = uint32_t(s[0] - '0') * 1000;
    if (s.size() > 1) {
      if (s[1] != '.' || s.size() > 5) return Error{"bad q value"};
      uint32_t scale = 100;
      for (size_t k = 2; k < s.size(); ++k, scale /= 10) {
        if (!is_digit(s[k])) return Error{"bad q value"};
        v += uint32_t(s[k] - '0') * scale;
      }
    }
    if (v > 1000) return Error{"bad q value"};
    c.q1000 = static_cast<uint16_t>(v);
  }
  if (auto e = c.addr.param("expires")) {
    auto v = parse_uint(*e, 0xffffffffull);
    if (!v) return Error{"bad expires parameter"};
    c.expires = static_cast<uint32_t>(*v);
  }
  return c;
}

Result<CSeq> parse_cseq(std::string_view value) {
  CSeq c;
  std::string_view s = trim(value);
  size_t i = 0;
  while (i < s.size() && is_digit(s[i])) ++i;
  // RFC 3261 §8.1.1.5: the sequence number must be less than 2**31.
  auto n = parse_uint(s.substr(0, i), 0x7fffffffull);
  if (!n) return Error{"bad sequence number"};
  c.number = static_cast<uint32_t>(*n);
  size_t j = skip_lws(s, i);
  if (j == i) return Error{"missing method"};
  c.method_text = s.substr(j);
  if (!is_token(c.method_text)) return Error{"bad method"};
  c.method = method_from_name(c.method_text);
  return c;
}

std::optional<std::string_view> AuthHeader::param(std::string_view name) const {
  std::optional<std::string_view> out;
  for_each_list_element(params, [&](std::string_view el) {
    size_t eq = el.find('=');
    if (eq == std::string_view::npos) return true;
    if (!iequals(trim(el.substr(0, eq)), name)) return true;
    std::string_view v = trim(el.substr(eq + 1));
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    out = v;
    return false;
  });
  return out;
}

Result<AuthHeader> parse_auth(std::string_view value) {
  AuthHeader a;
  std::string_view s = trim(value);
  size_t e = scan_token(s, 0);
  if (e == 0) return Error{"missing auth scheme"};
  a.scheme = s.substr(0, e);
  a.params = trim(s.substr(e));
  return a;
}

Result<uint32_t> parse_max_forwards(std::string_view value) {
  auto v = parse_uint(trim(value), 255);
  if (!v) return Error{"not a number from 0 to 255"};
  return static_cast<uint32_t>(*v);
}

Result<uint32_t> parse_delta_seconds(std::string_view value, const char* err) {
  auto v = parse_uint(trim(value), 0xffffffffull);
  if (!v) return Error{err};
  return static_cast<uint32_t>(*v);
}

}  // namespace sb::core
