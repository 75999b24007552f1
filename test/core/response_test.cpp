// core/response: building a response from a request (RFC 3261 §8.2.6), also one that did
// not parse (the proxy's 400).
#include <doctest/doctest.h>

#include <string>

#include "core/response.h"
#include "test/core/sip_test_util.h"

using namespace sb::core;
using sb::core::test::values;

namespace {

const std::string kInvite =
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKsb0.1;received=192.0.2.10, SIP/2.0/UDP h2\r\n"
    "v: SIP/2.0/TCP 192.0.2.101:5060;branch=z9hG4bK74bf9\r\n"
    "Max-Forwards: 70\r\n"
    "Record-Route: <sip:p1.example.com;lr>\r\n"
    "f: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    "To: Bob\r\n <sip:bob@biloxi.example.com>\r\n"
    "i: 3848276298220188511@atlanta.example.com\r\n"
    "CSeq: 31862 INVITE\r\n"
    "Timestamp: 54\r\n"
    "Contact: <sip:alice@192.0.2.101>\r\n"
    "Content-Length: 0\r\n"
    "\r\n";

}  // namespace

TEST_CASE("response: the copied headers, the To tag and Content-Length") {
  Message req;
  REQUIRE(req.parse(kInvite).ok());
  ResponseSpec spec;
  spec.status = 486;
  spec.to_tag = "sb1x";
  std::string out = build_response(req, spec);
  CHECK(out.rfind("SIP/2.0 486 Busy Here\r\n", 0) == 0);
  Message r;
  REQUIRE_MESSAGE(r.parse(out).ok(), test::err(r.parse(out)) << "\n" << out);
  CHECK(r.is_response());
  CHECK(r.status() == 486);
  CHECK(r.reason() == "Busy Here");
  CHECK(r.via_count() == 3);
  CHECK(r.top_via().branch == "z9hG4bKsb0.1");
  CHECK(values(r, HeaderId::Via)[2] == "SIP/2.0/TCP 192.0.2.101:5060;branch=z9hG4bK74bf9");
  CHECK(r.from().tag() == "9fxced76sl");
  CHECK(r.to().tag() == "sb1x");
  CHECK(r.to().uri_text == "sip:bob@biloxi.example.com");  // delimited, not parsed, in a response
  CHECK(r.call_id() == req.call_id());
  CHECK(r.cseq().number == 31862);
  CHECK(r.cseq().method == Method::Invite);
  CHECK(r.content_length() == 0);
  CHECK(r.find(HeaderId::Contact) == nullptr);
  CHECK(r.find(HeaderId::MaxForwards) == nullptr);
  CHECK(r.find(HeaderId::Timestamp) == nullptr);
  CHECK(r.find(HeaderId::RecordRoute) == nullptr);  // a final non-2xx creates no dialog
}

TEST_CASE("response: 100 Trying has no To tag and keeps Timestamp") {
  Message req;
  REQUIRE(req.parse(kInvite).ok());
  ResponseSpec spec;
  spec.status = 100;
  spec.to_tag = "sb1x";
  std::string out = build_response(req, spec);
  Message r;
  REQUIRE(r.parse(out).ok());
  CHECK(r.reason() == "Trying");
  CHECK(r.to().tag().empty());
  CHECK(r.find(HeaderId::Timestamp)->value == "54");
}

TEST_CASE("response: a dialog-creating 2xx keeps Record-Route; an existing To tag stays") {
  std::string bytes = kInvite;
  bytes.replace(bytes.find("<sip:bob@biloxi.example.com>\r\n"), 28,
                "<sip:bob@biloxi.example.com>;tag=theirs");
  Message req;
  REQUIRE(req.parse(bytes).ok());
  ResponseSpec spec;
  spec.status = 200;
  spec.to_tag = "ours";
  Message r;
  std::string out = build_response(req, spec);
  REQUIRE(r.parse(out).ok());
  CHECK(r.to().tag() == "theirs");
  CHECK(out.find("ours") == std::string::npos);
  CHECK(values(r, HeaderId::RecordRoute) == std::vector<std::string>{"<sip:p1.example.com;lr>"});
}

TEST_CASE("response: reason, extra headers and body") {
  Message req;
  std::string bytes = test::request();
  REQUIRE(req.parse(bytes).ok());
  std::string_view extra[] = {"Unsupported: foo, bar", "Retry-After: 5"};
  ResponseSpec spec;
  spec.status = 420;
  spec.reason = "Bad\r\nExtension";
  spec.headers = extra;
  spec.body = "why";
  std::string out = build_response(req, spec);
  Message r;
  REQUIRE(r.parse(out).ok());
  CHECK(r.reason() == "Bad  Extension");
  CHECK(values(r, HeaderId::Unsupported) == std::vector<std::string>{"foo", "bar"});
  CHECK(r.find(HeaderId::RetryAfter)->value == "5");
  CHECK(r.body() == "why");
  CHECK(r.content_length() == 3);
  CHECK(default_reason(404) == "Not Found");
  CHECK(default_reason(483) == "Too Many Hops");
  CHECK(default_reason(999).empty());
  spec.reason = {};
  spec.status = 299;
  CHECK(build_response(req, spec).rfind("SIP/2.0 299 \r\n", 0) == 0);
}

TEST_CASE("response: a 400 to a request that did not parse (RFC 4475 badinv01, insuf)") {
  for (const char* file : {"badinv01.dat", "insuf.dat", "scalar02.dat", "badvers.dat",
                           "mismatch02.dat", "baddn.dat"}) {
    CAPTURE(file);
    std::string bytes = test::torture(file);
    Message req;
    Status st = req.parse(bytes);
    REQUIRE_FALSE(st.ok());
    REQUIRE(req.via_usable());
    ResponseSpec spec;
    spec.status = st.error().status;
    std::string reason = describe(st.error());
    spec.reason = reason;
    spec.to_tag = "sb.err";
    std::string out = build_response(req, spec);
    CHECK(out.rfind("SIP/2.0 " + std::to_string(spec.status) + " bad ", 0) == 0);
    CHECK(out.find("\r\nVia: ") != std::string::npos);
    CHECK(out.find("\r\nContent-Length: 0\r\n\r\n") != std::string::npos);
    // The response's own top Via is as readable as the request's was.
    Message r;
    (void)r.parse(out);
    CHECK(r.via_usable());
    CHECK(r.top_via().host == req.top_via().host);
  }
}
