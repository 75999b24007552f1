#include "core/sip_headers.h"

#include <cstring>

#include "core/text.h"

namespace sb::core {

namespace {

constexpr size_t npos = std::string_view::npos;

// The value of a generic-param starting at s[i] (after EQUAL): a quoted-string or a
// token/host. Returns the index past it, or npos when there is none.
size_t scan_gen_value(std::string_view s, size_t i) {
  if (i < s.size() && s[i] == '"') return scan_quoted(s, i);
  size_t e = scan_while(s, i, chars::kGenValue);
  return e == i ? npos : e;
}

// generic-param *( SEMI generic-param ) with SWS around ';' and '=' (leading ';' removed).
bool valid_params(std::string_view s) {
  const size_t n = s.size();
  size_t i = 0;
  while (true) {
    i = skip_lws(s, i);
    size_t e = scan_while(s, i, chars::kToken);
    if (e == i) return false;
    i = skip_lws(s, e);
    if (i < n && s[i] == '=') {
      i = scan_gen_value(s, skip_lws(s, i + 1));
      if (i == npos) return false;
      i = skip_lws(s, i);
    }
    if (i >= n) return true;
    if (s[i] != ';') return false;
    ++i;
  }
}

bool valid_ipv6_chars(std::string_view h) {
  if (h.size() < 2 || h.size() > 45) return false;
  for (char c : h)
    if (!is_hex(c) && c != ':' && c != '.') return false;
  return h.find(':') != npos;
}

Error via_error(const char* reason) { return Error{reason, 400, "Via"}; }

}  // namespace

// ---- Via --------------------------------------------------------------------------------

std::optional<std::string_view> Via::param(std::string_view name) const {
  return find_param(params, name);
}

Status parse_via(std::string_view value, Via& v) {
  v = Via{};
  v.raw = value;
  const size_t n = value.size();
  // sent-protocol = protocol-name SLASH protocol-version SLASH transport, SLASH = SWS "/" SWS
  size_t i = skip_lws(value, 0);
  const size_t pb = i;
  size_t e;
  bool supported;
  if (n - i > 8 && std::memcmp(value.data() + i, "SIP/2.0/", 8) == 0) {
    // The usual spelling.
    v.protocol = slice(value, i, 7);
    supported = true;
    i = skip_lws(value, i + 8);
  } else {
    e = scan_while(value, i, chars::kToken);
    if (e == i) return via_error("missing sent-protocol");
    std::string_view name = slice(value, i, e - i);
    i = skip_lws(value, e);
    if (i >= n || value[i] != '/') return via_error("malformed sent-protocol");
    i = skip_lws(value, i + 1);
    e = scan_while(value, i, chars::kToken);
    if (e == i) return via_error("malformed sent-protocol");
    std::string_view version = slice(value, i, e - i);
    v.protocol = slice(value, pb, e - pb);
    i = skip_lws(value, e);
    if (i >= n || value[i] != '/') return via_error("malformed sent-protocol");
    i = skip_lws(value, i + 1);
    // A version we do not speak is reported after the sent-by is read, so an answer can
    // still be sent there.
    supported = name.size() == 3 && iequals(name, "SIP") && version == "2.0";
  }
  e = scan_while(value, i, chars::kToken);
  if (e == i) return via_error("missing transport");
  v.transport = slice(value, i, e - i);
  i = skip_lws(value, e);
  if (i == e || i >= n) return via_error("missing sent-by");

  // sent-by = host [ COLON port ]
  const size_t sb = i;
  if (value[i] == '[') {
    size_t rb = value.find(']', i);
    if (rb == npos) return via_error("unterminated IPv6 reference");
    std::string_view host = slice(value, i + 1, rb - i - 1);
    if (!valid_ipv6_chars(host)) return via_error("bad IPv6 reference");
    v.host = host;
    v.host_is_ipv6 = true;
    i = rb + 1;
  } else {
    e = scan_while(value, i, chars::kHost);
    if (e == i) return via_error("missing sent-by");
    v.host = slice(value, i, e - i);
    i = e;
  }
  size_t j = skip_lws(value, i);
  if (j < n && value[j] == ':') {
    j = skip_lws(value, j + 1);
    size_t pe = scan_while(value, j, chars::kDigit);
    auto port = parse_uint(slice(value, j, pe - j), 65535);
    if (!port || *port == 0) return via_error("bad sent-by port");
    v.port = static_cast<uint16_t>(*port);
    i = pe;
  }
  v.sent_by = slice(value, sb, i - sb);

  // *( SEMI via-params ): one pass, the first of each known parameter kept.
  i = skip_lws(value, i);
  if (i < n) {
    if (value[i] != ';') return via_error("junk after sent-by");
    v.params = slice(value, i + 1);
    bool seen_branch = false, seen_received = false, seen_maddr = false;
    size_t k = i + 1;
    while (true) {
      k = skip_lws(value, k);
      size_t ne = scan_while(value, k, chars::kToken);
      if (ne == k) return via_error("empty or malformed parameter");
      std::string_view pn = slice(value, k, ne - k);
      k = skip_lws(value, ne);
      std::string_view pv;
      bool has_value = false;
      if (k < n && value[k] == '=') {
        size_t vs = skip_lws(value, k + 1);
        size_t ve = scan_gen_value(value, vs);
        if (ve == npos) return via_error("empty or malformed parameter");
        pv = slice(value, vs, ve - vs);
        has_value = true;
        k = skip_lws(value, ve);
      }
      switch (pn.size()) {
        case 6:
          if (!seen_branch && iequals(pn, "branch")) {
            if (!has_value) return via_error("empty branch");
            v.branch = pv;
            seen_branch = true;
          }
          break;
        case 8:
          if (!seen_received && iequals(pn, "received")) {
            if (!has_value) return via_error("empty received");
            v.received = pv;
            seen_received = true;
          }
          break;
        case 5:
          if (!seen_maddr && iequals(pn, "maddr")) {
            if (!has_value) return via_error("empty maddr");
            v.maddr = pv;
            seen_maddr = true;
          } else if (!v.has_rport && iequals(pn, "rport")) {
            // RFC 3581: "rport" alone in requests, "rport=port" in what we forward.
            if (has_value && !parse_uint(pv, 65535)) return via_error("bad rport");
            v.has_rport = true;
            v.rport = pv;
          }
          break;
        case 3:
          if (iequals(pn, "ttl") && (!has_value || !parse_uint(pv, 255)))
            return via_error("bad ttl");
          break;
        default:
          break;
      }
      if (k >= n) break;
      if (value[k] != ';') return via_error("empty or malformed parameter");
      ++k;
    }
  }
  if (!supported) return via_error("unsupported protocol");
  return {};
}

Result<Via> parse_via(std::string_view value) {
  Via v;
  Status st = parse_via(value, v);
  if (!st) return st.error();
  return v;
}

// ---- name-addr / addr-spec --------------------------------------------------------------

std::optional<std::string_view> NameAddr::param(std::string_view name) const {
  return find_param(params, name);
}

Status parse_name_addr(std::string_view value, NameAddr& na, bool with_uri) {
  na = NameAddr{};
  na.raw = value;
  const std::string_view s = trim(value);
  const size_t n = s.size();
  if (n == 0) return Error{"empty value"};
  size_t lt = npos;
  if (s[0] == '"') {
    size_t q = scan_quoted(s, 0);
    if (q == npos) return Error{"unterminated or malformed quoted string"};
    na.display = slice(s, 1, q - 2);
    size_t i = skip_lws(s, q);
    if (i >= n || s[i] != '<') return Error{"display name without <URI>"};
    lt = i;
  } else if (s[0] == '<') {
    lt = 0;
  } else {
    // display-name = *(token LWS) before '<', or no '<' at all: an addr-spec. UTF-8 is
    // read as token characters too: phones send it unquoted and it delimits nothing.
    size_t i = 0;
    while (i < n && (chars::is(s[i], chars::kToken | chars::kLws) ||
                     static_cast<unsigned char>(s[i]) >= 0x80))
      ++i;
    if (i < n && s[i] == '<') {
      lt = i;
      na.display = trim(slice(s, 0, i));
    } else if (find_unquoted(s, '<', i) != npos) {
      return Error{"unquoted display name with special characters"};
    }
  }
  bool has_params = false;
  if (lt != npos) {
    size_t gt = s.find('>', lt + 1);
    if (gt == npos) return Error{"missing '>'"};
    na.uri_text = slice(s, lt + 1, gt - lt - 1);
    if (na.uri_text.empty()) return Error{"empty URI"};
    if (is_lws_char(na.uri_text.front()) || is_lws_char(na.uri_text.back()))
      return Error{"whitespace inside <URI>"};
    na.angle = true;
    size_t i = skip_lws(s, gt + 1);
    if (i < n) {
      if (s[i] != ';') return Error{"junk after URI"};
      na.params = trim(slice(s, i + 1));
      has_params = true;
    }
  } else {
    // addr-spec: ends at ';' (header params follow) or LWS. §20: a URI with ',', '?' or
    // ';' must be written in <>, so here none of them belongs to the URI.
    size_t i = 0;
    while (i < n && s[i] != ';' && !is_lws_char(s[i])) {
      if (s[i] == '?' || s[i] == ',') return Error{"URI with '?' or ',' outside <>"};
      ++i;
    }
    na.uri_text = slice(s, 0, i);
    i = skip_lws(s, i);
    if (i < n) {
      if (s[i] != ';') return Error{"junk after URI"};
      na.params = trim(slice(s, i + 1));
      has_params = true;
    }
  }
  if (has_params && !valid_params(na.params)) return Error{"empty or malformed parameter"};
  if (!with_uri) return {};
  return parse_uri(na.uri_text, na.uri);
}

Result<NameAddr> parse_name_addr(std::string_view value) {
  NameAddr na;
  Status st = parse_name_addr(value, na);
  if (!st) return st.error();
  return na;
}

// ---- Contact ----------------------------------------------------------------------------

Result<ContactValue> parse_contact(std::string_view value) {
  ContactValue c;
  if (trim(value) == "*") {
    c.star = true;
    return c;
  }
  Status st = parse_name_addr(value, c.addr);
  if (!st) return in_header(st.error(), "Contact");
  if (auto q = c.addr.param("q")) {
    // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
    std::string_view s = *q;
    if (s.empty() || (s[0] != '0' && s[0] != '1')) return Error{"bad q value", 400, "Contact"};
    uint32_t v = uint32_t(s[0] - '0') * 1000;
    if (s.size() > 1) {
      if (s[1] != '.' || s.size() > 5) return Error{"bad q value", 400, "Contact"};
      uint32_t scale = 100;
      for (size_t k = 2; k < s.size(); ++k, scale /= 10) {
        if (!is_digit(s[k])) return Error{"bad q value", 400, "Contact"};
        v += uint32_t(s[k] - '0') * scale;
      }
    }
    if (v > 1000) return Error{"bad q value", 400, "Contact"};
    c.q1000 = static_cast<uint16_t>(v);
  }
  if (auto e = c.addr.param("expires")) {
    if (auto v = parse_uint(*e, 0xffffffffull)) c.expires = static_cast<uint32_t>(*v);
  }
  return c;
}

// ---- CSeq, auth, scalars ----------------------------------------------------------------

Result<CSeq> parse_cseq(std::string_view value) {
  CSeq c;
  std::string_view s = trim(value);
  size_t i = scan_while(s, 0, chars::kDigit);
  // RFC 3261 §8.1.1.5: the sequence number must be less than 2**31.
  auto n = parse_uint(slice(s, 0, i), 0x7fffffffull);
  if (!n) return Error{"bad sequence number", 400, "CSeq"};
  c.number = static_cast<uint32_t>(*n);
  size_t j = skip_lws(s, i);
  if (j == i) return Error{"missing method", 400, "CSeq"};
  c.method_text = slice(s, j);
  if (!is_token(c.method_text)) return Error{"bad method", 400, "CSeq"};
  c.method = method_from_name(c.method_text);
  return c;
}

std::optional<std::string_view> AuthHeader::param(std::string_view name) const {
  std::optional<std::string_view> out;
  for_each_list_element(params, [&](std::string_view el) {
    size_t eq = el.find('=');
    if (eq == npos) return true;
    if (!iequals(trim(slice(el, 0, eq)), name)) return true;
    std::string_view v = trim(slice(el, eq + 1));
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = slice(v, 1, v.size() - 2);
    out = v;
    return false;
  });
  return out;
}

Result<AuthHeader> parse_auth(std::string_view value) {
  AuthHeader a;
  std::string_view s = trim(value);
  size_t e = scan_while(s, 0, chars::kToken);
  if (e == 0) return Error{"missing auth scheme"};
  if (e < s.size() && !is_lws_char(s[e])) return Error{"malformed auth scheme"};
  a.scheme = slice(s, 0, e);
  a.params = trim(slice(s, e));
  return a;
}

Result<uint32_t> parse_max_forwards(std::string_view value) {
  auto v = parse_uint(trim(value), 255);
  if (!v) return Error{"not a number from 0 to 255", 400, "Max-Forwards"};
  return static_cast<uint32_t>(*v);
}

Result<uint32_t> parse_delta_seconds(std::string_view value, const char* err) {
  auto v = parse_uint(trim(value), 0xffffffffull);
  if (!v) return Error{err};
  return static_cast<uint32_t>(*v);
}

}  // namespace sb::core
