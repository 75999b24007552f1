// The fuzz targets' logic, shared by the libFuzzer entry points (fuzz_parser.cpp,
// fuzz_framing.cpp) and by the unit test that replays the seed corpus in every `make test`
// (test/core/fuzz_replay_test.cpp). Besides "no crash, no sanitizer report", each target
// checks invariants and aborts when one breaks:
//  - parser: a message that parses, forwarded with the usual proxy edits, parses again and
//    keeps its Call-ID, CSeq and body; a response built for it parses too.
//  - framing: feeding the bytes in pieces yields the same frames as all at once; every
//    frame is within the buffer and makes progress.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/framing.h"
#include "core/message.h"
#include "core/response.h"
#include "core/sip_headers.h"
#include "core/splice.h"
#include "core/uri.h"

#define SB_FUZZ_CHECK(cond)                                                        \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, \
                   __LINE__);                                                      \
      std::abort();                                                                \
    }                                                                              \
  } while (0)

namespace sb::fuzz {

// Keeps the optimiser from dropping a computed value.
inline volatile size_t g_sink = 0;
inline void use(std::string_view s) { g_sink = g_sink + s.size(); }
inline void use(bool b) { g_sink = g_sink + (b ? 1 : 0); }

inline void exercise_uri(const core::Uri& u, const core::Uri& other) {
  use(u.hostport());
  use(u.param("transport").has_value());
  use(u.param("lr").has_value());
  use(core::canonical_aor(u));
  use(core::uri_equal(u, other));
  use(core::uri_equal(u, u));
  std::string out;
  use(core::unescape(u.user, out));
}

// Every typed parser on one header value or list element.
inline void exercise_value(std::string_view v, const core::Uri& ruri) {
  core::Via via;
  if (core::parse_via(v, via).ok()) {
    use(via.param("branch").has_value());
    use(via.rfc3261_branch());
  }
  core::NameAddr na;
  if (core::parse_name_addr(v, na).ok()) {
    use(na.tag());
    exercise_uri(na.uri, ruri);
  }
  if (auto c = core::parse_contact(v)) use(c->expires.has_value());
  if (auto c = core::parse_cseq(v)) use(c->method_text);
  if (auto a = core::parse_auth(v)) {
    use(a->param("realm").has_value());
    use(a->param("nonce").has_value());
  }
  use(core::parse_max_forwards(v).ok());
  use(core::parse_delta_seconds(v, "bad").ok());
  if (auto u = core::parse_uri(v)) exercise_uri(*u, ruri);
  use(core::find_param(v, "tag").has_value());
}

inline int parser_one(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  core::Message m;
  core::Status st = m.parse(in);
  if (!st) use(core::describe(st.error()));

  // Typed parsers on every header, whole and element by element.
  for (const core::Header& h : m.headers()) {
    SB_FUZZ_CHECK(h.begin < h.end && h.end <= in.size());
    use(core::parse_auth(h.value).ok());
    core::for_each_list_element(h.value, [&](std::string_view v) {
      exercise_value(v, m.ruri());
      return true;
    });
  }
  exercise_uri(m.ruri(), m.to().uri);
  use(m.find("X-Unknown") != nullptr);

  // Responses to requests, also to ones that failed (the 400 path).
  if (m.is_request() && (st.ok() || m.via_usable())) {
    core::ResponseSpec spec;
    spec.status = st.ok() ? 200 : st.error().status;
    std::string reason = st.ok() ? std::string() : core::describe(st.error());
    spec.reason = reason;
    spec.to_tag = "sbfuzz";
    std::string_view extra[] = {"Server: fuzz"};
    spec.headers = extra;
    std::string resp = core::build_response(m, spec);
    core::Message r;
    core::ParseOptions big;
    big.max_headers = 100000;
    core::Status rs = r.parse(resp, big);
    if (st.ok()) {
      SB_FUZZ_CHECK(rs.ok());
      SB_FUZZ_CHECK(r.call_id() == m.call_id());
      SB_FUZZ_CHECK(r.cseq().number == m.cseq().number);
      SB_FUZZ_CHECK(r.via_count() == m.via_count());
    }
  }
  if (!st) return 0;

  // Forwarding: the edits a proxy makes, then the result must parse and say the same.
  std::string_view rr[] = {"<sip:192.0.2.10:5060;lr>"};
  std::string_view route[] = {"<sip:192.0.2.11;lr>"};
  std::string_view add[] = {"X-Fuzz: 1"};
  std::vector<uint16_t> drop;
  for (size_t i = 0; i < m.headers().size(); ++i) {
    core::HeaderId id = m.headers()[i].id;
    if (id == core::HeaderId::Other) drop.push_back(static_cast<uint16_t>(i));
  }
  const uint8_t knob = size ? data[size - 1] : 0;
  core::SpliceEdits e;
  if (m.is_request()) {
    e.request_uri = (knob & 1) ? "sip:next@192.0.2.20:5062" : "";
    e.add_via = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKsb0.1;rport";
    e.max_forwards = (knob & 2) ? 69 : -1;
    e.remove_routes = (knob >> 2) & 3;
    e.add_record_route = rr;
    if (knob & 16) e.add_route = route;
  } else {
    e.remove_top_via = m.via_count() > 1;
  }
  if (knob & 32) e.remove_headers = drop;
  if (knob & 64) e.add_headers = add;
  std::string new_body = "v=0\r\n";
  // A replacement body, sometimes an empty view with no data pointer at all.
  if (knob & 128) e.body = (data[0] & 1) ? std::string_view{} : std::string_view(new_body);
  std::string out;
  core::splice(m, e, out);
  core::Message f;
  core::ParseOptions big;
  big.max_headers = 100000;
  core::Status fs = f.parse(out, big);
  SB_FUZZ_CHECK(fs.ok());
  SB_FUZZ_CHECK(f.call_id() == m.call_id());
  SB_FUZZ_CHECK(f.cseq().number == m.cseq().number);
  SB_FUZZ_CHECK(f.body() == (e.body ? *e.body : m.body()));
  SB_FUZZ_CHECK(f.is_request() == m.is_request());
  if (m.is_request()) {
    SB_FUZZ_CHECK(f.via_count() == m.via_count() + 1);
    SB_FUZZ_CHECK(f.top_via().branch == "z9hG4bKsb0.1");
    if (e.max_forwards >= 0) SB_FUZZ_CHECK(f.max_forwards() == 69);
  } else {
    SB_FUZZ_CHECK(f.via_count() == m.via_count() - (e.remove_top_via ? 1 : 0));
  }
  return 0;
}

struct FrameRecord {
  core::Frame::Kind kind;
  size_t length;
  bool operator==(const FrameRecord&) const = default;
};

// All frames of `in` fed in pieces of `chunk` bytes (0: all at once), up to the first error.
inline std::vector<FrameRecord> frames(std::string_view in, size_t chunk, size_t max_bytes) {
  std::vector<FrameRecord> out;
  core::FrameState st;
  size_t off = 0;
  size_t avail = chunk ? 0 : in.size();
  while (true) {
    core::Frame f = core::next_frame(in.substr(off, avail - off), max_bytes, st);
    if (f.kind == core::Frame::Kind::NeedMore) {
      if (avail == in.size()) break;
      avail = std::min(in.size(), avail + chunk);
      continue;
    }
    SB_FUZZ_CHECK(f.length > 0 && off + f.length <= avail);
    out.push_back({f.kind, f.kind == core::Frame::Kind::Error ? 0 : f.length});
    if (f.kind == core::Frame::Kind::Message) {
      core::Message m;
      (void)m.parse(in.substr(off, f.length));
    }
    if (f.kind == core::Frame::Kind::Error) break;
    off += f.length;
  }
  return out;
}

inline int framing_one(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  // A limit the fuzzer can reach, and the real one.
  const size_t small = 512 + (size ? data[0] : 0);
  for (size_t max_bytes : {small, size_t(65536)}) {
    std::vector<FrameRecord> whole = frames(in, 0, max_bytes);
    for (size_t chunk : {size_t(1), size_t(7), size_t(100)}) {
      std::vector<FrameRecord> pieces = frames(in, chunk, max_bytes);
      // Up to the first error the frames agree (an oversize error may come earlier when
      // bytes trickle in, with a different length).
      size_t n = std::min(whole.size(), pieces.size());
      for (size_t i = 0; i < n; ++i) {
        SB_FUZZ_CHECK(whole[i].kind == pieces[i].kind);
        if (whole[i].kind == core::Frame::Kind::Error) break;
        SB_FUZZ_CHECK(whole[i].length == pieces[i].length);
      }
      bool ends_in_error = (!whole.empty() && whole.back().kind == core::Frame::Kind::Error) ||
                           (!pieces.empty() && pieces.back().kind == core::Frame::Kind::Error);
      if (!ends_in_error) SB_FUZZ_CHECK(whole.size() == pieces.size());
    }
  }
  return 0;
}

}  // namespace sb::fuzz
