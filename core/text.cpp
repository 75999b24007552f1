#include "core/text.h"

#include <cstring>

namespace sb::core {

std::optional<uint64_t> parse_uint(std::string_view s, uint64_t max) {
  const size_t n = s.size();
  if (n == 0 || n > 20) return std::nullopt;
  uint64_t v = 0;
  if (n <= 19) {  // 19 digits cannot overflow 64 bits
    for (char c : s) {
      unsigned d = static_cast<unsigned char>(c) - unsigned('0');
      if (d > 9) return std::nullopt;
      v = v * 10 + d;
    }
  } else {
    for (char c : s) {
      unsigned d = static_cast<unsigned char>(c) - unsigned('0');
      if (d > 9 || __builtin_mul_overflow(v, 10u, &v) || __builtin_add_overflow(v, d, &v))
        return std::nullopt;
    }
  }
  if (v > max) return std::nullopt;
  return v;
}

size_t find_unquoted(std::string_view s, char c, size_t from) {
  if (from >= s.size()) return std::string_view::npos;
  // Fast path: the first `c` with no quote or '<' before it (the usual case) is the answer,
  // and with no `c` at all there is none. memchr is vectorised; the loop below is not.
  const char* p = s.data() + from;
  const char* hit = static_cast<const char*>(std::memchr(p, c, s.size() - from));
  if (!hit) return std::string_view::npos;
  const size_t len = static_cast<size_t>(hit - p);
  if (!std::memchr(p, '"', len) && !std::memchr(p, '<', len))
    return static_cast<size_t>(hit - s.data());
  bool quoted = false;
  int angle = 0;
  for (size_t i = from; i < s.size(); ++i) {
    char ch = s[i];
    if (quoted) {
      if (ch == '\\') ++i;
      else if (ch == '"') quoted = false;
      continue;
    }
    if (ch == c && angle == 0) return i;
    if (ch == '"') quoted = true;
    else if (ch == '<') ++angle;
    else if (ch == '>' && angle > 0) --angle;
  }
  return std::string_view::npos;
}

size_t scan_quoted(std::string_view s, size_t i) {
  // RFC 3261 §25.1: qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII;
  // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F).
  for (++i; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"') return i + 1;
    if (c == '\\') {
      if (++i >= s.size()) return std::string_view::npos;
      auto q = static_cast<unsigned char>(s[i]);
      if (q == '\r' || q == '\n' || q >= 0x80) return std::string_view::npos;
      continue;
    }
    if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
      return std::string_view::npos;
  }
  return std::string_view::npos;
}

}  // namespace sb::core
