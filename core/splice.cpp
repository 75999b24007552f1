#include "core/splice.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/text.h"

namespace sb::core {

namespace {

// Writes or only counts, so the same code sizes the buffer and fills it.
struct Sink {
  char* p = nullptr;
  size_t n = 0;
  void put(std::string_view s) {
    if (p) std::memcpy(p + n, s.data(), s.size());
    n += s.size();
  }
  void put_uint(uint64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    put(std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
  }
};

bool removed(const SpliceEdits& e, size_t idx) {
  return std::find(e.remove_headers.begin(), e.remove_headers.end(), idx) !=
         e.remove_headers.end();
}

void emit(const Message& m, const SpliceEdits& e, Sink& out) {
  std::string_view raw = m.raw();
  // Start line.
  if (m.is_request() && !e.request_uri.empty()) {
    out.put(m.method_text());
    out.put(" ");
    out.put(e.request_uri);
    out.put(" SIP/2.0\r\n");
  } else {
    out.put(raw.substr(m.start(), m.headers_begin() - m.start()));
  }
  if (!e.add_via.empty()) {
    out.put("Via: ");
    out.put(e.add_via);
    out.put("\r\n");
  }
  for (auto rr : e.add_record_route) {
    out.put("Record-Route: ");
    out.put(rr);
    out.put("\r\n");
  }
  for (auto r : e.add_route) {
    out.put("Route: ");
    out.put(r);
    out.put("\r\n");
  }
  bool via_done = !e.remove_top_via;
  int routes_left = e.remove_routes;
  bool mf_written = false;
  const auto& hs = m.headers();
  for (size_t i = 0; i < hs.size(); ++i) {
    const Header& h = hs[i];
    if (removed(e, i) || h.id == HeaderId::ContentLength) continue;
    if (h.id == HeaderId::Via && !via_done) {
      via_done = true;
      size_t comma = find_list_comma(h.value, 0);
      if (comma == std::string_view::npos) continue;  // the line held only that value
      out.put(h.name);
      out.put(": ");
      out.put(trim(h.value.substr(comma + 1)));
      out.put("\r\n");
      continue;
    }
    if (h.id == HeaderId::Route && routes_left > 0) {
      // Drop values from the front of this line until the count is used up.
      std::string_view rest = h.value;
      while (routes_left > 0) {
        size_t comma = find_list_comma(rest, 0);
        --routes_left;
        if (comma == std::string_view::npos) {
          rest = {};
          break;
        }
        rest = trim(rest.substr(comma + 1));
      }
      if (rest.empty()) continue;
      out.put(h.name);
      out.put(": ");
      out.put(rest);
      out.put("\r\n");
      continue;
    }
    if (h.id == HeaderId::MaxForwards && e.max_forwards >= 0) {
      out.put("Max-Forwards: ");
      out.put_uint(static_cast<uint64_t>(e.max_forwards));
      out.put("\r\n");
      mf_written = true;
      continue;
    }
    out.put(raw.substr(h.begin, h.end - h.begin));
  }
  if (e.max_forwards >= 0 && !mf_written) {
    out.put("Max-Forwards: ");
    out.put_uint(static_cast<uint64_t>(e.max_forwards));
    out.put("\r\n");
  }
  for (auto line : e.add_headers) {
    out.put(line);
    out.put("\r\n");
  }
  std::string_view body = e.body ? *e.body : m.body();
  out.put("Content-Length: ");
  out.put_uint(body.size());
  out.put("\r\n\r\n");
  out.put(body);
}

}  // namespace

void splice(const Message& m, const SpliceEdits& edits, std::string& out) {
  Sink count;
  emit(m, edits, count);
  out.clear();
  out.resize(count.n);
  Sink write{out.data(), 0};
  emit(m, edits, write);
}

}  // namespace sb::core
