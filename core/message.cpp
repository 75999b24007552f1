#include "core/message.h"

#include <algorithm>
#include <cstring>

#include "core/text.h"

namespace sb::core {

namespace {

constexpr size_t npos = std::string_view::npos;

// Offset of the next '\n' at or after `from`, npos when there is none.
inline size_t find_lf(std::string_view s, size_t from) {
  if (from >= s.size()) return npos;
  const void* p = std::memchr(s.data() + from, '\n', s.size() - from);
  return p ? static_cast<size_t>(static_cast<const char*>(p) - s.data()) : npos;
}

bool valid_version(std::string_view v) {
  // "SIP/" 1*DIGIT "." 1*DIGIT, "SIP" case-insensitive.
  if (v.size() < 7 || !iequals(slice(v, 0, 4), "SIP/")) return false;
  size_t dot = v.find('.', 4);
  if (dot == npos || dot == 4 || dot + 1 == v.size()) return false;
  for (size_t i = 4; i < v.size(); ++i)
    if (i != dot && !is_digit(v[i])) return false;
  return true;
}

bool is_sip20(std::string_view v) { return v.size() == 7 && iequals(v, "SIP/2.0"); }

bool valid_call_id(std::string_view v) {
  // word [ "@" word ], read liberally: printable ASCII without whitespace (the URI class
  // plus the few printable characters URIs exclude).
  if (v.empty()) return false;
  for (char c : v)
    if (!chars::is(c, chars::kVisible)) return false;
  return true;
}

// Keeps the first fault; later ones are checked for their side effects only.
struct FirstError {
  Status st;
  void note(const Status& s) {
    if (st.ok() && !s.ok()) st = s;
  }
  void note(const Error& e) { note(Status(e)); }
};

}  // namespace

void Message::reset() {
  headers_.clear();
  first_.fill(-1);
  counts_.fill(0);
  is_request_ = true;
  method_ = Method::Other;
  method_text_ = ruri_text_ = reason_ = {};
  ruri_ = Uri{};
  status_ = 0;
  top_via_ = Via{};
  has_via_ = via_usable_ = has_from_ = has_to_ = false;
  via_count_ = 0;
  call_id_ = {};
  cseq_ = CSeq{};
  from_ = to_ = NameAddr{};
  max_forwards_ = -1;
  content_length_ = -1;
  body_ = {};
  headers_begin_ = headers_end_ = start_ = 0;
}

const Header* Message::find(std::string_view name) const {
  HeaderId id = header_id(name);
  if (id != HeaderId::Other) return find(id);
  for (const auto& h : headers_)
    if (h.id == HeaderId::Other && iequals(h.name, name)) return &h;
  return nullptr;
}

Status Message::parse_start_line(std::string_view line) {
  if (line.size() >= 4 && iequals(slice(line, 0, 4), "SIP/")) {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
    is_request_ = false;
    size_t sp = line.find(' ');
    std::string_view version = slice(line, 0, sp);
    if (sp == npos || !valid_version(version))
      return Error{"malformed SIP version", 400, "Status-Line"};
    if (!is_sip20(version)) return Error{"SIP version not supported", 505, "Status-Line"};
    std::string_view code = slice(line, sp + 1, 3);
    if (code.size() != 3 || !is_digit(code[0]) || !is_digit(code[1]) || !is_digit(code[2]) ||
        (line.size() > sp + 4 && line[sp + 4] != ' '))
      return Error{"status code is not three digits", 400, "Status-Line"};
    int status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    if (status < 100 || status > 699)
      return Error{"status code out of range", 400, "Status-Line"};
    status_ = status;
    reason_ = line.size() > sp + 5 ? slice(line, sp + 5) : std::string_view{};
    return {};
  }
  // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP between the three
  // (RFC 4475 §3.1.2.8-10: extra LWS is an error).
  size_t sp1 = line.find(' ');
  if (sp1 == npos || sp1 == 0) return Error{"malformed", 400, "Request-Line"};
  method_text_ = slice(line, 0, sp1);
  if (!is_token(method_text_)) return Error{"bad method", 400, "Request-Line"};
  method_ = method_from_name(method_text_);
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == npos) return Error{"missing SIP version", 400, "Request-Line"};
  ruri_text_ = slice(line, sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = slice(line, sp2 + 1);
  if (ruri_text_.empty() || version.empty() || version.find(' ') != npos)
    return Error{"extra whitespace", 400, "Request-Line"};
  if (!valid_version(version)) return Error{"malformed SIP version", 400, "Request-Line"};
  if (!is_sip20(version)) return Error{"SIP version not supported", 505, "Request-Line"};
  Status st = parse_uri(ruri_text_, ruri_);
  if (!st) return in_header(st.error(), "Request-URI");
  // §19.1.1: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
  if (ruri_.is_sip() && !ruri_.headers.empty())
    return Error{"headers not allowed", 400, "Request-URI"};
  return {};
}

Status Message::parse_headers(std::string_view s, size_t& pos, const ParseOptions& opts,
                              bool& unterminated) {
  const char* const b = s.data();
  const size_t n = s.size();
  // first_ holds int16 indexes.
  const size_t max_headers = std::min<size_t>(opts.max_headers, 0x7fff);
  if (headers_.capacity() == 0) headers_.reserve(32);
  unterminated = false;
  const Error not_ended{"header section not ended by an empty line"};
  while (true) {
    if (pos >= n) {
      unterminated = true;
      return not_ended;
    }
    const char c = b[pos];
    if (c == '\r' && pos + 1 < n && b[pos + 1] == '\n') {  // the empty line
      headers_end_ = static_cast<uint32_t>(pos);
      pos += 2;
      return {};
    }
    if (c == '\n') {  // a bare LF is tolerated as a line end
      headers_end_ = static_cast<uint32_t>(pos);
      pos += 1;
      return {};
    }
    if (is_ws(c)) return Error{"header section starts with whitespace"};
    const size_t ns = pos;
    size_t lf = find_lf(s, pos);
    const size_t line_end = lf == npos ? n : lf;
    // header-name HCOLON: token, then SP/HT, then ':'. The LF ends the token scan.
    size_t ne = ns;
    if (lf != npos) {
      while (is_token_char(b[ne])) ++ne;
    } else {
      while (ne < n && is_token_char(b[ne])) ++ne;
    }
    size_t p = ne;
    while (p < line_end && is_ws(b[p])) ++p;
    if (ne == ns || p >= line_end || b[p] != ':') {
      if (lf == npos) {
        unterminated = true;
        return not_ended;
      }
      return Error{ne == ns ? "malformed header name" : "header line without ':'"};
    }
    if (headers_.size() >= max_headers) return Error{"too many headers"};
    // The value runs to the end of the line and over folded continuation lines (§7.3.1).
    size_t vb = p + 1;
    while (lf != npos && lf + 1 < n && is_ws(b[lf + 1])) lf = find_lf(s, lf + 2);
    size_t ve = lf == npos ? n : lf;
    while (vb < ve && is_lws_char(b[vb])) ++vb;
    while (ve > vb && is_lws_char(b[ve - 1])) --ve;
    const size_t name_len = ne - ns;
    const HeaderId id = ns + kHeaderIdLookahead <= n
                            ? header_id_in_buffer(b + ns, name_len)
                            : header_id(std::string_view(b + ns, name_len));
    const auto idx = static_cast<size_t>(id);
    if (first_[idx] < 0) first_[idx] = static_cast<int16_t>(headers_.size());
    if (counts_[idx] < 0xffff) ++counts_[idx];
    const size_t end = lf == npos ? n : lf + 1;
    headers_.push_back(Header{id, std::string_view(b + ns, name_len),
                              std::string_view(b + vb, ve - vb), static_cast<uint32_t>(ns),
                              static_cast<uint32_t>(end)});
    pos = end;
    if (lf == npos) {
      unterminated = true;
      return not_ended;
    }
  }
}

Status Message::check_headers() {
  FirstError err;

  // Via first: an answer to a faulty request needs only the top Via's sent-by (§18.2.2).
  if (first_[static_cast<size_t>(HeaderId::Via)] >= 0) {
    bool top = true;
    Via other;
    for_each_value(HeaderId::Via, [&](std::string_view v) {
      ++via_count_;
      if (top) {
        top = false;
        Status st = v.empty() ? Status(Error{"empty value", 400, "Via"}) : parse_via(v, top_via_);
        via_usable_ = !top_via_.host.empty();
        has_via_ = st.ok();
        err.note(st);
      } else if (err.st.ok()) {
        err.note(v.empty() ? Status(Error{"empty value", 400, "Via"}) : parse_via(v, other));
      }
      return true;
    });
  } else {
    err.note(Error{"missing", 400, "Via"});
  }

  // Headers that may appear once and that we rely on (§20, RFC 4475 §3.3.8-9).
  static constexpr HeaderId kSingle[] = {HeaderId::CallId, HeaderId::CSeq, HeaderId::From,
                                         HeaderId::To, HeaderId::MaxForwards,
                                         HeaderId::ContentLength};
  for (HeaderId id : kSingle)
    if (count(id) > 1) err.note(Error{"appears more than once", 400, header_name(id)});

  if (const Header* h = find(HeaderId::CallId)) {
    if (valid_call_id(h->value)) call_id_ = h->value;
    else err.note(Error{"malformed value", 400, "Call-ID"});
  } else {
    err.note(Error{"missing", 400, "Call-ID"});
  }
  if (const Header* h = find(HeaderId::CSeq)) {
    auto c = parse_cseq(h->value);
    if (c) cseq_ = *c;
    else err.note(c.error());
  } else {
    err.note(Error{"missing", 400, "CSeq"});
  }
  // A response's From and To URIs are not parsed: nothing reads them (a proxy matches and
  // relays a response by its Via, CSeq and tags), and they cost a URI parse each.
  if (const Header* h = find(HeaderId::From)) {
    Status st = parse_name_addr(h->value, from_, is_request_);
    has_from_ = st.ok();
    if (!st) err.note(in_header(st.error(), "From"));
  } else {
    err.note(Error{"missing", 400, "From"});
  }
  if (const Header* h = find(HeaderId::To)) {
    Status st = parse_name_addr(h->value, to_, is_request_);
    has_to_ = st.ok();
    if (!st) err.note(in_header(st.error(), "To"));
  } else {
    err.note(Error{"missing", 400, "To"});
  }
  if (const Header* h = find(HeaderId::MaxForwards)) {
    auto mf = parse_max_forwards(h->value);
    if (mf) max_forwards_ = static_cast<int>(*mf);
    else err.note(mf.error());
  }
  if (const Header* h = find(HeaderId::ContentLength)) {
    auto cl = parse_uint(h->value, 0xffffffffull);
    if (cl) content_length_ = static_cast<int64_t>(*cl);
    else err.note(Error{"not a non-negative number", 400, "Content-Length"});
  }
  // Expires is not checked here: a proxy does not read it, and a registrar treats a
  // malformed value as 3600 (§20.19, RFC 4475 §3.1.2.4).
  if (is_request_ && err.st.ok() && cseq_.method_text != method_text_) {
    // RFC 4475 §3.1.2.18: with an unknown method, 501 is the better answer.
    if (method_ == Method::Other) err.note(Error{"method not implemented", 501, "CSeq"});
    else err.note(Error{"method does not match the request line", 400, "CSeq"});
  }
  return err.st;
}

Status Message::parse(std::string_view bytes, const ParseOptions& opts) {
  reset();
  raw_ = bytes;
  size_t pos = 0;
  // §7.5: ignore CRLFs before the start line.
  while (pos < bytes.size() && (bytes[pos] == '\r' || bytes[pos] == '\n')) ++pos;
  start_ = headers_begin_ = headers_end_ = static_cast<uint32_t>(pos);
  if (pos >= bytes.size()) return Error{"empty message"};
  size_t lf = find_lf(bytes, pos);
  if (lf == npos) return Error{"start line not ended"};
  size_t eol = (lf > pos && bytes[lf - 1] == '\r') ? lf - 1 : lf;
  Status st = parse_start_line(slice(bytes, pos, eol - pos));
  pos = lf + 1;
  headers_begin_ = headers_end_ = static_cast<uint32_t>(pos);
  // Keep going after a start-line fault so the Via is known for the error response.
  bool unterminated = false;
  Status hs = parse_headers(bytes, pos, opts, unterminated);
  if (unterminated) headers_end_ = static_cast<uint32_t>(bytes.size());
  Status cs = check_headers();
  if (!st) return st;
  if (!hs && !unterminated) return hs;
  if (!cs) return cs;
  if (!hs) return hs;
  // Body (§18.3, §20.14): Content-Length bounds it; bytes past it are ignored; a
  // Content-Length beyond the message is an error. Without one the body is the rest.
  size_t avail = bytes.size() - pos;
  if (content_length_ >= 0) {
    if (static_cast<uint64_t>(content_length_) > avail)
      return Error{"larger than the message", 400, "Content-Length"};
    body_ = slice(bytes, pos, static_cast<size_t>(content_length_));
  } else {
    body_ = slice(bytes, pos);
  }
  raw_ = slice(bytes, 0, pos + body_.size());
  return {};
}

namespace {

// Moves a view from [from, from + n) to the same place in `to`; a view elsewhere (a string
// literal) stays.
struct Relocate {
  const char* from;
  size_t n;
  const char* to;
  void operator()(std::string_view& v) const {
    if (v.data() >= from && v.data() <= from + n) v = std::string_view(to + (v.data() - from), v.size());
  }
  void operator()(Uri& u) const {
    for (std::string_view* v : {&u.raw, &u.scheme_raw, &u.user, &u.password, &u.host, &u.params, &u.headers,
                                &u.opaque})
      (*this)(*v);
  }
  void operator()(NameAddr& a) const {
    for (std::string_view* v : {&a.raw, &a.display, &a.uri_text, &a.params}) (*this)(*v);
    (*this)(a.uri);
  }
  void operator()(Via& v) const {
    for (std::string_view* x : {&v.raw, &v.protocol, &v.transport, &v.host, &v.sent_by, &v.params, &v.branch,
                                &v.received, &v.maddr, &v.rport})
      (*this)(*x);
  }
};

}  // namespace

void Message::rebase(const Message& parsed, std::string_view copy) {
  *this = parsed;
  const Relocate r{parsed.raw_.data(), parsed.raw_.size(), copy.data()};
  for (std::string_view* v : {&raw_, &method_text_, &ruri_text_, &reason_, &call_id_, &cseq_.method_text, &body_})
    r(*v);
  r(ruri_);
  for (Header& h : headers_) {
    r(h.name);
    r(h.value);
  }
  r(top_via_);
  r(from_);
  r(to_);
}

}  // namespace sb::core
