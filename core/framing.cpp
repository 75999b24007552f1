#include "core/framing.h"

#include "core/header_id.h"
#include "core/text.h"

namespace sb::core {

namespace {

constexpr size_t npos = std::string_view::npos;

struct Length {
  bool found = false;
  bool bad = false;
  bool conflict = false;
  uint64_t value = 0;
};

// Content-Length (or compact 'l', any case, folded or not) in a header block that starts
// after the start line.
Length find_content_length(std::string_view head) {
  Length out;
  size_t pos = head.find('\n');
  if (pos == npos) return out;
  ++pos;
  while (pos < head.size()) {
    size_t lf = head.find('\n', pos);
    if (lf == npos) lf = head.size();
    // Folded continuation lines belong to the header before them.
    while (lf + 1 < head.size() && is_ws(head[lf + 1])) {
      lf = head.find('\n', lf + 1);
      if (lf == npos) lf = head.size();
    }
    std::string_view line = head.substr(pos, lf - pos);
    size_t ne = scan_while(line, 0, chars::kToken);
    size_t colon = ne;
    while (colon < line.size() && is_ws(line[colon])) ++colon;
    std::string_view name = line.substr(0, ne);
    if (colon < line.size() && line[colon] == ':' &&
        header_id(name) == HeaderId::ContentLength) {
      auto v = parse_uint(trim(line.substr(colon + 1)), 0xffffffffull);
      if (!v) {
        out.bad = true;
      } else if (out.found && *v != out.value) {
        out.conflict = true;
      } else {
        out.value = *v;
      }
      out.found = true;
    }
    pos = lf + 1;
  }
  return out;
}

Frame error_frame(Error e, size_t length) {
  Frame f;
  f.kind = Frame::Kind::Error;
  f.error = e;
  f.length = length;
  return f;
}

}  // namespace

Frame next_frame(std::string_view buf, size_t max_bytes, FrameState& st) {
  Frame f;
  if (buf.empty()) return f;
  if (buf[0] == '\r' || buf[0] == '\n') {
    st = {};
    if (buf.size() >= 4 && buf.substr(0, 4) == "\r\n\r\n") {
      f.kind = Frame::Kind::Ping;
      f.length = 4;
      return f;
    }
    if (buf.size() >= 2 && buf.substr(0, 2) == "\r\n") {
      // "\r\n" and "\r\n\r" may still become a ping: TCP splits anywhere.
      if (buf.size() == 2 || (buf.size() == 3 && buf[2] == '\r')) return f;
      f.kind = Frame::Kind::Pong;
      f.length = 2;
      return f;
    }
    if (buf[0] == '\n') {  // a stray LF: skip it
      f.kind = Frame::Kind::Pong;
      f.length = 1;
      return f;
    }
    if (buf.size() >= 2) {  // a CR not followed by LF: skip it too
      f.kind = Frame::Kind::Pong;
      f.length = 1;
      return f;
    }
    return f;  // a lone CR: wait
  }
  if (st.total == 0) {
    size_t from = st.scanned > 3 ? st.scanned - 3 : 0;
    size_t end = buf.find("\r\n\r\n", from);
    if (end == npos) {
      st.scanned = buf.size();
      if (buf.size() > max_bytes) {
        st = {};
        return error_frame(Error{"message too large", 513}, buf.size());
      }
      return f;
    }
    size_t head_len = end + 4;
    Length cl = find_content_length(buf.substr(0, end + 2));
    if (!cl.found || cl.bad || cl.conflict || head_len + cl.value > max_bytes) {
      st = {};
      if (!cl.found) return error_frame(Error{"missing on a stream", 400, "Content-Length"}, head_len);
      if (cl.bad) return error_frame(Error{"not a non-negative number", 400, "Content-Length"}, head_len);
      if (cl.conflict) return error_frame(Error{"conflicting values", 400, "Content-Length"}, head_len);
      return error_frame(Error{"message too large", 513}, head_len);
    }
    st.total = head_len + static_cast<size_t>(cl.value);
  }
  if (buf.size() < st.total) return f;
  f.kind = Frame::Kind::Message;
  f.length = st.total;
  st = {};
  return f;
}

Frame next_frame(std::string_view buf, size_t max_bytes) {
  FrameState st;
  return next_frame(buf, max_bytes, st);
}

}  // namespace sb::core
