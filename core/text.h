// Small string helpers over views: SIP's character classes, LWS, case-insensitive compare.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace sb::core {

inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c + 32) : c; }

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
inline bool is_alpha(char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
inline bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
inline bool is_hex(char c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }
inline int hex_value(char c) { return is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10; }

// RFC 3261 §25.1 token characters.
bool is_token_char(char c);
inline bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_token_char(c)) return false;
  return true;
}

inline bool is_ws(char c) { return c == ' ' || c == '\t'; }
inline bool is_lws_char(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Trim LWS (including folded line ends) on both sides.
inline std::string_view trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_lws_char(s[b])) ++b;
  while (e > b && is_lws_char(s[e - 1])) --e;
  return s.substr(b, e - b);
}
inline std::string_view trim_left(std::string_view s) {
  size_t b = 0;
  while (b < s.size() && is_lws_char(s[b])) ++b;
  return s.substr(b);
}

// Parse a decimal without sign into an integer of at most `max`; nullopt on overflow or junk.
std::optional<uint64_t> parse_uint(std::string_view s, uint64_t max);

// Find `c` in `s` outside quoted strings (with \-escapes) and <...>; npos if absent.
size_t find_unquoted(std::string_view s, char c, size_t from = 0);

}  // namespace sb::core
