#include <doctest/doctest.h>

#include <string>

#include "proxy/validation.h"

using sb::core::Message;
using sb::proxy::validate_request;

namespace {
std::string req(std::string ruri, std::string extra = "") {
  return "OPTIONS " + ruri + " SIP/2.0\r\n"
         "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKv1\r\n"
         "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
         "Call-ID: v1\r\nCSeq: 1 OPTIONS\r\n" + extra + "Content-Length: 0\r\n\r\n";
}
}  // namespace

TEST_CASE("a plain request passes §16.3") {
  std::string s = req("sip:b@example.com", "Max-Forwards: 70\r\n");
  Message m;
  REQUIRE(m.parse(s));
  CHECK_FALSE(validate_request(m).has_value());
}

TEST_CASE("unknown URI scheme is 416") {
  std::string s = req("nobodyknowsthisscheme:totallyopaquecontent");
  Message m;
  REQUIRE(m.parse(s));
  auto r = validate_request(m);
  REQUIRE(r.has_value());
  CHECK(r->status == 416);
}

TEST_CASE("Max-Forwards 0 is 483; absent is fine") {
  std::string s = req("sip:b@example.com", "Max-Forwards: 0\r\n");
  Message m;
  REQUIRE(m.parse(s));
  auto r = validate_request(m);
  REQUIRE(r.has_value());
  CHECK(r->status == 483);
  std::string s2 = req("sip:b@example.com");
  REQUIRE(m.parse(s2));
  CHECK_FALSE(validate_request(m).has_value());
}

TEST_CASE("unsupported Proxy-Require is 420 with Unsupported listing each option") {
  std::string s = req("sip:b@example.com", "Proxy-Require: foo, bar\r\nProxy-Require: path\r\n");
  Message m;
  REQUIRE(m.parse(s));
  std::string_view supported[] = {"path"};
  auto r = validate_request(m, supported);
  REQUIRE(r.has_value());
  CHECK(r->status == 420);
  REQUIRE(r->headers.size() == 1);
  CHECK(r->headers[0] == "Unsupported: foo, bar");
}
