#include "transport/stream_reader.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using sb::core::Frame;
using sb::transport::detail::StreamReader;

namespace {

std::string msg(const std::string& call_id, const std::string& body = "") {
  return "OPTIONS sip:a@example.com SIP/2.0\r\n"
         "Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK" + call_id + "\r\n"
         "Call-ID: " + call_id + "\r\n"
         "CSeq: 1 OPTIONS\r\n"
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

struct Got {
  Frame::Kind kind;
  std::string bytes;
  int status = 0;
};

struct Collect {
  std::vector<Got> frames;
  bool operator()(const Frame& f, std::string_view b) {
    frames.push_back(Got{f.kind, std::string(b), f.error.status});
    return true;
  }
};

}  // namespace

TEST_CASE("stream reader: two messages in one read") {
  StreamReader r(65535);
  Collect c;
  std::string a = msg("one", "hello"), b = msg("two");
  CHECK(r.feed(a + b, std::ref(c)));
  REQUIRE(c.frames.size() == 2);
  CHECK(c.frames[0].bytes == a);
  CHECK(c.frames[1].bytes == b);
  CHECK(r.buffered() == 0);
}

TEST_CASE("stream reader: one message split at every position") {
  std::string m = msg("split", "v=0\r\n");
  for (size_t cut = 1; cut < m.size(); ++cut) {
    StreamReader r(65535);
    Collect c;
    CHECK(r.feed(std::string_view(m).substr(0, cut), std::ref(c)));
    CHECK(c.frames.empty());
    CHECK(r.buffered() == cut);
    CHECK(r.feed(std::string_view(m).substr(cut), std::ref(c)));
    REQUIRE(c.frames.size() == 1);
    CHECK(c.frames[0].bytes == m);
    CHECK(r.buffered() == 0);
  }
}

TEST_CASE("stream reader: byte by byte, messages and keep-alives in order") {
  std::string a = msg("a", "xyz"), b = msg("b");
  std::string stream = a + "\r\n\r\n" + b + "\r\n" + "\n";
  StreamReader r(65535);
  Collect c;
  for (char ch : stream) CHECK(r.feed(std::string_view(&ch, 1), std::ref(c)));
  // The final CRLF is held until the next byte shows it is not half a ping; the lone LF
  // after it is a stray line end, skipped.
  REQUIRE(c.frames.size() == 5);
  CHECK(c.frames[0].kind == Frame::Kind::Message);
  CHECK(c.frames[0].bytes == a);
  CHECK(c.frames[1].kind == Frame::Kind::Ping);
  CHECK(c.frames[2].kind == Frame::Kind::Message);
  CHECK(c.frames[2].bytes == b);
  CHECK(c.frames[3].kind == Frame::Kind::Pong);
  CHECK(c.frames[4].kind == Frame::Kind::Pong);
  CHECK(r.buffered() == 0);
}

TEST_CASE("stream reader: a ping split after its first CRLF is still a ping") {
  StreamReader r(65535);
  Collect c;
  CHECK(r.feed("\r\n", std::ref(c)));
  CHECK(c.frames.empty());
  CHECK(r.feed("\r\n", std::ref(c)));
  REQUIRE(c.frames.size() == 1);
  CHECK(c.frames[0].kind == Frame::Kind::Ping);
  // A CRLF followed by a message is a pong, then the message.
  CHECK(r.feed("\r\n" + msg("m"), std::ref(c)));
  REQUIRE(c.frames.size() == 3);
  CHECK(c.frames[1].kind == Frame::Kind::Pong);
  CHECK(c.frames[2].kind == Frame::Kind::Message);
}

TEST_CASE("stream reader: a message after a tail left from the previous read") {
  std::string a = msg("a"), b = msg("b", "body"), d = msg("d");
  std::string all = a + b + d;
  StreamReader r(65535);
  Collect c;
  size_t cut1 = a.size() + 10, cut2 = a.size() + b.size() + 3;
  CHECK(r.feed(std::string_view(all).substr(0, cut1), std::ref(c)));
  CHECK(r.feed(std::string_view(all).substr(cut1, cut2 - cut1), std::ref(c)));
  CHECK(r.feed(std::string_view(all).substr(cut2), std::ref(c)));
  REQUIRE(c.frames.size() == 3);
  CHECK(c.frames[0].bytes == a);
  CHECK(c.frames[1].bytes == b);
  CHECK(c.frames[2].bytes == d);
}

TEST_CASE("stream reader: missing Content-Length is a 400 framing error and stops") {
  StreamReader r(65535);
  Collect c;
  std::string bad = "OPTIONS sip:a@example.com SIP/2.0\r\nCall-ID: x\r\n\r\n";
  CHECK_FALSE(r.feed(bad + msg("after"), std::ref(c)));
  REQUIRE(c.frames.size() == 1);
  CHECK(c.frames[0].kind == Frame::Kind::Error);
  CHECK(c.frames[0].status == 400);
  CHECK(c.frames[0].bytes == bad);
  CHECK(r.buffered() == 0);
}

TEST_CASE("stream reader: a header block beyond the limit is a 513, also when trickled") {
  StreamReader r(200);
  Collect c;
  std::string head = "OPTIONS sip:a@example.com SIP/2.0\r\n";
  while (head.size() < 300) head += "X-Pad: aaaaaaaaaaaaaaaaaaaa\r\n";
  bool ok = true;
  for (size_t i = 0; i < head.size() && ok; i += 7)
    ok = r.feed(std::string_view(head).substr(i, 7), std::ref(c));
  CHECK_FALSE(ok);
  REQUIRE(c.frames.size() == 1);
  CHECK(c.frames[0].kind == Frame::Kind::Error);
  CHECK(c.frames[0].status == 513);
}

TEST_CASE("stream reader: a Content-Length beyond the limit is a 513") {
  StreamReader r(300);
  Collect c;
  std::string m = msg("big", std::string(400, 'x'));
  CHECK_FALSE(r.feed(m, std::ref(c)));
  REQUIRE(c.frames.size() == 1);
  CHECK(c.frames[0].status == 513);
}

TEST_CASE("stream reader: the callback can stop the stream") {
  StreamReader r(65535);
  int calls = 0;
  CHECK_FALSE(r.feed(msg("a") + msg("b"), [&](const Frame&, std::string_view) {
    ++calls;
    return false;
  }));
  CHECK(calls == 1);
  CHECK(r.buffered() == 0);
}

TEST_CASE("stream reader: a large message trickled in small pieces arrives whole") {
  std::string m = msg("trickle", std::string(20000, 'b'));
  StreamReader r(65535);
  Collect c;
  for (size_t i = 0; i < m.size(); i += 3) CHECK(r.feed(std::string_view(m).substr(i, 3), std::ref(c)));
  REQUIRE(c.frames.size() == 1);
  CHECK(c.frames[0].bytes == m);
  CHECK(r.buffered() == 0);
}
