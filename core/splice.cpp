#include "core/splice.h"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>

#include "core/text.h"

namespace sb::core {

namespace {

// Writes into a buffer already sized to an upper bound of the output.
struct Writer {
  char* p;
  void put(std::string_view s) {
    if (s.empty()) return;  // an empty view may hold nullptr, which memcpy must not see
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void put_uint(uint64_t v) {
    auto r = std::to_chars(p, p + 20, v);
    p = r.ptr;
  }
  void line(std::string_view name, std::string_view value) {
    put(name);
    put(": ");
    put(value);
    put("\r\n");
  }
  void uint_line(std::string_view name, uint64_t value) {
    put(name);
    put(": ");
    put_uint(value);
    put("\r\n");
  }
};

bool removed(const SpliceEdits& e, size_t idx) {
  return !e.remove_headers.empty() &&
         std::find(e.remove_headers.begin(), e.remove_headers.end(), idx) !=
             e.remove_headers.end();
}

// An upper bound of the output size, so the buffer is allocated once.
size_t size_bound(const Message& m, const SpliceEdits& e, std::string_view body) {
  // The received bytes, plus room for the Max-Forwards and Content-Length lines and for
  // the two lines rewritten in place (top Via, one Route), which may gain ": " and a CR.
  size_t n = m.raw().size() + body.size() + 128;
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
  const size_t bound = size_bound(m, e, body);
  // Written into this thread's scratch buffer (sized to the bound once, kept), then copied
  // into `out` at its exact size: a client transaction keeps its request for its whole life,
  // and the bound is a few hundred bytes over. The copy replaces the zeroing of the bound.
  thread_local std::string scratch;
  if (scratch.size() < bound) scratch.resize(bound);
  Writer w{scratch.data()};
  // Start line.
  if (m.is_request() && !e.request_uri.empty()) {
    w.put(m.method_text());
    w.put(" ");
    w.put(e.request_uri);
    w.put(" SIP/2.0\r\n");
  } else {
    w.put(raw.substr(m.start(), m.headers_begin() - m.start()));
  }
  // New values go on top (§16.6 steps 4 and 8).
  if (!e.add_via.empty()) w.line("Via", e.add_via);
  for (auto rr : e.add_record_route) w.line("Record-Route", rr);
  for (auto r : e.add_route) w.line("Route", r);

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
      size_t comma = find_unquoted(h.value, ',');
      if (comma != std::string_view::npos) w.line(h.name, trim(h.value.substr(comma + 1)));
      continue;
    }
    if (h.id == HeaderId::Route && routes_left > 0) {
      // Drop values from the front of this line until the count is used up.
      std::string_view rest = h.value;
      while (routes_left > 0 && !rest.empty()) {
        size_t comma = find_unquoted(rest, ',');
        --routes_left;
        rest = comma == std::string_view::npos ? std::string_view{} : trim(rest.substr(comma + 1));
      }
      if (!rest.empty()) w.line(h.name, rest);
      continue;
    }
    if (h.id == HeaderId::MaxForwards && e.max_forwards >= 0) {
      if (!mf_written) {
        w.uint_line("Max-Forwards", static_cast<uint64_t>(e.max_forwards));
        mf_written = true;
      }
      continue;
    }
    w.put(raw.substr(h.begin, h.end - h.begin));
  }
  if (e.max_forwards >= 0 && !mf_written)
    w.uint_line("Max-Forwards", static_cast<uint64_t>(e.max_forwards));
  for (auto line : e.add_headers) {
    w.put(line);
    w.put("\r\n");
  }
  // Content-Length is always written and always true (§18.3 / §20.14).
  w.uint_line("Content-Length", body.size());
  w.put("\r\n");
  w.put(body);
  const size_t size = static_cast<size_t>(w.p - scratch.data());
  assert(size <= bound);
  out.assign(scratch.data(), size);
}

}  // namespace sb::core
