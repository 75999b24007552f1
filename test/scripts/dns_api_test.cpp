// dns.resolve: the request waits for the worker's resolver and carries on with the server
// list; an answer available at once (IP literal, cached name) does not wait; faults come back
// as nil, err; misuse raises.
#include <functional>
#include <string>
#include <vector>

#include "proxy/resolver.h"
#include "test/scripts/script_test_util.h"

using namespace sb;
using namespace sb::scripts;
using namespace sb::scripts::test;

namespace {

// A resolver the test answers by hand (or at once, when `immediate` is set).
class FakeResolver final : public proxy::Resolver {
 public:
  void resolve(const core::Uri& uri, std::function<void(proxy::ServerList)> done) override {
    asked.push_back(std::string(uri.raw));
    if (immediate) {
      done(immediate_list);
      return;
    }
    pending.push_back(std::move(done));
  }
  void answer(size_t i, proxy::ServerList l) {
    auto done = std::move(pending.at(i));
    done(std::move(l));
  }

  std::vector<std::string> asked;
  std::vector<std::function<void(proxy::ServerList)>> pending;
  bool immediate = false;
  proxy::ServerList immediate_list;
};

core::Peer peer(core::Protocol p, std::string_view ip, uint16_t port) {
  core::Peer out;
  out.protocol = p;
  out.endpoint = *core::Endpoint::parse(ip, port);
  return out;
}

proxy::ServerList two_servers() {
  proxy::ServerList l;
  l.servers = {peer(core::Protocol::Tcp, "192.0.2.1", 5070), peer(core::Protocol::Udp, "2001:db8::2", 5080)};
  return l;
}

// Replies 200 with the servers, one "TRANSPORT ip port" per entry, or 503 with err.
const char* kShow = R"(
function on_request(req)
  local servers, err = dns.resolve(%s)
  if not servers then return req:reply(503, "DNS: " .. err) end
  local out = {}
  for _, s in ipairs(servers) do out[#out + 1] = s.transport .. " " .. s.ip .. " " .. s.port end
  return req:reply(200, table.concat(out, ", "))
end
)";

std::string script(std::string_view arg) {
  char buf[1024];
  snprintf(buf, sizeof buf, kShow, std::string(arg).c_str());
  return buf;
}

struct DnsHarness {
  explicit DnsHarness(std::string_view lua, proxy::Resolver* r)
      : policy(must_compile(write_script(lua)), services, r) {}
  FakeServices services;
  LuaPolicy policy;
};

}  // namespace

TEST_CASE("dns.resolve: the request waits, then carries on with the servers") {
  FakeResolver r;
  DnsHarness h(script("\"sip:trunk.example.com;transport=tcp\""), &r);
  FakeRequest a(sip_request("INVITE", "sip:bob@example.com"));
  FakeRequest b(sip_request("INVITE", "sip:carol@example.com"));
  Outcome oa, ob;
  h.policy.on_request(a, capture(oa));
  h.policy.on_request(b, capture(ob));
  CHECK(oa.calls == 0);
  CHECK(h.policy.waiting() == 2);
  CHECK(h.policy.counters().waits == 2);
  REQUIRE(r.pending.size() == 2);
  CHECK(r.asked[0] == "sip:trunk.example.com;transport=tcp");

  r.answer(1, two_servers());
  CHECK(ob.calls == 1);
  CHECK(ob.d.status == 200);
  CHECK(ob.d.reason == "TCP 192.0.2.1 5070, UDP 2001:db8::2 5080");
  proxy::ServerList none;
  none.error = "trunk.example.com: no such domain (NXDOMAIN)";
  r.answer(0, none);
  CHECK(oa.calls == 1);
  CHECK(oa.d.status == 503);
  CHECK(oa.d.reason == "DNS: trunk.example.com: no such domain (NXDOMAIN)");
  CHECK(h.policy.waiting() == 0);
}

TEST_CASE("dns.resolve: an answer at once does not wait; a uri value is accepted") {
  FakeResolver r;
  r.immediate = true;
  r.immediate_list = two_servers();
  DnsHarness h(script("req.uri"), &r);
  FakeRequest a(sip_request("INVITE", "sip:bob@192.0.2.1"));
  Outcome o;
  h.policy.on_request(a, capture(o));
  CHECK(o.calls == 1);
  CHECK(o.d.reason == "TCP 192.0.2.1 5070, UDP 2001:db8::2 5080");
  CHECK(h.policy.counters().waits == 0);
  CHECK(r.asked == std::vector<std::string>{"sip:bob@192.0.2.1"});
}

TEST_CASE("dns.resolve: in on_failure too, and more than once per request") {
  FakeResolver r;
  DnsHarness h(R"(
function on_request(req) return req:relay("sip:a@example.com") end
function on_failure(req, best)
  local first = dns.resolve("sip:one.example.com")
  local second = dns.resolve("sip:two.example.com")
  return req:relay("sip:x@" .. first[1].ip .. ":" .. first[1].port .. ";transport=" .. second[1].transport)
end
)", &r);
  FakeRequest a(sip_request("INVITE", "sip:bob@example.com"));
  Outcome o;
  h.policy.on_request(a, capture(o));
  REQUIRE(o.calls == 1);
  Outcome f;
  h.policy.on_failure(a, proxy::FailureInfo{503, "Service Unavailable", {}}, capture(f));
  CHECK(f.calls == 0);
  r.answer(0, two_servers());
  CHECK(f.calls == 0);
  REQUIRE(r.pending.size() == 2);
  proxy::ServerList udp;
  udp.servers = {peer(core::Protocol::Udp, "192.0.2.9", 5060)};
  r.answer(1, udp);
  REQUIRE(f.calls == 1);
  REQUIRE(f.d.kind == proxy::Decision::Kind::Relay);
  REQUIRE(f.d.targets.size() == 1);
  CHECK(f.d.targets[0].uri == "sip:x@192.0.2.1:5070;transport=UDP");
}

TEST_CASE("dns.resolve: faults return nil, err; misuse raises") {
  FakeResolver r;
  SUBCASE("a URI that does not parse, or is not SIP: no lookup") {
    DnsHarness h(script("\"tel:+15551234\""), &r);
    FakeRequest a(sip_request("INVITE", "sip:bob@example.com"));
    Outcome o;
    h.policy.on_request(a, capture(o));
    REQUIRE(o.calls == 1);
    CHECK(o.d.reason == "DNS: not a sip: or sips: URI: 'tel:+15551234'");
    CHECK(r.asked.empty());
  }
  SUBCASE("no resolver") {
    DnsHarness h(script("\"sip:trunk.example.com\""), nullptr);
    FakeRequest a(sip_request("INVITE", "sip:bob@example.com"));
    Outcome o;
    h.policy.on_request(a, capture(o));
    REQUIRE(o.calls == 1);
    CHECK(o.d.reason == "DNS: DNS is not available here");
  }
  SUBCASE("a wrong argument is a script error") {
    DnsHarness h(script("42"), &r);
    FakeRequest a(sip_request("INVITE", "sip:bob@example.com"));
    Outcome o;
    h.policy.on_request(a, capture(o));
    REQUIRE(o.calls == 1);
    CHECK(o.d.status == 500);
    CHECK(h.policy.last_error().find("URI string or uri expected") != std::string::npos);
  }
  SUBCASE("inside a coroutine the script created it cannot wait") {
    DnsHarness h(R"(
function on_request(req)
  local ok, err = coroutine.resume(coroutine.create(function() return dns.resolve("sip:a.example.com") end))
  return req:reply(500, tostring(ok) .. " " .. err)
end
)", &r);
    FakeRequest a(sip_request("INVITE", "sip:bob@example.com"));
    Outcome o;
    h.policy.on_request(a, capture(o));
    REQUIRE(o.calls == 1);
    CHECK(o.d.reason.find("false") == 0);
    CHECK(o.d.reason.find("dns.resolve: cannot wait inside a coroutine the script created") != std::string::npos);
    CHECK(r.asked.empty());
  }
}

TEST_CASE("dns.resolve: not at the top level") {
  FakeResolver r;
  // Without a policy the top level has no resolver: nil, err (a compile does not fail).
  auto gen = compile(write_script("local s, err = dns.resolve('sip:a.example.com')\n"
                                  "assert(s == nil and err == 'DNS is not available here')\n"
                                  "function on_request(req) return req:reply(200) end\n"),
                     {});
  CHECK(gen.ok());
}

TEST_CASE("dns.resolve: a policy destroyed while a request waits is clean") {
  FakeResolver r;
  {
    DnsHarness h(script("\"sip:trunk.example.com\""), &r);
    FakeRequest a(sip_request("INVITE", "sip:bob@example.com"));
    Outcome o;
    h.policy.on_request(a, capture(o));
    CHECK(h.policy.waiting() == 1);
  }
  // The worker stops its resolver before the policy goes: the callback is dropped, never run.
  r.pending.clear();
}
