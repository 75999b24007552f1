#include "core/text.h"

#include <array>

namespace sb::core {

namespace {
constexpr std::array<bool, 256> make_token_table() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("-.!%*_+`'~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr auto kToken = make_token_table();
}  // namespace

bool is_token_char(char c) { return kToken[static_cast<unsigned char>(c)]; }

std::optional<uint64_t> parse_uint(std::string_view s, uint64_t max) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return std::nullopt;
    uint64_t d = uint64_t(c - '0');
    if (v > (max - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

size_t find_unquoted(std::string_view s, char c, size_t from) {
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

}  // namespace sb::core
