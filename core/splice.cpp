#include "core/splice.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/text.h"

namespace sb::core {

namespace {

constexpr std::string_view kCrlf = "\r\n";

void put_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
}

void put_line(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ").append(value).append(kCrlf);
}

bool removed(const SpliceEdits& e, size_t idx) {
  return !e.remove_headers.empty() &&
         std::find(e.remove_headers.begin(), e.remove_headers.end(), idx) !=
             e.remove_headers.end();
}

// An upper bound of the output size, so the buffer is allocated once.
size_t size_bound(const Message& m, const SpliceEdits& e, std::string_view body) {
  size_t n = m.raw().size() + body.size() + 64;  // + Max-Forwards and Content-Length lines
  n += m.method_text().size() + e.request_uri.size() + 12;
  n += e.add_via.size() + 7;
  for (auto v : e.add_record_route) n += v.size() + 16;
  for (auto v : e.add_route) n += v.size() + 9;
  for (auto v : e.add_headers) n += v.size() + 2;
  return n;
}

}  // namespace

void splice(const Message& m, const SpliceEdits& e, std::string& out) {
  const std::string_view raw = m.raw();
  const std::string_view body = e.body ? *e.body : m.body();
  out.clear();
  out.reserve(size_bound(m, e, body));
  // Start line.
  if (m.is_request() && !e.request_uri.empty()) {
    out.append(m.method_text()).append(" ").append(e.request_uri).append(" SIP/2.0\r\n");
  } else {
    out.append(raw.substr(m.start(), m.headers_begin() - m.start()));
  }
  // New values go on top (§16.6 steps 4 and 8).
  if (!e.add_via.empty()) put_line(out, "Via", e.add_via);
  for (auto rr : e.add_record_route) put_line(out, "Record-Route", rr);
  for (auto r : e.add_route) put_line(out, "Route", r);

  bool via_done = !e.remove_top_via;
  int routes_left = e.remove_routes;
  bool mf_written = false;
  const auto& hs = m.headers();
  for (size_t i = 0; i < hs.size(); ++i) {
    const Header& h = hs[i];
    if (h.id == HeaderId::ContentLength || removed(e, i)) continue;
    if (h.id == HeaderId::Via && !via_done) {
      // §16.7 step 3: the top Via value goes; the rest of its line stays.
      via_done = true;
      size_t comma = find_list_comma(h.value, 0);
      if (comma != std::string_view::npos) put_line(out, h.name, trim(h.value.substr(comma + 1)));
      continue;
    }
    if (h.id == HeaderId::Route && routes_left > 0) {
      // Drop values from the front of this line until the count is used up.
      std::string_view rest = h.value;
      while (routes_left > 0 && !rest.empty()) {
        size_t comma = find_list_comma(rest, 0);
        --routes_left;
        rest = comma == std::string_view::npos ? std::string_view{} : trim(rest.substr(comma + 1));
      }
      if (!rest.empty()) put_line(out, h.name, rest);
      continue;
    }
    if (h.id == HeaderId::MaxForwards && e.max_forwards >= 0) {
      if (!mf_written) {
        out.append("Max-Forwards: ");
        put_uint(out, static_cast<uint64_t>(e.max_forwards));
        out.append(kCrlf);
        mf_written = true;
      }
      continue;
    }
    out.append(raw.substr(h.begin, h.end - h.begin));
  }
  if (e.max_forwards >= 0 && !mf_written) {
    out.append("Max-Forwards: ");
    put_uint(out, static_cast<uint64_t>(e.max_forwards));
    out.append(kCrlf);
  }
  for (auto line : e.add_headers) out.append(line).append(kCrlf);
  // Content-Length is always written and always true (§18.3 / §20.14).
  out.append("Content-Length: ");
  put_uint(out, body.size());
  out.append("\r\n\r\n");
  out.append(body);
}

}  // namespace sb::core
