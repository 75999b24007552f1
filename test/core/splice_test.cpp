// core/splice: the forwarded bytes are the received ones plus the proxy's edits (RFC 3261
// §16.6, §16.7); the output re-parses and says what the edits asked for.
#include <doctest/doctest.h>

#include <deque>
#include <string>
#include <vector>

#include "core/splice.h"
#include "test/core/sip_test_util.h"

using namespace sb::core;
using sb::core::test::err;
using sb::core::test::values;

namespace {

const std::string kInvite =
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK74bf9.1;rport\r\n"
    "Max-Forwards: 70\r\n"
    "Route: <sip:proxy.example.com;lr>, <sip:next.example.com;lr>\r\n"
    "Route: <sip:last.example.com;lr>\r\n"
    "From: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    "CSeq: 31862 INVITE\r\n"
    "X-Unknown: ;;,,;;,;\r\n"
    "Content-Type: text/plain\r\n"
    "l: 5\r\n"
    "\r\n"
    "hello";

std::string forward(const Message& m, const SpliceEdits& e) {
  std::string out;
  splice(m, e, out);
  return out;
}

// The output stays alive for the rest of the run: the Message's views point into it.
Message reparse(std::string out) {
  static std::deque<std::string> kept;
  kept.push_back(std::move(out));
  Message m;
  Status st = m.parse(kept.back());
  REQUIRE_MESSAGE(st.ok(), err(st) << "\n" << kept.back());
  return m;
}

}  // namespace

TEST_CASE("splice: no edits copies the message and writes a true Content-Length") {
  Message m;
  REQUIRE(m.parse(kInvite).ok());
  std::string out = forward(m, {});
  std::string expect = kInvite;
  expect.replace(expect.find("l: 5\r\n"), 6, "");
  expect.insert(expect.find("\r\n\r\n") + 2, "Content-Length: 5\r\n");
  CHECK(out == expect);
  Message f = reparse(out);
  CHECK(f.body() == "hello");
}

TEST_CASE("splice: a request forwarded by a proxy (§16.6)") {
  Message m;
  REQUIRE(m.parse(kInvite).ok());
  std::string_view rr[] = {"<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"};
  SpliceEdits e;
  e.request_uri = "sip:bob@192.0.2.200:5062";
  e.add_via = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKsb0.1a2b";
  e.max_forwards = 69;
  e.remove_routes = 1;
  e.add_record_route = rr;
  std::string out = forward(m, e);
  CHECK(out ==
        "INVITE sip:bob@192.0.2.200:5062 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKsb0.1a2b\r\n"
        "Record-Route: <sip:p2.example.com;lr>\r\n"
        "Record-Route: <sip:p1.example.com;lr>\r\n"
        "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK74bf9.1;rport\r\n"
        "Max-Forwards: 69\r\n"
        "Route: <sip:next.example.com;lr>\r\n"
        "Route: <sip:last.example.com;lr>\r\n"
        "From: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
        "To: Bob <sip:bob@biloxi.example.com>\r\n"
        "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
        "CSeq: 31862 INVITE\r\n"
        "X-Unknown: ;;,,;;,;\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Length: 5\r\n"
        "\r\n"
        "hello");
  Message f = reparse(out);
  CHECK(f.ruri().host == "192.0.2.200");
  CHECK(f.ruri().port == 5062);
  CHECK(f.top_via().branch == "z9hG4bKsb0.1a2b");
  CHECK(f.via_count() == 2);
  CHECK(f.max_forwards() == 69);
  CHECK(values(f, HeaderId::Route) ==
        std::vector<std::string>{"<sip:next.example.com;lr>", "<sip:last.example.com;lr>"});
  CHECK(values(f, HeaderId::RecordRoute) ==
        std::vector<std::string>{"<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"});
  CHECK(f.find("X-Unknown")->value == ";;,,;;,;");
  CHECK(f.call_id() == m.call_id());
  CHECK(f.body() == "hello");
}

TEST_CASE("splice: removing Route values across lines") {
  Message m;
  REQUIRE(m.parse(kInvite).ok());
  SpliceEdits e;
  e.remove_routes = 2;  // the whole first line
  Message f = reparse(forward(m, e));
  CHECK(values(f, HeaderId::Route) == std::vector<std::string>{"<sip:last.example.com;lr>"});
  e.remove_routes = 3;
  Message g = reparse(forward(m, e));
  CHECK(g.count(HeaderId::Route) == 0);
  e.remove_routes = 10;  // more than there are
  Message h = reparse(forward(m, e));
  CHECK(h.count(HeaderId::Route) == 0);
  // Quoted commas inside a Route value do not split it.
  std::string q = kInvite;
  q.replace(q.find("<sip:proxy.example.com;lr>"), 26, "\"a, b\" <sip:proxy.example.com;lr>");
  REQUIRE(m.parse(q).ok());
  e.remove_routes = 1;
  Message k = reparse(forward(m, e));
  CHECK(values(k, HeaderId::Route) ==
        std::vector<std::string>{"<sip:next.example.com;lr>", "<sip:last.example.com;lr>"});
}

TEST_CASE("splice: Route added on top (strict routing, §16.12) and Max-Forwards added") {
  std::string bytes = test::request();
  bytes.erase(bytes.find("Max-Forwards: 70\r\n"), 18);
  Message m;
  REQUIRE(m.parse(bytes).ok());
  CHECK(m.max_forwards() == -1);
  std::string_view routes[] = {"<sip:a.example.com;lr>", "<sip:b.example.com;lr>"};
  SpliceEdits e;
  e.add_route = routes;
  e.max_forwards = 70;
  Message f = reparse(forward(m, e));
  CHECK(f.max_forwards() == 70);
  CHECK(f.count(HeaderId::MaxForwards) == 1);
  CHECK(values(f, HeaderId::Route) ==
        std::vector<std::string>{"<sip:a.example.com;lr>", "<sip:b.example.com;lr>"});
}

TEST_CASE("splice: a response loses its top Via value (§16.7 step 3)") {
  std::string one_line =
      "SIP/2.0 200 OK\r\n"
      "Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKsb0.1, SIP/2.0/UDP 192.0.2.101;branch=z9hG4bKa\r\n"
      "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKb\r\n"
      "To: <sip:b@x>;tag=2\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
      "Content-Length: 0\r\n\r\n";
  Message m;
  REQUIRE(m.parse(one_line).ok());
  CHECK(m.via_count() == 3);
  SpliceEdits e;
  e.remove_top_via = true;
  std::string out = forward(m, e);
  CHECK(out.find("Via: SIP/2.0/UDP 192.0.2.101;branch=z9hG4bKa\r\n"
                 "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKb\r\n") != std::string::npos);
  Message f = reparse(out);
  CHECK(f.via_count() == 2);
  CHECK(f.top_via().host == "192.0.2.101");
  CHECK(f.status() == 200);

  // The top Via alone on its line: the line goes; compact and folded forms too.
  std::string own_line =
      "SIP/2.0 180 Ringing\r\n"
      "v: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKsb0.1\r\n"
      "Via: SIP/2.0/UDP 192.0.2.101\r\n ;branch=z9hG4bKa\r\n"
      "To: <sip:b@x>;tag=2\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
  REQUIRE(m.parse(own_line).ok());
  Message g = reparse(forward(m, e));
  CHECK(g.via_count() == 1);
  CHECK(g.top_via().branch == "z9hG4bKa");
  CHECK(g.content_length() == 0);
}

TEST_CASE("splice: headers removed and added, body replaced") {
  Message m;
  REQUIRE(m.parse(kInvite).ok());
  // Index of X-Unknown and Content-Type.
  std::vector<uint16_t> drop;
  for (size_t i = 0; i < m.headers().size(); ++i)
    if (m.headers()[i].name == "X-Unknown" || m.headers()[i].id == HeaderId::ContentType)
      drop.push_back(static_cast<uint16_t>(i));
  REQUIRE(drop.size() == 2);
  std::string_view add[] = {"Content-Type: application/sdp", "P-Asserted-Identity: <sip:a@x>"};
  std::string sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n";
  SpliceEdits e;
  e.remove_headers = drop;
  e.add_headers = add;
  e.body = sdp;
  std::string out = forward(m, e);
  Message f = reparse(out);
  CHECK(f.find("X-Unknown") == nullptr);
  CHECK(f.count(HeaderId::ContentType) == 1);
  CHECK(f.find(HeaderId::ContentType)->value == "application/sdp");
  CHECK(f.find("P-Asserted-Identity")->value == "<sip:a@x>");
  CHECK(f.content_length() == int64_t(sdp.size()));
  CHECK(f.body() == sdp);
  // An empty replacement body.
  e.body = std::string_view{};
  Message g = reparse(forward(m, e));
  CHECK(g.content_length() == 0);
  CHECK(g.body().empty());
}

TEST_CASE("splice: a datagram without Content-Length gets one; bytes after the body go") {
  std::string bytes = test::msg({"MESSAGE sip:x SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
                                 "To: <sip:b@x>", "From: <sip:a@x>;tag=1", "Call-ID: ci",
                                 "CSeq: 1 MESSAGE"},
                                "text", false);
  Message m;
  REQUIRE(m.parse(bytes).ok());
  Message f = reparse(forward(m, {}));
  CHECK(f.content_length() == 4);
  CHECK(f.body() == "text");
  std::string trailing = test::request({}, "ab") + "junk after";
  REQUIRE(m.parse(trailing).ok());
  std::string out = forward(m, {});
  CHECK(out.find("junk") == std::string::npos);
  CHECK(reparse(out).body() == "ab");
}

TEST_CASE("splice: leading CRLFs and RFC 4475 messages survive forwarding") {
  std::string bytes = "\r\n\r\n" + test::request();
  Message m;
  REQUIRE(m.parse(bytes).ok());
  std::string out = forward(m, {});
  CHECK(out.substr(0, 7) == "OPTIONS");
  for (const char* file : {"wsinv.dat", "esc01.dat", "longreq.dat", "mpart01.dat", "intmeth.dat",
                           "rfc5118/mult-ip-in-header.dat", "inv2543.dat", "dblreq.dat"}) {
    CAPTURE(file);
    std::string t = test::torture(file);
    REQUIRE(m.parse(t).ok());
    SpliceEdits e;
    e.add_via = "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKsb0.9";
    e.max_forwards = 10;
    e.request_uri = "sip:next@192.0.2.20";
    e.remove_routes = 1;
    Message f = reparse(forward(m, e));
    CHECK(f.via_count() == m.via_count() + 1);
    CHECK(f.max_forwards() == 10);
    CHECK(f.ruri().host == "192.0.2.20");
    CHECK(f.body() == m.body());
    CHECK(f.call_id() == m.call_id());
    CHECK(f.cseq().number == m.cseq().number);
    CHECK(f.from().tag() == m.from().tag());
    CHECK(f.headers().size() + 1 >= m.headers().size());
  }
}

TEST_CASE("splice: the output buffer is allocated once, at its exact size") {
  Message m;
  REQUIRE(m.parse(kInvite).ok());
  SpliceEdits e;
  e.add_via = "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKsb0.1";
  std::string out;
  splice(m, e, out);
  size_t cap = out.capacity();
  const char* data = out.data();
  // Of exactly the output's size: a client transaction keeps its request for its whole life.
  CHECK(out.size() == cap);
  splice(m, e, out);  // reused: no new allocation
  CHECK(out.data() == data);
  CHECK(reparse(out).via_count() == 2);
}
