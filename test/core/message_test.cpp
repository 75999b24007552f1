// core/message: start line, header lines (compact forms, case, folding, lists), the typed
// headers, the body rules (§18.3) and the limits.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/header_id.h"
#include "core/message.h"
#include "test/core/sip_test_util.h"

using namespace sb::core;
using sb::core::test::err;
using sb::core::test::request;
using sb::core::test::values;

TEST_CASE("message: a plain request") {
  std::string bytes = request({"Contact: <sip:alice@192.0.2.1>"}, "v=0\r\n", "INVITE");
  Message m;
  REQUIRE_MESSAGE(m.parse(bytes).ok(), err(m.parse(bytes)));
  CHECK(m.is_request());
  CHECK(m.method() == Method::Invite);
  CHECK(m.method_text() == "INVITE");
  CHECK(m.ruri_text() == "sip:bob@example.com");
  CHECK(m.ruri().user == "bob");
  CHECK(m.has_via());
  CHECK(m.via_usable());
  CHECK(m.via_count() == 1);
  CHECK(m.top_via().branch == "z9hG4bK776asdhds");
  CHECK(m.top_via().port == 5060);
  CHECK(m.max_forwards() == 70);
  CHECK(m.to().display == "Bob");
  CHECK(m.from().tag() == "1928301774");
  CHECK(m.has_from());
  CHECK(m.has_to());
  CHECK(m.call_id() == "a84b4c76e66710@pc33.example.com");
  CHECK(m.cseq().number == 314159);
  CHECK(m.cseq().method == Method::Invite);
  CHECK(m.content_length() == 5);
  CHECK(m.body() == "v=0\r\n");
  CHECK(m.raw() == bytes);
  CHECK(m.headers().size() == 8);
  CHECK(m.start() == 0);
  CHECK(m.headers_begin() == bytes.find("Via:"));
  CHECK(m.start_line_end() == m.headers_begin());
  CHECK(m.headers_end() == bytes.find("\r\n\r\n") + 2);
  const Header& via = m.headers()[0];
  CHECK(via.id == HeaderId::Via);
  CHECK(via.name == "Via");
  CHECK(bytes.substr(via.begin, via.end - via.begin) ==
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n");
}

TEST_CASE("message: a response") {
  std::string bytes = test::msg({"SIP/2.0 180 Ringing", "Via: SIP/2.0/UDP h;branch=z9hG4bKa",
                                 "To: <sip:b@x>;tag=2", "From: <sip:a@x>;tag=1", "Call-ID: c",
                                 "CSeq: 1 INVITE"});
  Message m;
  REQUIRE(m.parse(bytes).ok());
  CHECK(m.is_response());
  CHECK(m.status() == 180);
  CHECK(m.reason() == "Ringing");
  CHECK(m.method() == Method::Other);
  CHECK(m.cseq().method == Method::Invite);  // a response's CSeq names any method
  CHECK(m.max_forwards() == -1);
  // Reason phrases may hold spaces; the status code must be three digits in range.
  std::string multi = bytes;
  multi.replace(8, 11, "486 Busy Here");
  REQUIRE(m.parse(multi).ok());
  CHECK(m.reason() == "Busy Here");
  for (const char* line : {"SIP/2.0 1800 Ringing", "SIP/2.0 099 Low", "SIP/2.0 700 High",
                           "SIP/2.0 18 Ringing", "SIP/2.0 abc x", "SIP/2.0", "SIP/2.x 200 OK"}) {
    CAPTURE(line);
    std::string b = test::msg({line, "Via: SIP/2.0/UDP h", "To: <sip:b@x>", "From: <sip:a@x>",
                               "Call-ID: c", "CSeq: 1 INVITE"});
    Status st = m.parse(b);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().header == "Status-Line");
  }
  std::string v3 = test::msg({"SIP/3.0 200 OK", "Via: SIP/2.0/UDP h", "To: <sip:b@x>",
                              "From: <sip:a@x>", "Call-ID: c", "CSeq: 1 INVITE"});
  CHECK(m.parse(v3).error().status == 505);
  std::string bare = test::msg({"SIP/2.0 200", "Via: SIP/2.0/UDP h", "To: <sip:b@x>",
                                "From: <sip:a@x>", "Call-ID: c", "CSeq: 1 INVITE"});
  REQUIRE(m.parse(bare).ok());  // no reason phrase at all: tolerated
  CHECK(m.reason().empty());
}

TEST_CASE("message: a response's From and To are delimited, their URIs not parsed") {
  // A proxy relays a response by its Via, CSeq and tags (§16.7): a URI there that would fail
  // a request does not stop the response, and the tags are still read.
  const char* bad_uri = "<sip:a@[2001:db8::1>;tag=1";  // an unterminated IPv6 reference
  std::string resp = test::msg({"SIP/2.0 200 OK", "Via: SIP/2.0/UDP h;branch=z9hG4bKa",
                                "To: <sip:b@x;>;tag=2", std::string("From: ") + bad_uri,
                                "Call-ID: c", "CSeq: 1 INVITE"});
  Message m;
  REQUIRE_MESSAGE(m.parse(resp).ok(), err(m.parse(resp)));
  CHECK(m.from().tag() == "1");
  CHECK(m.to().tag() == "2");
  CHECK(m.from().uri_text == "sip:a@[2001:db8::1");
  CHECK(m.to().uri_text == "sip:b@x;");
  CHECK(m.from().uri.raw.empty());  // not parsed
  // The name-addr around the URI is still checked.
  std::string broken = resp;
  broken.replace(broken.find(bad_uri), std::string(bad_uri).size(), "<sip:a@x;tag=1");
  CHECK(describe(m.parse(broken).error()) == "bad From: missing '>'");
  // A request's URIs are parsed: the same From is a 400 there.
  std::string req = request();
  size_t b = req.find("From: ");
  req.replace(b, req.find("\r\n", b) - b, std::string("From: ") + bad_uri);
  Status st = m.parse(req);
  REQUIRE_FALSE(st.ok());
  CHECK(describe(st.error()) == "bad From: unterminated IPv6 reference");
}

TEST_CASE("message: every compact form maps to its header") {
  struct C {
    char c;
    HeaderId id;
  } forms[] = {{'i', HeaderId::CallId},       {'m', HeaderId::Contact},
               {'e', HeaderId::ContentEncoding}, {'l', HeaderId::ContentLength},
               {'c', HeaderId::ContentType},  {'f', HeaderId::From},
               {'s', HeaderId::Subject},      {'k', HeaderId::Supported},
               {'t', HeaderId::To},           {'v', HeaderId::Via},
               {'o', HeaderId::Event},        {'u', HeaderId::AllowEvents},
               {'r', HeaderId::ReferTo},      {'b', HeaderId::ReferredBy},
               {'x', HeaderId::SessionExpires}, {'y', HeaderId::Identity},
               {'a', HeaderId::AcceptContact}, {'j', HeaderId::RejectContact},
               {'d', HeaderId::RequestDisposition}};
  for (const auto& f : forms) {
    CAPTURE(f.c);
    CHECK(header_id(std::string(1, f.c)) == f.id);
    CHECK(header_id(std::string(1, char(f.c - 32))) == f.id);
  }
  CHECK(header_id("n") == HeaderId::IdentityInfo);
  CHECK(header_id("z") == HeaderId::Other);
  CHECK(header_id("\xff") == HeaderId::Other);
  CHECK(header_id("") == HeaderId::Other);

  // A whole message written in compact forms.
  std::string bytes = test::msg({"INVITE sip:bob@example.com SIP/2.0",
                                 "v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKc",
                                 "t: <sip:bob@example.com>", "f: <sip:alice@example.com>;tag=1",
                                 "i: compact@example.com", "CSeq: 1 INVITE", "m: <sip:alice@h>",
                                 "c: application/sdp", "k: timer", "s: hi", "o: presence",
                                 "u: dialog", "r: <sip:carol@example.com>", "b: <sip:a@b>",
                                 "x: 1800", "e: gzip", "a: *;audio", "j: *;video", "d: proxy",
                                 "y: abc", "n: <https://x>;alg=rsa-sha1"},
                                "xy", false);
  bytes.insert(bytes.find("\r\n\r\n") + 2, "l: 2\r\n");
  Message m;
  REQUIRE_MESSAGE(m.parse(bytes).ok(), err(m.parse(bytes)));
  CHECK(m.call_id() == "compact@example.com");
  CHECK(m.top_via().branch == "z9hG4bKc");
  CHECK(m.content_length() == 2);
  CHECK(m.body() == "xy");
  for (HeaderId id : {HeaderId::Contact, HeaderId::ContentType, HeaderId::Supported,
                      HeaderId::Subject, HeaderId::Event, HeaderId::AllowEvents,
                      HeaderId::ReferTo, HeaderId::ReferredBy, HeaderId::SessionExpires,
                      HeaderId::ContentEncoding, HeaderId::AcceptContact,
                      HeaderId::RejectContact, HeaderId::RequestDisposition,
                      HeaderId::Identity, HeaderId::IdentityInfo}) {
    CAPTURE(header_name(id));
    REQUIRE(m.find(id));
    CHECK(m.find(id)->name.size() == 1);
    CHECK(m.count(id) == 1);
  }
}

TEST_CASE("message: header names are case-insensitive, full names all known") {
  for (int i = 1; i < kHeaderIdCount; ++i) {
    auto id = static_cast<HeaderId>(i);
    std::string name(header_name(id));
    CAPTURE(name);
    CHECK(header_id(name) == id);
    std::string upper = name, lower = name;
    for (auto& c : upper) c = char(toupper(c));
    for (auto& c : lower) c = char(tolower(c));
    CHECK(header_id(upper) == id);
    CHECK(header_id(lower) == id);
  }
  CHECK(header_id("Via2") == HeaderId::Other);
  CHECK(header_id("X-Custom") == HeaderId::Other);
  CHECK(header_id("Call-Id") == HeaderId::CallId);
  CHECK(header_id("CALL-ID") == HeaderId::CallId);
  CHECK(header_id("Contacts") == HeaderId::Other);
  CHECK(header_is_list(HeaderId::Via));
  CHECK(header_is_list(HeaderId::Route));
  CHECK_FALSE(header_is_list(HeaderId::CallId));
  CHECK(header_is_single(HeaderId::CSeq));
  CHECK_FALSE(header_is_single(HeaderId::Contact));

  std::string bytes = test::msg({"OPTIONS sip:x SIP/2.0", "VIA: SIP/2.0/UDP h;branch=z9hG4bK1",
                                 "tO: <sip:b@x>", "FROM: <sip:a@x>;tag=1", "call-id: ci",
                                 "cSeQ: 1 OPTIONS", "max-FORWARDS: 5", "X-Custom: one",
                                 "x-custom: two"});
  Message m;
  REQUIRE_MESSAGE(m.parse(bytes).ok(), err(m.parse(bytes)));
  CHECK(m.max_forwards() == 5);
  CHECK(m.call_id() == "ci");
  CHECK(m.find("via") == m.find(HeaderId::Via));
  CHECK(m.find("v") == m.find(HeaderId::Via));
  REQUIRE(m.find("x-CUSTOM"));
  CHECK(m.find("x-CUSTOM")->value == "one");
  CHECK(m.find("X-Missing") == nullptr);
  CHECK(m.find(HeaderId::Route) == nullptr);
  CHECK(m.count(HeaderId::Other) == 2);
}

TEST_CASE("message: whitespace around the colon and folding") {
  std::string bytes =
      "OPTIONS sip:x SIP/2.0\r\n"
      "Via  :\tSIP/2.0/UDP h;branch=z9hG4bK1\r\n"
      "To:\r\n <sip:b@x>\r\n"
      "From: <sip:a@x>\r\n\t;tag=1\r\n"
      "Call-ID:ci\r\n"
      "CSeq: 1\r\n  \r\n OPTIONS\r\n"
      "Subject: a\r\n b\r\n\tc   \r\n"
      "Empty:\r\n"
      "Blank:   \r\n"
      "Content-Length: 0\r\n\r\n";
  Message m;
  REQUIRE_MESSAGE(m.parse(bytes).ok(), err(m.parse(bytes)));
  CHECK(m.to().uri_text == "sip:b@x");
  CHECK(m.from().tag() == "1");
  CHECK(m.call_id() == "ci");
  CHECK(m.cseq().method == Method::Options);
  CHECK(m.find(HeaderId::Subject)->value == "a\r\n b\r\n\tc");
  CHECK(m.find("Empty")->value.empty());
  CHECK(m.find("Blank")->value.empty());
  const Header* s = m.find(HeaderId::Subject);
  CHECK(bytes.substr(s->begin, s->end - s->begin) == "Subject: a\r\n b\r\n\tc   \r\n");
}

TEST_CASE("message: list headers split into values across lines") {
  std::string bytes = request({"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
                               "Route: <sip:p3.example.com;lr>",
                               "Contact: \"Bell, A\" <sip:a@x>, <sip:b@y;x=1,2>;q=0.5",
                               "Supported: timer,\r\n  100rel , path",
                               "Via: SIP/2.0/TCP second.example.com;branch=z9hG4bK2 , "
                               "SIP/2.0/UDP third.example.com"});
  Message m;
  REQUIRE_MESSAGE(m.parse(bytes).ok(), err(m.parse(bytes)));
  CHECK(values(m, HeaderId::Route) ==
        std::vector<std::string>{"<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>",
                                 "<sip:p3.example.com;lr>"});
  CHECK(values(m, HeaderId::Contact) ==
        std::vector<std::string>{"\"Bell, A\" <sip:a@x>", "<sip:b@y;x=1,2>;q=0.5"});
  CHECK(values(m, HeaderId::Supported) == std::vector<std::string>{"timer", "100rel", "path"});
  CHECK(m.via_count() == 3);
  CHECK(m.count(HeaderId::Via) == 2);
  CHECK(m.top_via().host == "192.0.2.1");
  int lines = 0;
  m.for_each(HeaderId::Route, [&](const Header&) {
    ++lines;
    return true;
  });
  CHECK(lines == 2);
  int seen = 0;
  m.for_each_value(HeaderId::Route, [&](std::string_view) { return ++seen < 2; });
  CHECK(seen == 2);  // false stops
}

TEST_CASE("message: Content-Length and the body of a datagram (§18.3)") {
  Message m;
  // Bytes past Content-Length are ignored.
  std::string extra = request({}, "hello") + "garbage";
  REQUIRE(m.parse(extra).ok());
  CHECK(m.body() == "hello");
  CHECK(m.raw().size() == extra.size() - 7);
  // Fewer bytes than Content-Length: 400.
  std::string shortb = request({}, "hello");
  shortb.resize(shortb.size() - 1);
  Status st = m.parse(shortb);
  REQUIRE_FALSE(st.ok());
  CHECK(describe(st.error()) == "bad Content-Length: larger than the message");
  CHECK(m.via_usable());
  // No Content-Length: the body is the rest of the datagram.
  std::string none = test::msg({"MESSAGE sip:x SIP/2.0", "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
                                "To: <sip:b@x>", "From: <sip:a@x>;tag=1", "Call-ID: ci",
                                "CSeq: 1 MESSAGE"},
                               "text body", false);
  REQUIRE(m.parse(none).ok());
  CHECK(m.content_length() == -1);
  CHECK(m.body() == "text body");
  // Content-Length 0 with nothing after the empty line.
  std::string empty = request();
  REQUIRE(m.parse(empty).ok());
  CHECK(m.content_length() == 0);
  CHECK(m.body().empty());
  for (const char* bad : {"-1", "abc", "1 2", "", "99999999999", "0x10"}) {
    CAPTURE(bad);
    std::string b = request({}, "");
    b.replace(b.find("Content-Length: 0"), 17, std::string("Content-Length: ") + bad);
    st = m.parse(b);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().header == "Content-Length");
    CHECK(m.content_length() == -1);
  }
  std::string two = request({"l: 0"});
  st = m.parse(two);
  REQUIRE_FALSE(st.ok());
  CHECK(describe(st.error()) == "bad Content-Length: appears more than once");
}

TEST_CASE("message: leading CRLFs are skipped (§7.5)") {
  std::string bytes = "\r\n\r\n\n" + request();
  Message m;
  REQUIRE(m.parse(bytes).ok());
  CHECK(m.start() == 5);
  CHECK(m.method() == Method::Options);
  CHECK(m.raw() == bytes);
  CHECK(m.parse("\r\n\r\n").error().reason == std::string_view("empty message"));
  CHECK_FALSE(m.parse("").ok());
}

TEST_CASE("message: bare LF line ends are tolerated") {
  std::string bytes = request({}, "ab");
  std::string lf;
  for (size_t i = 0; i < bytes.size(); ++i)
    if (!(bytes[i] == '\r' && i + 1 < bytes.size() && bytes[i + 1] == '\n')) lf += bytes[i];
  Message m;
  REQUIRE_MESSAGE(m.parse(lf).ok(), err(m.parse(lf)));
  CHECK(m.body() == "ab");
  CHECK(m.call_id() == "a84b4c76e66710@pc33.example.com");
}

TEST_CASE("message: the header limit") {
  std::string bytes = request({"A: 1", "B: 2", "C: 3"});
  Message m;
  ParseOptions opts;
  opts.max_headers = 10;
  REQUIRE(m.parse(bytes, opts).ok());
  opts.max_headers = 9;
  Status st = m.parse(bytes, opts);
  REQUIRE_FALSE(st.ok());
  CHECK(describe(st.error()) == "too many headers");
  CHECK(m.via_usable());  // the Via came first: a 400 is still possible
  // The default limit, and no int16 wrap with a huge one.
  std::string many = request();
  std::string lines;
  for (int i = 0; i < 40000; ++i) lines += "X: y\r\n";
  many.insert(many.find("Content-Length"), lines);
  CHECK_FALSE(m.parse(many).ok());
  opts.max_headers = 100000;
  st = m.parse(many, opts);
  REQUIRE_FALSE(st.ok());
  CHECK(describe(st.error()) == "too many headers");
}

TEST_CASE("message: missing and malformed mandatory headers name the header") {
  struct Case {
    const char* drop;     // header line prefix removed from the request
    const char* replace;  // replacement line ("" to just drop)
    const char* expect;
  } cases[] = {
      {"Via:", "", "bad Via: missing"},
      {"To:", "", "bad To: missing"},
      {"From:", "", "bad From: missing"},
      {"Call-ID:", "", "bad Call-ID: missing"},
      {"CSeq:", "", "bad CSeq: missing"},
      {"Via:", "Via: ", "bad Via: empty value"},
      {"Via:", "Via: SIP/2.0/UDP h;branch=z9hG4bK1,", "bad Via: empty value"},
      {"Call-ID:", "Call-ID: a b", "bad Call-ID: malformed value"},
      {"Call-ID:", "Call-ID:", "bad Call-ID: malformed value"},
      {"CSeq:", "CSeq: 1 INVITE", "bad CSeq: method does not match the request line"},
      {"CSeq:", "CSeq: x OPTIONS", "bad CSeq: bad sequence number"},
      {"Max-Forwards:", "Max-Forwards: 300", "bad Max-Forwards: not a number from 0 to 255"},
      {"To:", "To: \"x <sip:b@x>", "bad To: unterminated or malformed quoted string"},
      {"From:", "From: <sip:a@x>;tag=", "bad From: empty or malformed parameter"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.drop);
    CAPTURE(c.replace);
    std::string bytes = request();
    size_t b = bytes.find(std::string("\r\n") + c.drop) + 2;
    size_t e = bytes.find("\r\n", b) + 2;
    bytes.replace(b, e - b, *c.replace ? std::string(c.replace) + "\r\n" : "");
    Message m;
    Status st = m.parse(bytes);
    REQUIRE_FALSE(st.ok());
    CHECK(describe(st.error()) == c.expect);
    CHECK(st.error().status == 400);
  }
}

TEST_CASE("message: Max-Forwards and Expires") {
  Message m;
  std::string zero = request();
  zero.replace(zero.find("Max-Forwards: 70"), 16, "Max-Forwards: 0");
  REQUIRE(m.parse(zero).ok());
  CHECK(m.max_forwards() == 0);
  std::string none = request();
  none.erase(none.find("Max-Forwards: 70\r\n"), 18);
  REQUIRE(m.parse(none).ok());
  CHECK(m.max_forwards() == -1);
  // A proxy does not read Expires: a malformed one is not a parse error (§20.19).
  std::string exp = request({"Expires: 10000000000000000000000"});
  REQUIRE(m.parse(exp).ok());
}

TEST_CASE("message: start line faults") {
  Message m;
  struct Case {
    const char* line;
    int status;
    const char* expect;
  } cases[] = {
      {"OPTIONS  sip:x SIP/2.0", 400, "bad Request-Line: extra whitespace"},
      {"OPTIONS sip:x  SIP/2.0", 400, "bad Request-Line: extra whitespace"},
      {"OPTIONS sip:x SIP/2.0 ", 400, "bad Request-Line: extra whitespace"},
      {"OPTIONS sip:x", 400, "bad Request-Line: missing SIP version"},
      {" OPTIONS sip:x SIP/2.0", 400, "bad Request-Line: malformed"},
      {"OPT\"IONS sip:x SIP/2.0", 400, "bad Request-Line: bad method"},
      {"OPTIONS sip:x SIP/2", 400, "bad Request-Line: malformed SIP version"},
      {"OPTIONS sip:x HTTP/1.1", 400, "bad Request-Line: malformed SIP version"},
      {"OPTIONS sip:x SIP/3.0", 505, "bad Request-Line: SIP version not supported"},
      {"OPTIONS <sip:x> SIP/2.0", 400, "bad Request-URI: bad URI scheme"},
      {"OPTIONS sip:x?a=b SIP/2.0", 400, "bad Request-URI: headers not allowed"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.line);
    std::string bytes = request();
    bytes.replace(0, bytes.find("\r\n"), c.line);
    Status st = m.parse(bytes);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().status == c.status);
    CHECK(describe(st.error()) == c.expect);
    CHECK(m.via_usable());
  }
  // Methods are case-sensitive: "invite" is an extension method.
  std::string lower = request({}, "", "invite");
  REQUIRE(m.parse(lower).ok());
  CHECK(m.method() == Method::Other);
  CHECK(m.method_text() == "invite");
  // The version is case-insensitive.
  std::string v = request();
  v.replace(v.find("SIP/2.0\r\n"), 7, "sip/2.0");
  CHECK(m.parse(v).ok());
  // A tel: Request-URI and an unknown scheme parse.
  std::string tel = request();
  tel.replace(tel.find("sip:bob@example.com"), 19, "tel:+15551234");
  REQUIRE(m.parse(tel).ok());
  CHECK(m.ruri().scheme == Scheme::Tel);
  CHECK(m.parse("OPTIONS sip:x SIP/2.0").error().reason == std::string_view("start line not ended"));
}

TEST_CASE("message: malformed header lines") {
  Message m;
  for (const char* line : {"NoColon", ": value", "Bad Name: x", "Bad\"Name: x", "\x80: x"}) {
    CAPTURE(line);
    std::string bytes = request({line});
    Status st = m.parse(bytes);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().status == 400);
    CHECK(m.via_usable());
  }
  std::string ws = request();
  ws.insert(ws.find("\r\n") + 2, " folded-first\r\n");
  CHECK(describe(m.parse(ws).error()) == "header section starts with whitespace");
}

TEST_CASE("message: an unterminated header section still exposes the Via") {
  Message m;
  std::string bytes = request();
  bytes.resize(bytes.size() - 2);  // no empty line
  Status st = m.parse(bytes);
  REQUIRE_FALSE(st.ok());
  CHECK(describe(st.error()) == "header section not ended by an empty line");
  CHECK(m.via_usable());
  CHECK(m.call_id() == "a84b4c76e66710@pc33.example.com");
  bytes.resize(bytes.size() - 2);  // last line not even ended
  REQUIRE_FALSE(m.parse(bytes).ok());
  CHECK(m.via_usable());
  CHECK(m.content_length() == 0);
  // A typed fault wins over the missing end (RFC 4475 baddn).
  std::string bad_to = request();
  bad_to.replace(bad_to.find("To: Bob"), 7, "To: B,b");
  bad_to.resize(bad_to.size() - 2);
  CHECK(m.parse(bad_to).error().header == "To");
}

TEST_CASE("message: a message object is reusable and forgets the previous one") {
  Message m;
  std::string a = request({"Route: <sip:r@x;lr>", "X-A: 1"}, "body", "INVITE");
  std::string b = test::msg({"SIP/2.0 200 OK", "Via: SIP/2.0/UDP h;branch=z9hG4bKb",
                             "To: <sip:b@x>;tag=2", "From: <sip:a@x>;tag=1", "Call-ID: other",
                             "CSeq: 2 BYE"});
  REQUIRE(m.parse(a).ok());
  REQUIRE(m.parse(b).ok());
  CHECK(m.is_response());
  CHECK(m.method_text().empty());
  CHECK(m.find(HeaderId::Route) == nullptr);
  CHECK(m.find("X-A") == nullptr);
  CHECK(m.count(HeaderId::Route) == 0);
  CHECK(m.max_forwards() == -1);
  CHECK(m.call_id() == "other");
  CHECK(m.body().empty());
  REQUIRE_FALSE(m.parse("garbage").ok());
  CHECK_FALSE(m.via_usable());
  CHECK(m.headers().empty());
  CHECK(m.call_id().empty());
}

TEST_CASE("message: hostile inputs stay bounded") {
  Message m;
  // One very long header line of commas and quotes, and many Via values.
  std::string commas = request({"X: " + std::string(60000, ',')});
  CHECK(m.parse(commas).ok());
  std::string quotes = request({"Contact: " + std::string(30000, '"')});
  CHECK(m.parse(quotes).ok());
  std::string vias = request({"Via: " + [] {
    std::string v;
    for (int i = 0; i < 3000; ++i) v += "SIP/2.0/UDP h" + std::to_string(i) + ",";
    v.pop_back();
    return v;
  }()});
  REQUIRE(m.parse(vias).ok());
  CHECK(m.via_count() == 3001);
  std::string angles = request({"Route: " + std::string(30000, '<')});
  CHECK(m.parse(angles).ok());
  std::string nul(1000, '\0');
  CHECK_FALSE(m.parse(nul).ok());
}

namespace {

// Every accessor of `a` and `b` reads the same text.
void check_same(const Message& a, const Message& b) {
  auto same_uri = [](const Uri& x, const Uri& y) {
    CHECK(x.raw == y.raw);
    CHECK(x.scheme_raw == y.scheme_raw);
    CHECK(x.scheme == y.scheme);
    CHECK(x.user == y.user);
    CHECK(x.password == y.password);
    CHECK(x.host == y.host);
    CHECK(x.port == y.port);
    CHECK(x.params == y.params);
    CHECK(x.headers == y.headers);
    CHECK(x.opaque == y.opaque);
  };
  auto same_addr = [&](const NameAddr& x, const NameAddr& y) {
    CHECK(x.raw == y.raw);
    CHECK(x.display == y.display);
    CHECK(x.uri_text == y.uri_text);
    CHECK(x.params == y.params);
    CHECK(x.tag() == y.tag());
    same_uri(x.uri, y.uri);
  };
  CHECK(a.raw() == b.raw());
  CHECK(a.is_request() == b.is_request());
  CHECK(a.method_text() == b.method_text());
  CHECK(a.ruri_text() == b.ruri_text());
  same_uri(a.ruri(), b.ruri());
  CHECK(a.status() == b.status());
  CHECK(a.reason() == b.reason());
  REQUIRE(a.headers().size() == b.headers().size());
  for (size_t i = 0; i < a.headers().size(); ++i) {
    CHECK(a.headers()[i].name == b.headers()[i].name);
    CHECK(a.headers()[i].value == b.headers()[i].value);
  }
  const Via& va = a.top_via();
  const Via& vb = b.top_via();
  for (auto [x, y] : {std::pair{va.raw, vb.raw}, {va.protocol, vb.protocol}, {va.transport, vb.transport},
                      {va.host, vb.host}, {va.sent_by, vb.sent_by}, {va.params, vb.params},
                      {va.branch, vb.branch}, {va.received, vb.received}, {va.maddr, vb.maddr},
                      {va.rport, vb.rport}})
    CHECK(x == y);
  CHECK(a.call_id() == b.call_id());
  CHECK(a.cseq().method_text == b.cseq().method_text);
  CHECK(a.cseq().number == b.cseq().number);
  same_addr(a.from(), b.from());
  same_addr(a.to(), b.to());
  CHECK(a.body() == b.body());
}

}  // namespace

TEST_CASE("message: rebase onto a copy reads what parsing the copy reads, nothing from the original") {
  std::vector<std::string> messages = {
      request({"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>", "Subject: hi"}, "v=0\r\n", "INVITE"),
      sb::core::test::msg({"SIP/2.0 180 Ringing", "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;received=10.0.0.1;rport=5061",
           "Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKb;maddr=224.0.0.1",
           "To: \"Bob\" <sip:bob:secret@example.com;transport=tcp?subject=x>;tag=b1",
           "From: <sips:alice@[2001:db8::2]:5061>;tag=a1", "Call-ID: c@h", "CSeq: 7 INVITE"}),
  };
  for (const char* f : {"wsinv.dat", "esc01.dat", "longreq.dat", "intmeth.dat", "unreason.dat", "dblreq.dat"})
    messages.push_back(sb::core::test::torture(f));
  for (std::string& bytes : messages) {
    Message parsed;
    if (!parsed.parse(bytes)) continue;
    std::string copy(parsed.raw());
    Message rebased;
    rebased.rebase(parsed, copy);
    Message fresh;
    REQUIRE(fresh.parse(copy));
    std::fill(bytes.begin(), bytes.end(), 'X');  // a view left on the original reads X
    CAPTURE(copy.substr(0, 60));
    check_same(rebased, fresh);
  }
}
