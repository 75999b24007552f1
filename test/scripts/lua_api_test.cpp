// The Lua API on parsed requests: fields, header access, edits, routing verbs, modules, and
// the export table that both installs the API and generates docs/lua-api.md.
#include <lua.hpp>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "scripts/engine/bridge.h"
#include "scripts/engine/lua_api.h"
#include "test/scripts/script_test_util.h"

using namespace sb::scripts;
using namespace sb::scripts::test;
using sb::proxy::Decision;
using sb::proxy::RelayOptions;

namespace {

// eq(got, want): a failed expectation is a script error naming the line and both values.
constexpr const char* kPrelude =
    "function eq(got, want)\n"
    "  if got ~= want then\n"
    "    error(string.format(\"expected %s, got %s\", tostring(want), tostring(got)), 2)\n"
    "  end\n"
    "end\n";

std::string on_request(std::string_view body) {
  return std::string(kPrelude) + "function on_request(req)\n" + std::string(body) + "\nend\n";
}

std::string invite(std::vector<std::string> extra = {}, std::string_view body = {}) {
  return sip_request("INVITE", "sip:bob@example.com:5070;transport=tcp;lr", std::move(extra), {},
                     body);
}

}  // namespace

#define CHECK_DECIDED_OK(h, d) CHECK_MESSAGE((d).status == 200, (h).policy.last_error())

TEST_CASE("request fields on a parsed INVITE") {
  Harness h = Harness::text(on_request(R"lua(
  eq(req.method, "INVITE")
  local u = req.uri
  eq(u.scheme, "sip")
  eq(u.user, "bob")
  eq(u.host, "example.com")
  eq(u.port, 5070)
  eq(u.params.transport, "tcp")
  eq(u.params.lr, true)
  eq(u.params.maddr, nil)
  eq(u.aor, "sip:bob@example.com")
  eq(tostring(u), "sip:bob@example.com:5070;transport=tcp;lr")
  eq("<" .. u .. ">", "<sip:bob@example.com:5070;transport=tcp;lr>")
  eq(req.from.uri.user, "alice")
  eq(req.from.tag, "9fxced76sl")
  eq(req.from.display, "Alice Liddell")
  eq(req.to.tag, nil)
  eq(req.to.display, "Bob")
  eq(req.to.uri.host, "example.com")
  eq(req.to.uri.port, nil)
  eq(req.to.uri == req.to.uri, true)
  eq(req.uri == req.to.uri, false)
  eq(req.call_id, "3848276298220188511@atlanta.example.com")
  eq(req.cseq.number, 31862)
  eq(req.cseq.method, "INVITE")
  eq(req.source.ip, "198.51.100.7")
  eq(req.source.port, 40000)
  eq(req.source.transport, "TCP")
  eq(req.body, "v=0\r\n")
  eq(req:in_dialog(), false)
  eq(getmetatable(req), "request")
  return req:reply(200)
)lua"));
  FakeRequest r(invite({"Content-Type: application/sdp"}, "v=0\r\n"), "198.51.100.7", 40000,
                sb::core::Protocol::Tcp);
  Decision d = h.request(r);
  CHECK_DECIDED_OK(h, d);
}

TEST_CASE("req.trusted: config security.trusted, as req.source.trusted says it") {
  // The fake services trust 192.0.2.0/24 (script_test_util.h).
  Harness h = Harness::text(on_request(R"lua(
  eq(req.trusted, req.source.trusted)
  return req:reply(req.trusted and 200 or 403)
)lua"));
  FakeRequest inside(invite(), "192.0.2.99", 5060, sb::core::Protocol::Udp);
  Decision d = h.request(inside);
  CHECK_DECIDED_OK(h, d);
  FakeRequest outside(invite(), "198.51.100.7", 5060, sb::core::Protocol::Udp);
  d = h.request(outside);
  CHECK_MESSAGE(d.status == 403, h.policy.last_error());
}

TEST_CASE("in_dialog and a tel: Request-URI") {
  Harness h = Harness::text(on_request(R"lua(
  eq(req:in_dialog(), true)
  eq(req.to.tag, "314159")
  eq(req.uri.scheme, "tel")
  eq(req.uri.user, "+4930123456")
  eq(req.uri.host, nil)
  eq(req.uri.aor, nil)
  return req:reply(200)
)lua"));
  FakeRequest r(sip_request("BYE", "tel:+4930123456", {}, "314159"));
  Decision d = h.request(r);
  CHECK_DECIDED_OK(h, d);
}

TEST_CASE("header and headers: compact names, lists, case, absent") {
  Harness h = Harness::text(on_request(R"lua(
  eq(req:header("Route"), "<sip:p1.example.com;lr>")
  local routes = req:headers("route")
  eq(#routes, 3)
  eq(routes[2], "<sip:p2.example.com;lr>")
  eq(routes[3], "<sip:p3.example.com;lr>")
  eq(req:header("Subject"), "lunch, maybe")
  eq(#req:headers("X-Custom"), 2)
  eq(req:headers("x-custom")[2], "two")
  eq(req:header("Supported"), "timer")
  eq(req:header("k"), "timer")
  eq(#req:headers("Supported"), 2)
  eq(req:header("f"), req:header("From"))
  eq(req:header("X-Absent"), nil)
  eq(#req:headers("X-Absent"), 0)
  eq(req:header("Via"), "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport")
  return req:reply(200)
)lua"));
  FakeRequest r(invite({"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
                        "Route: <sip:p3.example.com;lr>", "Subject: lunch, maybe",
                        "X-Custom: one", "x-custom: two", "k: timer, 100rel"}));
  Decision d = h.request(r);
  CHECK_DECIDED_OK(h, d);
}

TEST_CASE("uri assignment and header edits end up in RequestEdits") {
  Harness h = Harness::text(on_request(R"lua(
  req.uri = "sip:bob@192.0.2.7:5062"
  eq(tostring(req.uri), "sip:bob@192.0.2.7:5062")
  eq(req.uri.port, 5062)
  assert(req:set_header("X-Route-Reason", "test"))
  eq(req:header("X-Route-Reason"), "test")
  assert(req:set_header("Subject", "replaced"))
  eq(req:header("Subject"), "replaced")
  eq(req:remove_header("X-Custom"), true)
  eq(req:header("X-Custom"), nil)
  assert(req:add_header("X-Custom", "three"))
  eq(req:header("X-Custom"), "three")
  assert(req:add_header("Route", "<sip:sbc.example.com;lr>"))
  eq(#req:headers("Route"), 2)
  assert(req:set_header("X-Temp", "1"))
  assert(req:remove_header("x-temp"))
  eq(req:header("X-Temp"), nil)
  return req:relay()
)lua"));
  FakeRequest r(invite({"Route: <sip:p1.example.com;lr>", "Subject: lunch", "X-Custom: one"}));
  Decision d = h.request(r);
  REQUIRE_MESSAGE(d.kind == Decision::Kind::Relay, h.policy.last_error());
  CHECK(d.targets.empty());
  const auto& e = r.edits_;
  REQUIRE(e.ruri.has_value());
  CHECK(*e.ruri == "sip:bob@192.0.2.7:5062");
  REQUIRE(e.set_headers.size() == 2);
  CHECK(e.set_headers[0] == std::pair<std::string, std::string>("X-Route-Reason", "test"));
  CHECK(e.set_headers[1] == std::pair<std::string, std::string>("Subject", "replaced"));
  CHECK(has(e.remove_headers, "X-Custom"));
  CHECK(has(e.remove_headers, "x-temp"));
  CHECK(has(e.add_headers, "X-Custom: three"));
  CHECK(has(e.add_headers, "Route: <sip:sbc.example.com;lr>"));
  CHECK(e.add_headers.size() == 2);
}

TEST_CASE("edits that are refused: bad values return nil, err; misuse raises") {
  Harness h = Harness::text(on_request(R"lua(
  local ok, err = req:set_header("X-Bad", "a\r\nVia: evil")
  eq(ok, nil)
  assert(err:find("line breaks"), err)
  ok, err = req:set_uri("not a uri")
  eq(ok, nil)
  assert(err:find("bad Request%-URI"), err)
  ok, err = req:set_uri("mailto:bob@example.com")
  eq(ok, nil)
  ok, err = pcall(req.set_header, req, "Via", "x")
  eq(ok, false)
  assert(err:find("maintained by the proxy"), err)
  ok, err = pcall(req.remove_header, req, "Record-Route")
  eq(ok, false)
  ok, err = pcall(req.set_header, req, "Bad Name", "x")
  eq(ok, false)
  ok, err = pcall(function() req.uri = "sip:" end)
  eq(ok, false)
  assert(err:find("bad Request%-URI"), err)
  ok, err = pcall(function() req.method = "BYE" end)
  eq(ok, false)
  assert(err:find("cannot be assigned"), err)
  ok, err = pcall(function() return req.metod end)
  eq(ok, false)
  assert(err:find("request has no field 'metod'"), err)
  ok, err = pcall(function() return location.lokup end)
  eq(ok, false)
  req.uri = req.to.uri            -- a uri value is accepted too
  eq(tostring(req.uri), "sip:bob@example.com")
  return req:reply(200)
)lua"));
  FakeRequest r(invite());
  Decision d = h.request(r);
  CHECK_DECIDED_OK(h, d);
  CHECK(r.edits_.set_headers.empty());
  CHECK(r.edits_.ruri == "sip:bob@example.com");
}

TEST_CASE("an invalid req.uri assignment is a script error with a clear message") {
  Harness h = Harness::text(on_request("  req.uri = \"sip:bob@\"\n  return req:relay()"));
  FakeRequest r(invite());
  CHECK(h.request(r).status == 500);
  CHECK(h.policy.last_error().find("bad Request-URI 'sip:bob@'") != std::string::npos);
  CHECK_FALSE(r.edits_.ruri.has_value());
}

TEST_CASE("relay: as is, a URI string, a uri") {
  SUBCASE("nil relays to the Request-URI / Route") {
    Harness h = Harness::text(on_request("  return req:relay()"));
    FakeRequest r(invite());
    Decision d = h.request(r);
    CHECK(d.kind == Decision::Kind::Relay);
    CHECK(d.targets.empty());
    CHECK(d.relay.mode == RelayOptions::Mode::Parallel);
    CHECK_FALSE(d.relay.record_route);
  }
  SUBCASE("a string") {
    Harness h = Harness::text(on_request("  return req:relay(\"sip:bob@192.0.2.7\")"));
    FakeRequest r(invite());
    Decision d = h.request(r);
    REQUIRE(d.targets.size() == 1);
    CHECK(d.targets[0].uri == "sip:bob@192.0.2.7");
    CHECK(d.targets[0].q1000 == 1000);
    CHECK_FALSE(d.targets[0].destination.has_value());
  }
  SUBCASE("a uri, and record_route before or after") {
    Harness h = Harness::text(on_request(
        "  local ok = req:relay(req.to.uri)\n  req:record_route()\n  return ok"));
    FakeRequest r(invite());
    Decision d = h.request(r);
    REQUIRE(d.targets.size() == 1);
    CHECK(d.targets[0].uri == "sip:bob@example.com");
    CHECK(d.relay.record_route);
  }
}

TEST_CASE("relay: contacts from location.lookup keep their binding") {
  Harness h = Harness::text(on_request(R"lua(
  local c = location.lookup(req.uri)
  eq(#c, 2)
  eq(c[1].uri, "sip:bob@198.51.100.20:5062;transport=tcp")
  eq(c[1].q, 0.7)
  eq(c[1].path[1], "<sip:edge.example.com;lr>")
  eq(c[1].source.transport, "TCP")
  eq(c[1].source.ip, "198.51.100.20")
  eq(c[1].source.port, 5062)
  eq(c[2].source, nil)
  eq(#c[2].path, 0)
  return req:relay(c, {mode = "serial", timeout = 5000, failover_codes = {503, 408}})
)lua"));
  sb::proxy::Target t1 = target("sip:bob@198.51.100.20:5062;transport=tcp", 700);
  t1.route = {"<sip:edge.example.com;lr>"};
  sb::core::Peer peer;
  peer.protocol = sb::core::Protocol::Tcp;
  peer.endpoint = *sb::core::Endpoint::parse("198.51.100.20", 5062);
  peer.connection = {0, 17};
  t1.destination = peer;
  h.services.bind("sip:bob@example.com", t1);
  h.services.bind("sip:bob@example.com", target("sip:bob@192.0.2.50", 500));
  FakeRequest r(invite());
  Decision d = h.request(r);
  REQUIRE_MESSAGE(d.kind == Decision::Kind::Relay, h.policy.last_error());
  REQUIRE(d.targets.size() == 2);
  CHECK(d.targets[0].uri == t1.uri);
  CHECK(d.targets[0].q1000 == 700);
  CHECK(d.targets[0].route == t1.route);
  REQUIRE(d.targets[0].destination.has_value());
  CHECK(d.targets[0].destination->connection == sb::core::ConnectionId{0, 17});
  CHECK(d.targets[0].destination->protocol == sb::core::Protocol::Tcp);
  CHECK(d.targets[0].destination->endpoint == peer.endpoint);
  CHECK(d.targets[1].uri == "sip:bob@192.0.2.50");
  CHECK(d.targets[1].q1000 == 500);
  CHECK_FALSE(d.targets[1].destination.has_value());
  CHECK(d.relay.mode == RelayOptions::Mode::Serial);
  CHECK(d.relay.timeout_ms == 5000);
  CHECK(d.relay.failover_codes == std::vector<int>{503, 408});
}

TEST_CASE("relay: tables built by the script, and lists of mixed targets") {
  Harness h = Harness::text(on_request(R"lua(
  return req:relay({
    "sip:a@192.0.2.1",
    {uri = "sip:b@192.0.2.2", q = 0.25, path = {"<sip:p.example.com;lr>"},
     source = {transport = "udp", ip = "192.0.2.2", port = 5080}},
    req.to.uri,
  })
)lua"));
  FakeRequest r(invite());
  Decision d = h.request(r);
  REQUIRE_MESSAGE(d.targets.size() == 3, h.policy.last_error());
  CHECK(d.targets[0].uri == "sip:a@192.0.2.1");
  CHECK(d.targets[1].uri == "sip:b@192.0.2.2");
  CHECK(d.targets[1].q1000 == 250);
  CHECK(d.targets[1].route == std::vector<std::string>{"<sip:p.example.com;lr>"});
  REQUIRE(d.targets[1].destination.has_value());
  CHECK(d.targets[1].destination->endpoint.to_string() == "192.0.2.2:5080");
  CHECK(d.targets[1].destination->protocol == sb::core::Protocol::Udp);
  CHECK(d.targets[2].uri == "sip:bob@example.com");
}

TEST_CASE("relay: a contact whose uri the script changed is checked again") {
  // A binding's own contact is not parsed again on relay; a changed one must be.
  Harness h = Harness::text(on_request(R"lua(
  local c = location.lookup(req.uri)
  eq(#c, 1)
  c[1].uri = "sip:"
  local ok, err = req:relay(c)
  eq(ok, nil)
  assert(err:find("bad target URI"), err)
  c[1].uri = "tel:+49301234"
  ok, err = req:relay(c)
  eq(ok, nil)
  assert(err:find("not a sip"), err)
  c[1].uri = "sip:bob@192.0.2.51"
  return req:relay(c)
)lua"));
  h.services.bind("sip:bob@example.com", target("sip:bob@192.0.2.50", 500));
  FakeRequest r(invite());
  Decision d = h.request(r);
  REQUIRE_MESSAGE(d.targets.size() == 1, h.policy.last_error());
  CHECK(d.targets[0].uri == "sip:bob@192.0.2.51");
  CHECK(d.targets[0].q1000 == 500);  // the rest of the binding is kept
}

TEST_CASE("relay: faults") {
  Harness h = Harness::text(on_request(R"lua(
  local ok, err = req:relay("sip:")
  eq(ok, nil)
  assert(err:find("bad target URI"), err)
  ok, err = req:relay({})
  eq(ok, nil)
  assert(err:find("no targets"), err)
  ok, err = req:relay({"sip:a@192.0.2.1", "tel:+49301234"})
  eq(ok, nil)
  assert(err:find("not a sip"), err)
  ok, err = pcall(req.relay, req, "sip:a@192.0.2.1", {mode = "random"})
  eq(ok, false)
  assert(err:find("bad relay mode"), err)
  ok, err = pcall(req.relay, req, "sip:a@192.0.2.1", {timout = 5})
  eq(ok, false)
  assert(err:find("unknown relay option 'timout'"), err)
  ok, err = pcall(req.relay, req, "sip:a@192.0.2.1", {failover_codes = {200}})
  eq(ok, false)
  ok, err = pcall(req.relay, req, {uri = "sip:a@192.0.2.1", q = 2})
  eq(ok, false)
  ok, err = pcall(req.relay, req, 42)
  eq(ok, false)
  ok, err = req:relay({uri = "sip:a@192.0.2.1", source = {ip = "not-an-ip", port = 1}})
  eq(ok, nil)
  return req:reply(200)
)lua"));
  FakeRequest r(invite());
  Decision d = h.request(r);
  CHECK_DECIDED_OK(h, d);
}

TEST_CASE("reply: reason, headers in both forms, body") {
  Harness h = Harness::text(on_request(R"lua(
  return req:reply(480, nil, {
    "Warning: 399 sb \"out to lunch\"",
    ["Retry-After"] = 60,
    ["X-Reason"] = {"a", "b"},
    ["Content-Type"] = "text/plain",
  }, "back at 2")
)lua"));
  FakeRequest r(invite());
  Decision d = h.request(r);
  REQUIRE_MESSAGE(d.kind == Decision::Kind::Reply, h.policy.last_error());
  CHECK(d.status == 480);
  CHECK(d.reason == "Temporarily Unavailable");
  CHECK(d.headers == std::vector<std::string>{"Warning: 399 sb \"out to lunch\"",
                                              "Content-Type: text/plain", "Retry-After: 60",
                                              "X-Reason: a", "X-Reason: b"});
  CHECK(d.body == "back at 2");
  CHECK(d.origin == h.policy.generation()->path() + ":8");
}

TEST_CASE("reply: faults") {
  Harness h = Harness::text(on_request(R"lua(
  local ok, err = pcall(req.reply, req, 100)
  eq(ok, false)
  assert(err:find("final status code"), err)
  ok, err = pcall(req.reply, req, "busy")
  eq(ok, false)
  ok, err = pcall(req.reply, req, 486, "Busy", {["Call-ID"] = "x"})
  eq(ok, false)
  ok, err = req:reply(486, "Busy", {["X-A"] = "a\nb"})
  eq(ok, nil)
  ok, err = req:reply(486, "Busy\r\nX: y")
  eq(ok, nil)
  return req:reply(486, "Busy Here")
)lua"));
  FakeRequest r(invite());
  Decision d = h.request(r);
  CHECK_MESSAGE(d.status == 486, h.policy.last_error());
  CHECK(d.reason == "Busy Here");
  CHECK(d.headers.empty());
}

TEST_CASE("redirect: contacts with q, and the status code") {
  SUBCASE("302 by default") {
    Harness h = Harness::text(on_request(
        "  return req:redirect({\"sip:a@192.0.2.1\", {uri = \"sip:b@192.0.2.2\", q = 0.5}})"));
    FakeRequest r(invite());
    Decision d = h.request(r);
    REQUIRE_MESSAGE(d.kind == Decision::Kind::Redirect, h.policy.last_error());
    CHECK(d.status == 302);
    CHECK(d.contacts == std::vector<std::string>{"<sip:a@192.0.2.1>", "<sip:b@192.0.2.2>;q=0.5"});
  }
  SUBCASE("a given 3xx, a contact from location") {
    Harness h = Harness::text(on_request("  return req:redirect(location.lookup(req.uri), 301)"));
    h.services.bind("sip:bob@example.com", target("sip:bob@192.0.2.50", 125));
    FakeRequest r(invite());
    Decision d = h.request(r);
    CHECK(d.status == 301);
    CHECK(d.contacts == std::vector<std::string>{"<sip:bob@192.0.2.50>;q=0.125"});
  }
  SUBCASE("faults") {
    Harness h = Harness::text(on_request(R"lua(
  local ok, err = pcall(req.redirect, req, "sip:a@192.0.2.1", 404)
  eq(ok, false)
  ok, err = pcall(req.redirect, req)
  eq(ok, false)
  ok, err = req:redirect({})
  eq(ok, nil)
  return req:reply(200)
)lua"));
    FakeRequest r(invite());
    Decision d = h.request(r);
    CHECK_DECIDED_OK(h, d);
  }
}

TEST_CASE("registrar.save decides the registrar's response") {
  Harness h = Harness::text(on_request(R"lua(
  if req.method ~= "REGISTER" then
    local ok, err = registrar.save(req)
    eq(ok, nil)
    assert(err:find("needs a REGISTER"), err)
    return req:reply(200, "not saved")
  end
  return registrar.save(req)
)lua"));
  FakeRequest reg(sip_request("REGISTER", "sip:example.com"));
  Decision d = h.request(reg);
  CHECK(d.kind == Decision::Kind::Reply);
  CHECK(d.status == 200);
  CHECK(d.headers == std::vector<std::string>{"Contact: <sip:alice@192.0.2.10:5060>;expires=3600"});
  CHECK(d.origin == h.policy.generation()->path() + ":14");
  CHECK(h.services.saves == 1);

  FakeRequest inv(invite());
  CHECK(h.request(inv).reason == "not saved");
  CHECK(h.services.saves == 1);
}

TEST_CASE("location.lookup: results and faults") {
  Harness h = Harness::text(on_request(R"lua(
  eq(#location.lookup("sip:nobody@example.com"), 0)
  eq(#location.lookup(req.uri), 1)
  local c, err = location.lookup("sip:")
  eq(c, nil)
  assert(err:find("bad URI"), err)
  c, err = location.lookup("tel:+123")
  eq(c, nil)
  local ok = pcall(location.lookup, 42)
  eq(ok, false)
  return req:reply(200)
)lua"));
  h.services.bind("sip:bob@example.com", target("sip:bob@192.0.2.50"));
  FakeRequest r(invite());
  Decision d = h.request(r);
  CHECK_DECIDED_OK(h, d);
}

TEST_CASE("config and log") {
  Harness h = Harness::text(on_request(R"lua(
  eq(#config.domains, 2)
  eq(config.domains[1], "example.com")
  eq(config.is_local("EXAMPLE.com"), true)
  eq(config.is_local("example.org"), false)
  eq(config.is_local(nil), false)
  log.debug("debug", 1, nil, req.uri)
  log.info("info")
  log.warn("warn ", req.source.ip)
  log.error("error")
  return req:reply(200)
)lua"));
  FakeRequest r(invite());
  Decision d = h.request(r);
  CHECK_DECIDED_OK(h, d);
}

TEST_CASE("services are not available at the top level") {
  Harness h = Harness::text(std::string(kPrelude) + R"lua(
local c, err = location.lookup("sip:bob@example.com")
eq(c, nil)
assert(err:find("not available"))
eq(#config.domains, 0)
function on_request(req) return req:reply(200) end
)lua");
  FakeRequest r(invite());
  CHECK(h.request(r).status == 200);
}

// ---- values the engine builds on its fast paths ----

TEST_CASE("req.source.ip is written as Endpoint::ip writes it, IPv4 and IPv6") {
  Harness h = Harness::text(on_request(R"lua(
  local s = req.source
  return req:reply(200, s.ip .. "|" .. s.transport .. "|" .. s.port)
)lua"));
  for (const char* ip : {"0.0.0.0", "255.255.255.255", "10.0.100.5", "192.0.2.9", "1.23.45.6",
                         "100.10.1.199", "::1", "2001:db8::7", "::ffff:192.0.2.1", "fe80::1:2"}) {
    INFO(ip);
    FakeRequest r(invite(), ip, 5062, sb::core::Protocol::Tls);
    Decision d = h.request(r);
    REQUIRE_MESSAGE(d.status == 200, h.policy.last_error());
    auto ep = sb::core::Endpoint::parse(ip, 5062);
    REQUIRE(ep.has_value());
    CHECK(d.reason == ep->ip() + "|TLS|5062");
  }
}

TEST_CASE("uri values taken from the message equal the same text parsed again") {
  // req.uri, req.from.uri and req.to.uri reuse the message's parse; an assigned Request-URI
  // is parsed from its text. Both must read the same.
  Harness h = Harness::text(on_request(R"lua(
  local function same(a, b)
    for _, k in ipairs({"scheme", "user", "host", "port", "aor"}) do eq(a[k], b[k]) end
    for k, v in pairs(a.params) do eq(b.params[k], v) end
    for k, v in pairs(b.params) do eq(a.params[k], v) end
    eq(tostring(a), tostring(b))
    eq(a == b, true)
  end
  local from, to, ruri = req.from.uri, req.to.uri, req.uri
  req.uri = tostring(from)
  same(from, req.uri)
  req.uri = tostring(to)
  same(to, req.uri)
  req.uri = tostring(ruri)
  same(ruri, req.uri)
  eq(req.uri == ruri, true)
  return req:reply(200)
)lua"));
  struct Case {
    const char* ruri;
    const char* from;
  };
  for (Case c : {Case{"sip:bob@[2001:db8::1]:5070;transport=tcp;lr", "sip:alice@[::1]"},
                 Case{"sips:%62ob@EXAMPLE.com;maddr=192.0.2.1", "sip:alice:secret@example.com;user=phone"},
                 Case{"sip:192.0.2.4", "sip:+4930@gw.example.net:5080;tag-like=x"}}) {
    INFO(c.ruri);
    std::string msg = sip_request("INVITE", c.ruri);
    size_t at = msg.find("<sip:alice@example.com>");
    REQUIRE(at != std::string::npos);
    std::string from = "<";  // appended: GCC 12 at -O3 reports a false -Wrestrict for "<" + ...
    from += c.from;
    from += '>';
    msg.replace(at, 23, from);
    FakeRequest r(msg);
    Decision d = h.request(r);
    CHECK_MESSAGE(d.status == 200, h.policy.last_error());
  }
}

TEST_CASE("objects are checked: a foreign userdata is refused, a module keeps its members") {
  Harness h = Harness::text(on_request(R"lua(
  local ok, err = pcall(req.reply, io.stdout, 200)
  eq(ok, false)
  assert(err:find("request expected"), err)
  ok, err = pcall(req.reply, req.uri, 200)
  eq(ok, false)
  assert(err:find("request expected"), err)
  ok, err = pcall(function() return req.uri.host end)
  eq(ok, true)
  local host = getmetatable(req.uri) == "uri" and req.uri.host
  eq(host, "example.com")
  ok, err = pcall(function() local u = req.uri; return getmetatable(u) end)
  eq(err, "uri")
  -- A uri getter given something else.
  local uri_host = debug.getmetatable(req.uri).__index
  ok, err = pcall(uri_host, io.stdout, "host")
  eq(ok, false)
  assert(err:find("uri expected"), err)
  -- A module function the script removed is gone, not found again by __index.
  local lookup = location.lookup
  location.lookup = nil
  ok, err = pcall(function() return location.lookup end)
  eq(ok, false)
  assert(err:find("location has no field 'lookup'"), err)
  location.lookup = lookup
  eq(#config.domains, 2)
  ok, err = pcall(function() return config.nothing end)
  assert(err:find("config has no field 'nothing'"), err)
  ok, err = pcall(function() return req[1] end)
  assert(err:find("request has no field of type number"), err)
  return req:reply(200)
)lua"));
  FakeRequest r(invite());
  Decision d = h.request(r);
  CHECK_DECIDED_OK(h, d);
}

TEST_CASE("the state's memory count comes back down after large and growing allocations") {
  // Small blocks are pooled, large ones are not, and tables and strings grow across both.
  Harness h = Harness::text(on_request(R"lua(
  local t = {}
  for i = 1, 20000 do t[i] = tostring(i) end
  local big = string.rep("x", 1 << 20)
  local parts = {}
  for i = 1, 200 do parts[#parts + 1] = big:sub(i, i + 700) end
  eq(#table.concat(parts), 200 * 701)
  return req:reply(200)
)lua"));
  lua_State* L = h.policy.generation()->state().L;
  FakeRequest r(invite());
  Decision d = h.request(r);
  CHECK_DECIDED_OK(h, d);
  lua_gc(L, LUA_GCCOLLECT);
  size_t base = h.policy.generation()->memory_bytes();
  for (int i = 0; i < 5; ++i) {
    FakeRequest again(invite());
    CHECK_DECIDED_OK(h, h.request(again));
  }
  lua_gc(L, LUA_GCCOLLECT);
  size_t after = h.policy.generation()->memory_bytes();
  CHECK(after < base + base / 10);
  CHECK(static_cast<size_t>(lua_gc(L, LUA_GCCOUNT)) * 1024 <= after);
  CHECK(after < static_cast<size_t>(lua_gc(L, LUA_GCCOUNT) + 1) * 1024);
}

// ---- the export table ----

TEST_CASE("the export table is well formed") {
  std::set<std::string> objects;
  for (const ApiObject& o : lua_api_objects()) CHECK(objects.insert(o.name).second);
  std::set<std::string> names;
  lua_State* L = luaL_newstate();
  for (const ApiEntry& e : lua_api()) {
    INFO(e.object << "." << e.name);
    CHECK(objects.count(e.object) == 1);
    CHECK(names.insert(std::string(e.object) + "." + e.name).second);
    CHECK(static_cast<bool>(e.fn));
    CHECK(std::string(e.signature).find(e.name) != std::string::npos);
    CHECK(std::string(e.description).size() > 10);
    // Every example is valid Lua.
    std::string chunk = "local req, best, contacts, number\n" + std::string(e.example);
    CHECK_MESSAGE(luaL_loadstring(L, chunk.c_str()) == LUA_OK, lua_tostring(L, -1));
    lua_settop(L, 0);
  }
  lua_close(L);
}

TEST_CASE("every row of the export table exists at run time") {
  std::string body;
  for (const ApiEntry& e : lua_api()) {
    std::string o = e.object;
    std::string access = o == "request" ? "req" : o == "uri" ? "req.uri" : o;
    std::string expr = access + "." + e.name;
    if (e.kind == ApiKind::Field)
      body += "  local _ = " + expr + "\n";
    else
      body += "  assert(type(" + expr + ") == \"function\", \"" + expr + "\")\n";
  }
  body += "  return req:reply(200)";
  Harness h = Harness::text(on_request(body));
  FakeRequest r(invite());
  Decision d = h.request(r);
  CHECK_DECIDED_OK(h, d);
}

TEST_CASE("docs/lua-api.md is the generated text") {
  std::string want = lua_api_markdown();
  std::string path = source_path("docs/lua-api.md");
  if (const char* update = std::getenv("SB_UPDATE_DOCS"); update && *update) {
    std::ofstream out(path, std::ios::binary);
    out << want;
    REQUIRE(out.good());
  }
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  std::string have((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK_MESSAGE(have == want, "docs/lua-api.md is out of date: run SB_UPDATE_DOCS=1 "
                              "test_scripts -tc=\"docs*\" and commit the result");
  for (const ApiEntry& e : lua_api()) CHECK(have.find(e.signature) != std::string::npos);
}
