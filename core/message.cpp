#include "core/message.h"

#include "core/text.h"

namespace sb::core {

namespace {

// Find the end of the line starting at `pos`: returns the offset of the terminator and sets
// `next` past it. CRLF is the terminator; a bare LF is tolerated.
size_t line_end(std::string_view s, size_t pos, size_t& next) {
  size_t lf = s.find('\n', pos);
  if (lf == std::string_view::npos) {
    next = s.size();
    return std::string_view::npos;
  }
  next = lf + 1;
  return (lf > pos && s[lf - 1] == '\r') ? lf - 1 : lf;
}

bool valid_version(std::string_view v) {
  // "SIP/" 1*DIGIT "." 1*DIGIT, "SIP" case-insensitive.
  if (v.size() < 7 || !iequals(v.substr(0, 4), "SIP/")) return false;
  size_t dot = v.find('.', 4);
  if (dot == std::string_view::npos || dot == 4 || dot + 1 == v.size()) return false;
  for (size_t i = 4; i < v.size(); ++i)
    if (i != dot && !is_digit(v[i])) return false;
  return true;
}

bool is_sip20(std::string_view v) { return iequals(v, "SIP/2.0"); }

bool valid_call_id(std::string_view v) {
  // word [ "@" word ]: no whitespace, printable ASCII.
  if (v.empty()) return false;
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
  }
  return true;
}

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
  if (line.size() >= 4 && iequals(line.substr(0, 4), "SIP/")) {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
    is_request_ = false;
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) return Error{"malformed status line"};
    std::string_view version = line.substr(0, sp);
    if (!valid_version(version)) return Error{"malformed status line"};
    if (!is_sip20(version)) return Error{"unsupported SIP version", 505};
    std::string_view code = line.substr(sp + 1, 3);
    if (code.size() != 3 || !is_digit(code[0]) || !is_digit(code[1]) || !is_digit(code[2]))
      return Error{"bad status code"};
    if (line.size() > sp + 4 && line[sp + 4] != ' ') return Error{"bad status code"};
    status_ = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    if (status_ < 100 || status_ > 699) return Error{"bad status code"};
    reason_ = line.size() > sp + 5 ? line.substr(sp + 5) : std::string_view{};
    return {};
  }
  // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP between the three.
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return Error{"malformed request line"};
  method_text_ = line.substr(0, sp1);
  if (!is_token(method_text_)) return Error{"malformed request line: bad method"};
  method_ = method_from_name(method_text_);
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return Error{"malformed request line"};
  ruri_text_ = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (ruri_text_.empty() || version.find(' ') != std::string_view::npos || version.empty())
    return Error{"malformed request line: extra whitespace"};
  if (!valid_version(version)) return Error{"malformed request line: bad SIP version"};
  if (!is_sip20(version)) return Error{"unsupported SIP version", 505};
  auto uri = parse_uri(ruri_text_);
  if (!uri) return in_header(uri.error(), "Request-URI");
  ruri_ = *uri;
  // §19.1.1: headers are not allowed in a Request-URI.
  if (ruri_.is_sip() && !ruri_.headers.empty())
    return Error{"headers not allowed", 400, "Request-URI"};
  return {};
}

Status Message::parse_headers(std::string_view s, size_t& pos, const ParseOptions& opts) {
  headers_begin_ = static_cast<uint32_t>(pos);
  while (true) {
    if (pos >= s.size()) return Error{"missing empty line after headers"};
    size_t next;
    size_t eol = line_end(s, pos, next);
    if (eol == std::string_view::npos) return Error{"missing empty line after headers"};
    if (eol == pos) {  // empty line: end of headers
      headers_end_ = static_cast<uint32_t>(pos);
      pos = next;
      return {};
    }
    if (is_ws(s[pos])) {
      // Folded continuation of the previous header (§7.3.1).
      if (headers_.empty()) return Error{"header section starts with whitespace"};
      Header& h = headers_.back();
      std::string_view cont = trim(s.substr(pos, eol - pos));
      if (!cont.empty()) {
        const char* vb = h.value.empty() ? cont.data() : h.value.data();
        h.value = std::string_view(vb, static_cast<size_t>(cont.data() + cont.size() - vb));
      }
      h.end = static_cast<uint32_t>(next);
      pos = next;
      continue;
    }
    size_t colon = s.find(':', pos);
    if (colon == std::string_view::npos || colon >= eol) return Error{"malformed header line"};
    size_t ne = colon;
    while (ne > pos && is_ws(s[ne - 1])) --ne;
    std::string_view name = s.substr(pos, ne - pos);
    if (!is_token(name)) return Error{"malformed header name"};
    if (headers_.size() >= opts.max_headers) return Error{"too many headers"};
    Header h;
    h.id = header_id(name);
    h.name = name;
    h.value = trim(s.substr(colon + 1, eol - colon - 1));
    h.begin = static_cast<uint32_t>(pos);
    h.end = static_cast<uint32_t>(next);
    auto idx = static_cast<int>(h.id);
    if (first_[idx] < 0) first_[idx] = static_cast<int16_t>(headers_.size());
    if (counts_[idx] < 0xffff) ++counts_[idx];
    headers_.push_back(h);
    pos = next;
  }
}

Status Message::check_headers() {
  // Headers that may appear once and that we rely on (§20, RFC 4475 §3.1.2.17).
  static constexpr HeaderId kSingle[] = {HeaderId::From, HeaderId::To, HeaderId::CallId,
                                         HeaderId::CSeq, HeaderId::MaxForwards,
                                         HeaderId::ContentLength};
  for (HeaderId id : kSingle)
    if (count(id) > 1) return Error{"header appears more than once", 400, header_name(id)};

  // Via: every element must parse; the top one is kept.
  if (const Header* h = find(HeaderId::Via)) {
    // A 400 needs only the sent-by, so check the top element without its params first.
    std::string_view first_el;
    for_each_list_element(h->value, [&](std::string_view v) { first_el = v; return false; });
    size_t semi = first_el.find(';');
    if (auto lenient = parse_via(first_el.substr(0, semi))) {
      top_via_ = *lenient;
      via_usable_ = true;
    }
    Status st;
    bool first = true;
    for_each_value(HeaderId::Via, [&](std::string_view v) {
      ++via_count_;
      if (v.empty()) {
        st = Error{"empty value", 400, "Via"};
        return false;
      }
      auto via = parse_via(v);
      if (!via) {
        st = in_header(via.error(), "Via");
        return false;
      }
      if (first) {
        top_via_ = *via;
        has_via_ = true;
        first = false;
      }
      return true;
    });
    if (!st) return st;
  }
  if (!has_via_) return Error{"missing header", 400, "Via"};

  if (const Header* h = find(HeaderId::CallId)) {
    if (!valid_call_id(h->value)) return Error{"malformed value", 400, "Call-ID"};
    call_id_ = h->value;
  } else {
    return Error{"missing header", 400, "Call-ID"};
  }
  if (const Header* h = find(HeaderId::CSeq)) {
    auto c = parse_cseq(h->value);
    if (!c) return in_header(c.error(), "CSeq");
    cseq_ = *c;
  } else {
    return Error{"missing header", 400, "CSeq"};
  }
  if (const Header* h = find(HeaderId::From)) {
    auto f = parse_name_addr(h->value);
    if (!f) return in_header(f.error(), "From");
    from_ = *f;
    has_from_ = true;
  } else {
    return Error{"missing header", 400, "From"};
  }
  if (const Header* h = find(HeaderId::To)) {
    auto t = parse_name_addr(h->value);
    if (!t) return in_header(t.error(), "To");
    to_ = *t;
    has_to_ = true;
  } else {
    return Error{"missing header", 400, "To"};
  }
  if (const Header* h = find(HeaderId::MaxForwards)) {
    auto mf = parse_max_forwards(h->value);
    if (!mf) return in_header(mf.error(), "Max-Forwards");
    max_forwards_ = static_cast<int>(*mf);
  }
  if (const Header* h = find(HeaderId::ContentLength)) {
    auto cl = parse_uint(h->value, 0xffffffffull);
    if (!cl) return Error{"not a non-negative number", 400, "Content-Length"};
    content_length_ = static_cast<int64_t>(*cl);
  }
  if (const Header* h = find(HeaderId::Expires)) {
    if (!parse_delta_seconds(h->value, "bad"))
      return Error{"not a number of seconds below 2**32", 400, "Expires"};
  }
  if (is_request_ && cseq_.method_text != method_text_) {
    // RFC 4475 §3.1.2.18: with an unknown method, 501 is the better answer.
    if (method_ == Method::Other) return Error{"method not implemented", 501, "CSeq"};
    return Error{"method does not match the request line", 400, "CSeq"};
  }
  return {};
}

Status Message::parse(std::string_view bytes, const ParseOptions& opts) {
  reset();
  raw_ = bytes;
  size_t pos = 0;
  // §7.5: ignore CRLFs before the start line.
  while (pos < bytes.size() && (bytes[pos] == '\r' || bytes[pos] == '\n')) ++pos;
  start_ = static_cast<uint32_t>(pos);
  if (pos >= bytes.size()) return Error{"empty message"};
  size_t next;
  size_t eol = line_end(bytes, pos, next);
  if (eol == std::string_view::npos) return Error{"missing end of start line"};
  Status st = parse_start_line(bytes.substr(pos, eol - pos));
  // Keep going after a start-line fault so the Via is known for the error response.
  pos = next;
  Status hs = parse_headers(bytes, pos, opts);
  Status cs = hs ? check_headers() : Status{};
  if (!st) return st;
  if (!hs) return hs;
  if (!cs) return cs;
  // Body (§18.3, §20.14): Content-Length bounds it; bytes past it are ignored; a
  // Content-Length beyond the message is an error.
  size_t avail = bytes.size() - pos;
  if (content_length_ >= 0) {
    if (static_cast<uint64_t>(content_length_) > avail)
      return Error{"larger than the message", 400, "Content-Length"};
    body_ = bytes.substr(pos, static_cast<size_t>(content_length_));
  } else {
    body_ = bytes.substr(pos);
  }
  raw_ = bytes.substr(0, pos + body_.size());
  return {};
}

}  // namespace sb::core
