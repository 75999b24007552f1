// The scripts we ship: scripts/default.lua and every scripts/examples/*.lua, each run on
// parsed messages with fake services.
#include <memory>
#include <string>

#include "core/clock.h"
#include "location/location_service.h"
#include "proxy/credentials.h"
#include "proxy/digest.h"
#include "proxy/local_identity.h"
#include "proxy/policy_services.h"
#include "proxy/registrar.h"
#include "test/scripts/script_test_util.h"

using namespace sb::scripts;
using namespace sb::scripts::test;
using sb::proxy::Decision;
using sb::proxy::RelayOptions;

namespace {

std::string from(std::string_view method, std::string_view ruri, std::string_view from_uri) {
  std::string s = sip_request(method, ruri);
  size_t at = s.find("<sip:alice@example.com>");
  s.replace(at, 23, "<" + std::string(from_uri) + ">");
  return s;
}

std::string example(std::string_view name) {
  return source_path("scripts/examples/" + std::string(name));
}

}  // namespace

TEST_CASE("default.lua compiles with on_request and on_failure") {
  auto gen = must_compile(source_path("scripts/default.lua"));
  CHECK(gen->has_on_failure());
}

TEST_CASE("default.lua: REGISTER for our domain is saved, for another is 403") {
  Harness h(source_path("scripts/default.lua"));
  FakeRequest ours(sip_request("REGISTER", "sip:example.com"));
  Decision d = h.request(ours);
  CHECK(d.kind == Decision::Kind::Reply);
  CHECK(d.status == 200);
  CHECK(h.services.saves == 1);

  FakeRequest other(sip_request("REGISTER", "sip:example.org"));
  d = h.request(other);
  CHECK(d.status == 403);
  CHECK(h.services.saves == 1);
}

TEST_CASE("default.lua: in-dialog requests are relayed as they are") {
  Harness h(source_path("scripts/default.lua"));
  FakeRequest bye(sip_request("BYE", "sip:bob@198.51.100.20:5062", {}, "a6c85cf"));
  Decision d = h.request(bye);
  CHECK(d.kind == Decision::Kind::Relay);
  CHECK(d.targets.empty());
  CHECK_FALSE(d.relay.record_route);
  CHECK(h.services.lookups == 0);
}

TEST_CASE("default.lua: unknown user 404, registered user relayed by q with Record-Route") {
  Harness h(source_path("scripts/default.lua"));
  FakeRequest nobody(sip_request("INVITE", "sip:carol@example.com"));
  Decision d = h.request(nobody);
  CHECK(d.kind == Decision::Kind::Reply);
  CHECK(d.status == 404);

  h.services.bind("sip:bob@example.com", target("sip:bob@192.0.2.50:5060", 1000));
  h.services.bind("sip:bob@example.com", target("sip:bob@192.0.2.51:5060", 500));
  FakeRequest call(sip_request("INVITE", "sip:bob@example.com"));
  d = h.request(call);
  REQUIRE(d.kind == Decision::Kind::Relay);
  REQUIRE(d.targets.size() == 2);
  CHECK(d.targets[0].uri == "sip:bob@192.0.2.50:5060");
  CHECK(d.targets[1].q1000 == 500);
  CHECK(d.relay.mode == RelayOptions::Mode::ByQ);
  CHECK(d.relay.record_route);

  FakeRequest msg(sip_request("MESSAGE", "sip:bob@example.com"));
  d = h.request(msg);
  CHECK(d.kind == Decision::Kind::Relay);
  CHECK_FALSE(d.relay.record_route);  // only INVITE dialogs are record-routed
}

TEST_CASE("default.lua: a foreign domain is relayed only for trusted sources (not an open relay)") {
  Harness h(source_path("scripts/default.lua"));
  // 192.0.2.10 (FakeRequest's default) is trusted by the fake services: relayed as it is.
  FakeRequest trusted(sip_request("INVITE", "sip:bob@example.org"));
  Decision d = h.request(trusted);
  REQUIRE_MESSAGE(d.kind == Decision::Kind::Relay, h.policy.last_error());
  CHECK(d.targets.empty());
  CHECK(d.relay.record_route);
  CHECK(h.services.lookups == 0);

  // An untrusted source, a foreign user: nobody to authenticate as, 403.
  FakeRequest r(from("INVITE", "sip:bob@example.org", "sip:eve@evil.example"), "203.0.113.66");
  d = h.request(r);
  CHECK(d.kind == Decision::Kind::Reply);
  CHECK(d.status == 403);
  CHECK(d.reason == "Not a relay for this domain");
  // An untrusted source claiming one of our users, without config auth: 403 as well.
  FakeRequest ours(sip_request("INVITE", "sip:bob@example.org"), "203.0.113.66");
  d = h.request(ours);
  CHECK(d.status == 403);
  CHECK(h.services.lookups == 0);
}

TEST_CASE("default.lua: without config auth, untrusted sources can neither register nor call") {
  Harness h(source_path("scripts/default.lua"));
  h.services.bind("sip:bob@example.com", target("sip:bob@192.0.2.50:5060"));
  FakeRequest reg(sip_request("REGISTER", "sip:example.com"), "198.51.100.7");
  Decision d = h.request(reg);
  CHECK(d.kind == Decision::Kind::Reply);
  CHECK(d.status == 403);
  CHECK(d.reason == "Authentication Required");
  CHECK(h.services.saves == 0);

  FakeRequest call(sip_request("INVITE", "sip:bob@example.com"), "2001:db8::7");
  d = h.request(call);
  CHECK(d.status == 403);
  CHECK(h.services.lookups == 0);

  // A To tag alone does not make a request part of a dialog we routed.
  FakeRequest bye(sip_request("BYE", "sip:bob@198.51.100.20:5062", {}, "a6c85cf"), "198.51.100.7");
  d = h.request(bye);
  CHECK(d.status == 403);

  // Keep-alive OPTIONS to the proxy itself are still answered.
  FakeRequest opt(sip_request("OPTIONS", "sip:example.com"), "198.51.100.7");
  CHECK(h.request(opt).status == 200);

  // The same requests from a trusted source go through as before.
  FakeRequest reg2(sip_request("REGISTER", "sip:example.com"));
  CHECK(h.request(reg2).status == 200);
  FakeRequest call2(sip_request("INVITE", "sip:bob@example.com"));
  CHECK(h.request(call2).kind == Decision::Kind::Relay);
  CHECK(h.policy.counters().errors == 0);
}

TEST_CASE("default.lua: OPTIONS to the proxy is 200; on_failure sends the best response") {
  Harness h(source_path("scripts/default.lua"));
  FakeRequest opt(sip_request("OPTIONS", "sip:example.com"));
  CHECK(h.request(opt).status == 200);
  FakeRequest ip(sip_request("OPTIONS", "sip:192.0.2.1:5060"));
  CHECK(h.request(ip).status == 200);

  h.services.bind("sip:bob@example.com", target("sip:bob@192.0.2.50"));
  FakeRequest call(sip_request("INVITE", "sip:bob@example.com"));
  h.request(call);
  CHECK(h.failure(call, 486, "Busy Here").kind == Decision::Kind::None);
  CHECK(h.policy.counters().errors == 0);
}

TEST_CASE("examples/trunk_failover.lua: serial relay to the primary, then the backup") {
  Harness h(example("trunk_failover.lua"));
  FakeRequest out(sip_request("INVITE", "sip:+4930123456@example.com"));
  Decision d = h.request(out);
  REQUIRE_MESSAGE(d.kind == Decision::Kind::Relay, h.policy.last_error());
  REQUIRE(d.targets.size() == 2);
  CHECK(d.targets[0].uri == "sip:+4930123456@trunk1.carrier.example;transport=tcp");
  CHECK(d.targets[0].q1000 == 1000);
  CHECK(d.targets[1].uri == "sip:+4930123456@trunk2.carrier.example;transport=tcp");
  CHECK(d.targets[1].q1000 == 500);
  CHECK(d.relay.mode == RelayOptions::Mode::Serial);
  CHECK(d.relay.timeout_ms == 8000);
  CHECK(d.relay.failover_codes == std::vector<int>{503, 500, 408});
  CHECK(d.relay.record_route);

  FakeRequest foreign(sip_request("INVITE", "sip:123@elsewhere.example.net"));
  d = h.request(foreign);
  REQUIRE(d.kind == Decision::Kind::Relay);
  CHECK(d.targets[0].uri == "sip:123@trunk1.carrier.example;transport=tcp");

  FakeRequest stranger(from("INVITE", "sip:123@elsewhere.example.net", "sip:eve@evil.example"));
  CHECK(h.request(stranger).status == 403);

  h.services.bind("sip:bob@example.com", target("sip:bob@192.0.2.50"));
  FakeRequest local(sip_request("INVITE", "sip:bob@example.com"));
  d = h.request(local);
  REQUIRE(d.targets.size() == 1);
  CHECK(d.targets[0].uri == "sip:bob@192.0.2.50");
}

TEST_CASE("examples/prefix_routing.lua: the longest prefix picks the gateway") {
  Harness h(example("prefix_routing.lua"));
  FakeRequest berlin(sip_request("INVITE", "sip:+49301234567@example.com"));
  Decision d = h.request(berlin);
  REQUIRE_MESSAGE(d.kind == Decision::Kind::Relay, h.policy.last_error());
  REQUIRE(d.targets.size() == 1);
  CHECK(d.targets[0].uri == "sip:49301234567@gw-berlin.example.net:5080");
  CHECK(berlin.edits_.set_headers ==
        std::vector<std::pair<std::string, std::string>>{{"X-LCR-Prefix", "4930"}});

  FakeRequest munich(sip_request("INVITE", "sip:004989123456@example.com"));
  d = h.request(munich);
  REQUIRE(d.targets.size() == 1);
  CHECK(d.targets[0].uri == "sip:4989123456@gw-de.example.net");

  FakeRequest paris(sip_request("INVITE", "sip:33-1-23-45@example.com"));
  d = h.request(paris);
  REQUIRE(d.targets.size() == 1);
  CHECK(d.targets[0].uri == "sip:3312345@gw-fr.example.net;transport=tcp");

  FakeRequest nowhere(sip_request("INVITE", "sip:999123@example.com"));
  d = h.request(nowhere);
  CHECK(d.status == 404);
  CHECK(d.reason == "No Route");

  FakeRequest name(sip_request("INVITE", "sip:carol@example.com"));
  CHECK(h.request(name).status == 484);

  h.services.bind("sip:carol@example.com", target("sip:carol@192.0.2.60"));
  FakeRequest carol(sip_request("INVITE", "sip:carol@example.com"));
  d = h.request(carol);
  REQUIRE(d.targets.size() == 1);
  CHECK(d.targets[0].uri == "sip:carol@192.0.2.60");
}

TEST_CASE("examples/blocklist.lua: listed sources get 403, others are routed") {
  Harness h(example("blocklist.lua"));
  FakeRequest blocked(sip_request("REGISTER", "sip:example.com"), "203.0.113.66");
  Decision d = h.request(blocked);
  CHECK(d.status == 403);
  CHECK(d.reason == "Forbidden");
  CHECK(h.services.saves == 0);

  FakeRequest blocked6(sip_request("INVITE", "sip:bob@example.com"), "2001:db8::bad", 5060,
                       sb::core::Protocol::Tcp);
  CHECK(h.request(blocked6).status == 403);

  FakeRequest fine(sip_request("REGISTER", "sip:example.com"), "192.0.2.99");
  d = h.request(fine);
  CHECK(d.status == 200);
  CHECK(h.services.saves == 1);

  FakeRequest unknown(sip_request("INVITE", "sip:bob@example.com"), "192.0.2.99");
  CHECK(h.request(unknown).status == 404);
}

TEST_CASE("examples/time_of_day.lua: office hours, voicemail, failover to voicemail") {
  // The clock is the global now(); a wrapper script replaces it.
  auto at = [](int wday, int hour) {
    return write_script("dofile(\"" + example("time_of_day.lua") + "\")\n" +
                        "function now() return {wday = " + std::to_string(wday) +
                        ", hour = " + std::to_string(hour) + ", min = 0} end\n");
  };
  const std::string office = "sip:office-phone@pbx.example.com";
  const std::string voicemail = "sip:vm-sales@voicemail.example.com";

  SUBCASE("Tuesday 10:00 rings the office, then voicemail when it is busy") {
    Harness h(at(3, 10));
    FakeRequest call(sip_request("INVITE", "sip:sales@example.com"));
    Decision d = h.request(call);
    REQUIRE_MESSAGE(d.kind == Decision::Kind::Relay, h.policy.last_error());
    REQUIRE(d.targets.size() == 1);
    CHECK(d.targets[0].uri == office);
    CHECK(d.relay.timeout_ms == 25000);
    CHECK(d.relay.record_route);

    d = h.failure(call, 486, "Busy Here", {office});
    REQUIRE(d.kind == Decision::Kind::Relay);
    CHECK(d.targets[0].uri == voicemail);
    CHECK(d.relay.record_route);

    // Voicemail failed too: the caller gets that failure.
    CHECK(h.failure(call, 480, "Temporarily Unavailable", {office, voicemail}).kind ==
          Decision::Kind::None);
  }
  SUBCASE("Saturday 10:00 and Monday 18:00 go to voicemail") {
    for (auto [wday, hour] : {std::pair{7, 10}, std::pair{2, 18}}) {
      Harness h(at(wday, hour));
      FakeRequest call(sip_request("INVITE", "sip:sales@example.com"));
      Decision d = h.request(call);
      REQUIRE(d.targets.size() == 1);
      CHECK(d.targets[0].uri == voicemail);
    }
  }
  SUBCASE("other users are routed as usual; the real clock works") {
    Harness h(example("time_of_day.lua"));
    FakeRequest call(sip_request("INVITE", "sip:sales@example.com"));
    Decision d = h.request(call);
    REQUIRE_MESSAGE(d.targets.size() == 1, h.policy.last_error());
    CHECK((d.targets[0].uri == office || d.targets[0].uri == voicemail));
    FakeRequest bob(sip_request("INVITE", "sip:bob@example.com"));
    CHECK(h.request(bob).status == 404);
  }
}

// default.lua with config auth, against the real RegistrarServices (digest + users file):
// untrusted sources are challenged and get through with good credentials.
namespace {

using sb::proxy::digest::Algorithm;

struct DefaultAuthFixture {
  sb::core::FakeClock clock;
  sb::location::LocationService loc{clock, [] { sb::location::Settings s; s.sweep_interval_ms = 0; return s; }(),
                                    nullptr};
  sb::proxy::Registrar registrar{loc, clock, [] {
                                   sb::proxy::RegistrarSettings s;
                                   s.domains = {"example.com"};
                                   return s;
                                 }()};
  sb::proxy::LocalIdentity identity{{}, {"example.com"}};
  sb::proxy::RegistrarServices services{registrar, loc, identity, false};
  std::unique_ptr<LuaPolicy> policy;

  DefaultAuthFixture() {
    auto users = sb::proxy::parse_user_store(
        R"({"realm": "example.com", "users": {"alice": {"ha1_sha256": ")" +
            sb::proxy::digest::ha1(Algorithm::SHA256, "alice", "example.com", "secret") +
            R"(", "aors": ["sip:alice@example.com"]}}})",
        "users.json");
    REQUIRE(users.ok());
    auto setup = std::make_shared<sb::proxy::AuthSetup>();
    setup->settings.realm = "example.com";
    setup->settings.secret = "0123456789abcdef0123456789abcdef";
    setup->settings.algorithms = {Algorithm::SHA256};
    setup->users = users.store;
    services.set_auth(setup, clock, 0);
    services.set_trusted(sb::core::CidrSet({*sb::core::parse_cidr("10.0.0.0/8")}));
    policy = std::make_unique<LuaPolicy>(must_compile(source_path("scripts/default.lua")), services);
  }
  Decision run(FakeRequest& r) {
    Outcome o;
    policy->on_request(r, capture(o));
    REQUIRE(o.calls == 1);
    return o.d;
  }
  std::string nonce() {
    auto lines = services.authenticator()->challenge(true, {}, false);
    size_t a = lines[0].find("nonce=\"") + 7;
    return lines[0].substr(a, lines[0].find('"', a) - a);
  }
  // `method ruri` from alice with credentials for `password`.
  std::string signed_request(std::string_view method, std::string_view ruri, std::string_view password,
                             std::string_view to = "sip:alice@example.com") {
    std::string n = nonce();
    std::string h = sb::proxy::digest::ha1(Algorithm::SHA256, "alice", "example.com", password);
    std::string resp = sb::proxy::digest::response(Algorithm::SHA256, h, n, "00000001", "abc", "auth", method, ruri);
    std::string name = method == "REGISTER" ? "Authorization" : "Proxy-Authorization";
    std::string text = sip_request(method, ruri,
                                   {name + ": Digest username=\"alice\", realm=\"example.com\", nonce=\"" + n +
                                    "\", uri=\"" + std::string(ruri) + "\", response=\"" + resp +
                                    "\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"abc\""});
    std::string to_line = "To: Bob <sip:bob@example.com>";
    text.replace(text.find(to_line), to_line.size(), "To: <" + std::string(to) + ">");
    return text;
  }
};

}  // namespace

TEST_CASE("default.lua with auth: untrusted REGISTER 401, INVITE 407; good credentials pass") {
  DefaultAuthFixture f;
  FakeRequest reg(sip_request("REGISTER", "sip:example.com"), "198.51.100.7");
  Decision d = f.run(reg);
  CHECK(d.status == 401);
  REQUIRE_FALSE(d.headers.empty());
  CHECK(d.headers[0].starts_with("WWW-Authenticate: Digest"));

  FakeRequest inv(sip_request("INVITE", "sip:bob@example.com"), "198.51.100.7");
  d = f.run(inv);
  CHECK(d.status == 407);
  REQUIRE_FALSE(d.headers.empty());
  CHECK(d.headers[0].starts_with("Proxy-Authenticate: Digest"));

  // A foreign domain from one of our users: challenged too (it may call out once authenticated).
  FakeRequest out(sip_request("INVITE", "sip:bob@example.org"), "198.51.100.7");
  CHECK(f.run(out).status == 407);

  FakeRequest good(f.signed_request("REGISTER", "sip:example.com", "secret"), "198.51.100.7");
  d = f.run(good);
  CHECK(d.status == 200);
  CHECK(good.auth.verified);

  FakeRequest wrong(f.signed_request("REGISTER", "sip:example.com", "nope"), "198.51.100.7");
  CHECK(f.run(wrong).status == 401);

  // Authenticated, but another user's AOR: 403 from the registrar.
  FakeRequest other(f.signed_request("REGISTER", "sip:example.com", "secret", "sip:bob@example.com"),
                    "198.51.100.7");
  CHECK(f.run(other).status == 403);

  // An authenticated call to a foreign domain is relayed, the credentials removed.
  FakeRequest call(f.signed_request("INVITE", "sip:carol@example.org", "secret"), "198.51.100.7");
  d = f.run(call);
  CHECK(d.kind == Decision::Kind::Relay);
  CHECK(call.edits_.remove_headers == std::vector<std::string>{"Proxy-Authorization"});

  // Trusted (10.0.0.0/8 here): no challenge.
  FakeRequest lan(sip_request("REGISTER", "sip:example.com"), "10.1.2.3");
  CHECK(f.run(lan).status == 200);
}
