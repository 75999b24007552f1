// core/framing: cutting a TCP/TLS byte stream into messages (RFC 3261 §18.3) and RFC 5626
// keep-alives.
#include <doctest/doctest.h>

#include <string>

#include "core/framing.h"
#include "test/core/sip_test_util.h"

using namespace sb::core;
using Kind = Frame::Kind;

namespace {
constexpr size_t kMax = 65536;
}

TEST_CASE("framing: keep-alive ping and pong (RFC 5626 §3.5.1)") {
  Frame f = next_frame("\r\n\r\n", kMax);
  CHECK(f.kind == Kind::Ping);
  CHECK(f.length == 4);
  f = next_frame("\r\nX", kMax);
  CHECK(f.kind == Kind::Pong);
  CHECK(f.length == 2);
  // May still become a ping: a TCP segment can end anywhere.
  CHECK(next_frame("\r\n", kMax).kind == Kind::NeedMore);
  CHECK(next_frame("\r\n\r", kMax).kind == Kind::NeedMore);
  f = next_frame("\r\n\rX", kMax);
  CHECK(f.kind == Kind::Pong);
  CHECK(f.length == 2);
  CHECK(next_frame("\r", kMax).kind == Kind::NeedMore);
  CHECK(next_frame("", kMax).kind == Kind::NeedMore);
  f = next_frame("\n", kMax);
  CHECK(f.kind == Kind::Pong);
  CHECK(f.length == 1);
  f = next_frame("\r\nINVITE", kMax);
  CHECK(f.kind == Kind::Pong);
  CHECK(f.length == 2);
  f = next_frame("\r\n\r\nINVITE", kMax);
  CHECK(f.kind == Kind::Ping);
  f = next_frame("\rX", kMax);
  CHECK(f.length == 1);
}

TEST_CASE("framing: one message, then two in one buffer") {
  std::string a = test::request({}, "hello", "MESSAGE");
  std::string b = test::request({}, "", "OPTIONS");
  Frame f = next_frame(a, kMax);
  CHECK(f.kind == Kind::Message);
  CHECK(f.length == a.size());
  std::string both = a + b;
  f = next_frame(both, kMax);
  REQUIRE(f.kind == Kind::Message);
  CHECK(f.length == a.size());
  Message m;
  REQUIRE(m.parse(std::string_view(both).substr(0, f.length)).ok());
  CHECK(m.body() == "hello");
  Frame g = next_frame(std::string_view(both).substr(f.length), kMax);
  REQUIRE(g.kind == Kind::Message);
  CHECK(g.length == b.size());
  REQUIRE(m.parse(std::string_view(both).substr(f.length, g.length)).ok());
  CHECK(m.method() == Method::Options);
}

TEST_CASE("framing: a message split at every byte") {
  std::string a = test::request({}, "0123456789", "MESSAGE");
  for (size_t cut = 0; cut < a.size(); ++cut) {
    CAPTURE(cut);
    Frame f = next_frame(std::string_view(a).substr(0, cut), kMax);
    CHECK(f.kind == Kind::NeedMore);
  }
  // Fed piece by piece with a state, as a connection does.
  FrameState st;
  std::string buf;
  Frame f;
  for (char c : a) {
    buf += c;
    f = next_frame(buf, kMax, st);
    if (f.kind != Kind::NeedMore) break;
  }
  CHECK(f.kind == Kind::Message);
  CHECK(f.length == a.size());
  CHECK(buf.size() == a.size());
  CHECK(st.scanned == 0);
  CHECK(st.total == 0);
}

TEST_CASE("framing: Content-Length in any form") {
  for (const char* line : {"Content-Length: 3", "content-length:3", "l: 3", "L :  3",
                           "Content-Length:\r\n 3", "CONTENT-LENGTH   :\t3  "}) {
    CAPTURE(line);
    std::string m = test::msg({"MESSAGE sip:x SIP/2.0", "Via: SIP/2.0/TCP h", line}, "abc", false);
    Frame f = next_frame(m + "NEXT", kMax);
    REQUIRE(f.kind == Kind::Message);
    CHECK(f.length == m.size());
  }
  // A header merely containing the name does not count.
  std::string m = test::msg({"MESSAGE sip:x SIP/2.0", "X-Content-Length: 9", "Lx: 9", "l: 1"},
                            "a", false);
  CHECK(next_frame(m, kMax).length == m.size());
  // The same value twice is fine; two different ones are an error.
  std::string same = test::msg({"MESSAGE sip:x SIP/2.0", "l: 1", "Content-Length: 1"}, "a", false);
  CHECK(next_frame(same, kMax).kind == Kind::Message);
  std::string two = test::msg({"MESSAGE sip:x SIP/2.0", "Content-Length: 13", "Content-Length: 5"},
                              "", false);
  Frame f = next_frame(two, kMax);
  CHECK(f.kind == Kind::Error);
  CHECK(describe(f.error) == "bad Content-Length: conflicting values");
}

TEST_CASE("framing: missing or bad Content-Length on a stream") {
  std::string none = test::msg({"MESSAGE sip:x SIP/2.0", "Via: SIP/2.0/TCP h"}, "", false);
  Frame f = next_frame(none + "body", kMax);
  REQUIRE(f.kind == Kind::Error);
  CHECK(f.error.status == 400);
  CHECK(describe(f.error) == "bad Content-Length: missing on a stream");
  CHECK(f.length == none.size());
  for (const char* v : {"-999", "abc", "", "99999999999"}) {
    CAPTURE(v);
    std::string bad = test::msg({"MESSAGE sip:x SIP/2.0", std::string("Content-Length: ") + v},
                                "", false);
    f = next_frame(bad, kMax);
    REQUIRE(f.kind == Kind::Error);
    CHECK(f.error.header == "Content-Length");
  }
}

TEST_CASE("framing: oversize messages are 513") {
  std::string big = test::request({}, std::string(2000, 'x'), "MESSAGE");
  Frame f = next_frame(big, 1000);
  REQUIRE(f.kind == Kind::Error);
  CHECK(f.error.status == 513);
  // Headers that never end.
  std::string endless = "INVITE sip:x SIP/2.0\r\nX: " + std::string(2000, 'y');
  f = next_frame(endless, 1000);
  REQUIRE(f.kind == Kind::Error);
  CHECK(f.error.status == 513);
  CHECK(f.length == endless.size());
  CHECK(next_frame(std::string_view(endless).substr(0, 900), 1000).kind == Kind::NeedMore);
  // Content-Length alone pushes it over.
  std::string claim = test::msg({"MESSAGE sip:x SIP/2.0", "l: 4294967295"}, "", false);
  CHECK(next_frame(claim, kMax).error.status == 513);
  // Exactly at the limit is fine.
  std::string exact = test::request({}, "abc", "MESSAGE");
  CHECK(next_frame(exact, exact.size()).kind == Kind::Message);
  CHECK(next_frame(exact, exact.size() - 1).kind == Kind::Error);
}

TEST_CASE("framing: every RFC 4475 message with a Content-Length frames to its parse") {
  for (const char* file : {"wsinv.dat", "esc01.dat", "longreq.dat", "mpart01.dat", "dblreq.dat",
                           "intmeth.dat", "unreason.dat", "rfc5118/ipv6-in-sdp.dat"}) {
    CAPTURE(file);
    std::string bytes = test::torture(file);
    Frame f = next_frame(bytes, kMax);
    REQUIRE(f.kind == Kind::Message);
    Message m;
    REQUIRE(m.parse(std::string_view(bytes).substr(0, f.length)).ok());
    CHECK(f.length == m.raw().size());
  }
  // dblreq: the second message follows.
  std::string dbl = test::torture("dblreq.dat");
  Frame f = next_frame(dbl, kMax);
  Frame g = next_frame(std::string_view(dbl).substr(f.length), kMax);
  CHECK(g.kind == Kind::Pong);  // the extra CRLF between them
}
