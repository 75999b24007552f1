#include "core/framing.h"

#include <optional>

#include "core/text.h"

namespace sb::core {

namespace {

// Content-Length (or compact 'l') in a header block; nullopt when absent, -1 when bad.
std::optional<long long> find_content_length(std::string_view head) {
  size_t pos = head.find('\n');  // skip the start line
  while (pos != std::string_view::npos && pos + 1 < head.size()) {
    size_t b = pos + 1;
    size_t e = head.find('\n', b);
    std::string_view line = head.substr(b, e == std::string_view::npos ? head.size() - b : e - b);
    size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string_view name = trim(line.substr(0, colon));
      if (iequals(name, "content-length") || iequals(name, "l")) {
        auto v = parse_uint(trim(line.substr(colon + 1)), 0xffffffffull);
        return v ? static_cast<long long>(*v) : -1;
      }
    }
    pos = e;
  }
  return std::nullopt;
}

}  // namespace

Frame next_frame(std::string_view buf, size_t max_bytes) {
  Frame f;
  if (buf.empty()) return f;
  if (buf[0] == '\r' || buf[0] == '\n') {
    if (buf.size() >= 4 && buf.substr(0, 4) == "\r\n\r\n") {
      f.kind = Frame::Kind::Ping;
      f.length = 4;
      return f;
    }
    if (buf.size() >= 2 && buf.substr(0, 2) == "\r\n") {
      // "\r\n\r" may still become a ping.
      if (buf.size() == 3 && buf[2] == '\r') return f;
      f.kind = Frame::Kind::Pong;
      f.length = 2;
      return f;
    }
    if (buf[0] == '\n') {  // stray LF: skip it
      f.kind = Frame::Kind::Pong;
      f.length = 1;
      return f;
    }
    return f;  // a lone CR: wait
  }
  size_t end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (buf.size() > max_bytes) {
      f.kind = Frame::Kind::Error;
      f.error = Error{"message too large", 513};
      f.length = buf.size();
    }
    return f;
  }
  size_t head_len = end + 4;
  auto cl = find_content_length(buf.substr(0, end + 2));
  f.kind = Frame::Kind::Error;
  f.length = head_len;
  if (!cl) {
    f.error = Error{"missing on a stream transport", 400, "Content-Length"};
    return f;
  }
  if (*cl < 0) {
    f.error = Error{"not a non-negative number", 400, "Content-Length"};
    return f;
  }
  size_t total = head_len + static_cast<size_t>(*cl);
  if (total > max_bytes) {
    f.error = Error{"message too large", 513};
    return f;
  }
  if (buf.size() < total) return Frame{};
  f.kind = Frame::Kind::Message;
  f.length = total;
  return f;
}

}  // namespace sb::core
