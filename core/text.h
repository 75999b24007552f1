// Small string helpers over views: SIP's character classes, LWS, case-insensitive compare.
#pragma once
#include <array>
#include <cassert>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sb::core {

namespace chars {
// One table for every character class the parser tests (RFC 3261 §25.1), so each test is a
// load and a mask.
enum : uint16_t {
  kDigit = 1 << 0,
  kAlpha = 1 << 1,
  kHex = 1 << 2,
  kToken = 1 << 3,       // token
  kLws = 1 << 4,         // SP HT CR LF
  kUri = 1 << 5,         // may appear unescaped in a SIP URI after the scheme (not "<>\ etc.)
  kHost = 1 << 6,        // hostname characters: alphanum - . _
  kUnreserved = 1 << 7,  // alphanum mark: equivalent to its %-escape (§19.1.4)
  kGenValue = 1 << 8,    // gen-value without quotes: token, host (IPv6 reference) chars
  kUriPlain = 1 << 9,    // kUri minus '%' and '@', which a URI scan handles apart
  kHostAlpha = 1 << 10,  // hostname characters that make it a name, not an IPv4 address
  kVisible = 1 << 11,    // printable ASCII but SP (VCHAR)
};
constexpr std::array<uint16_t, 256> make_table() {
  std::array<uint16_t, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] |= kDigit | kHex;
  for (int c = 'a'; c <= 'z'; ++c) t[c] |= kAlpha;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] |= kAlpha;
  for (int c = 'a'; c <= 'f'; ++c) t[c] |= kHex;
  for (int c = 'A'; c <= 'F'; ++c) t[c] |= kHex;
  for (int c = 0; c < 256; ++c)
    if (t[c] & (kDigit | kAlpha)) t[c] |= kToken | kHost | kUnreserved | kGenValue;
  for (char c : std::string_view("-.!%*_+`'~")) t[static_cast<unsigned char>(c)] |= kToken | kGenValue;
  for (char c : std::string_view("-._")) t[static_cast<unsigned char>(c)] |= kHost;
  for (char c : std::string_view("-_.!~*'()")) t[static_cast<unsigned char>(c)] |= kUnreserved;
  for (char c : std::string_view(":[]")) t[static_cast<unsigned char>(c)] |= kGenValue;
  for (char c : std::string_view(" \t\r\n")) t[static_cast<unsigned char>(c)] |= kLws;
  // URI characters: printable ASCII except SP and the "unwise"/delimiting <>"{}|\^`.
  for (int c = 0x21; c < 0x7f; ++c) t[c] |= kUri | kVisible;
  for (char c : std::string_view("<>\"{}|\\^`")) t[static_cast<unsigned char>(c)] &= ~kUri;
  for (int c = 0; c < 256; ++c)
    if ((t[c] & kUri) && c != '%' && c != '@') t[c] |= kUriPlain;
  for (int c = 0; c < 256; ++c)
    if (t[c] & kAlpha) t[c] |= kHostAlpha;
  t[static_cast<unsigned char>('-')] |= kHostAlpha;
  t[static_cast<unsigned char>('_')] |= kHostAlpha;
  return t;
}
inline constexpr std::array<uint16_t, 256> kTable = make_table();
inline bool is(char c, uint16_t mask) { return (kTable[static_cast<unsigned char>(c)] & mask) != 0; }
}  // namespace chars

constexpr char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c + 32) : c; }

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const char x = a[i], y = b[i];
    if (x != y && ascii_lower(x) != ascii_lower(y)) return false;
  }
  return true;
}

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
inline bool is_alpha(char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
inline bool is_alnum(char c) { return is_digit(c) || is_alpha(c); }
inline bool is_hex(char c) { return chars::is(c, chars::kHex); }
inline int hex_value(char c) { return is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10; }

// RFC 3261 §25.1 token characters.
inline bool is_token_char(char c) { return chars::is(c, chars::kToken); }
inline bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_token_char(c)) return false;
  return true;
}

inline bool is_ws(char c) { return c == ' ' || c == '\t'; }
inline bool is_lws_char(char c) { return chars::is(c, chars::kLws); }

// s.substr(pos, len) without the range check and its exception: pos <= s.size() is the
// caller's promise (asserted), as everywhere on the parse path.
inline std::string_view slice(std::string_view s, size_t pos,
                              size_t len = std::string_view::npos) {
  assert(pos <= s.size());
  const size_t rest = s.size() - pos;
  return std::string_view(s.data() + pos, len < rest ? len : rest);
}

// Text a quoted-string carries as is (a realm or user name in a digest challenge): no quote,
// backslash or control character. The empty string passes.
inline bool quotable(std::string_view s) {
  for (char c : s)
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  return true;
}

// Trim LWS (including folded line ends) on both sides.
inline std::string_view trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_lws_char(s[b])) ++b;
  while (e > b && is_lws_char(s[e - 1])) --e;
  return std::string_view(s.data() + b, e - b);
}

// Skip SWS (spaces, tabs and folded line ends) from `i`.
inline size_t skip_lws(std::string_view s, size_t i) {
  while (i < s.size() && is_lws_char(s[i])) ++i;
  return i;
}
// End of the run of characters of class `mask` starting at `i`.
inline size_t scan_while(std::string_view s, size_t i, uint16_t mask) {
  while (i < s.size() && chars::is(s[i], mask)) ++i;
  return i;
}

// Parse a decimal without sign into an integer of at most `max`; nullopt on overflow or junk.
std::optional<uint64_t> parse_uint(std::string_view s, uint64_t max);

// Find `c` in `s` outside quoted strings (with \-escapes) and <...>; npos if absent.
size_t find_unquoted(std::string_view s, char c, size_t from = 0);

// End of the quoted-string whose opening quote is at s[i]: the index just past the closing
// quote, or npos when it is unterminated or holds a character qdtext does not allow.
size_t scan_quoted(std::string_view s, size_t i);

}  // namespace sb::core
