// The auth module against the real RegistrarServices (digest + users file + registrar).
#include <doctest/doctest.h>

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

namespace sb::scripts::test {
namespace {

using proxy::digest::Algorithm;

constexpr const char* kScript = R"lua(
function on_request(req)
  local user, why = auth.verify(req)
  if not user then
    last_reason = why
    return auth.challenge(req)
  end
  if req.method == "REGISTER" then return registrar.save(req) end
  return req:relay()
end
)lua";

struct AuthFixture {
  core::FakeClock clock;
  location::LocationService loc{clock, [] { location::Settings s; s.sweep_interval_ms = 0; return s; }(), nullptr};
  proxy::Registrar registrar{loc, clock, [] {
                               proxy::RegistrarSettings s;
                               s.domains = {"example.com"};
                               return s;
                             }()};
  proxy::LocalIdentity identity{{}, {"example.com"}};
  proxy::RegistrarServices services{registrar, loc, identity, false};
  std::unique_ptr<LuaPolicy> policy;

  explicit AuthFixture(std::string_view lua = kScript, bool configure = true) {
    if (configure) {
      auto users = proxy::parse_user_store(
          R"({"realm": "example.com", "users": {"alice": {"ha1_sha256": ")" +
              proxy::digest::ha1(Algorithm::SHA256, "alice", "example.com", "secret") +
              R"(", "ha1_md5": ")" + proxy::digest::ha1(Algorithm::MD5, "alice", "example.com", "secret") +
              R"(", "aors": ["sip:alice@example.com"]}}})",
          "users.json");
      REQUIRE(users.ok());
      auto setup = std::make_shared<proxy::AuthSetup>();
      setup->settings.realm = "example.com";
      setup->settings.secret = "0123456789abcdef0123456789abcdef";
      setup->users = users.store;
      services.set_auth(setup, clock, 0);
    }
    policy = std::make_unique<LuaPolicy>(must_compile(write_script(lua)), services);
  }

  proxy::Decision run(FakeRequest& r) {
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

  // A request with credentials for `user`/`password`; To is `to`.
  static std::string with_credentials(std::string_view method, std::string_view n,
                                      std::string_view password, std::string_view to_user = "alice",
                                      std::vector<std::string> extra = {},
                                      std::string_view nc = "00000001") {
    std::string uri = "sip:example.com";
    std::string h = proxy::digest::ha1(Algorithm::SHA256, "alice", "example.com", password);
    std::string resp = proxy::digest::response(Algorithm::SHA256, h, n, nc, "abc", "auth", method, uri);
    std::string name = method == "REGISTER" ? "Authorization" : "Proxy-Authorization";
    extra.push_back(name + ": Digest username=\"alice\", realm=\"example.com\", nonce=\"" + std::string(n) +
                    "\", uri=\"" + uri + "\", response=\"" + resp +
                    "\", algorithm=SHA-256, qop=auth, nc=" + std::string(nc) + ", cnonce=\"abc\"");
    std::string text = sip_request(method, uri, extra);
    std::string to = "To: Bob <sip:bob@example.com>";
    text.replace(text.find(to), to.size(), "To: <sip:" + std::string(to_user) + "@example.com>");
    return text;
  }
};

TEST_CASE("auth api: no credentials → 401 for REGISTER, 407 for INVITE, one header per algorithm") {
  AuthFixture f;
  FakeRequest reg(sip_request("REGISTER", "sip:example.com"));
  proxy::Decision d = f.run(reg);
  CHECK(d.kind == proxy::Decision::Kind::Reply);
  CHECK(d.status == 401);
  REQUIRE(d.headers.size() == 2);
  CHECK(d.headers[0].starts_with("WWW-Authenticate: Digest realm=\"example.com\""));
  CHECK(d.headers[0].find("algorithm=SHA-256") != std::string::npos);
  CHECK(d.headers[1].find("algorithm=MD5") != std::string::npos);
  CHECK_FALSE(reg.auth.verified);

  FakeRequest inv(sip_request("INVITE", "sip:bob@example.com"));
  d = f.run(inv);
  CHECK(d.status == 407);
  CHECK(d.headers[0].starts_with("Proxy-Authenticate: Digest realm=\"example.com\""));
}

TEST_CASE("auth api: good credentials register; the AOR must be the user's") {
  AuthFixture f;
  FakeRequest ok(AuthFixture::with_credentials("REGISTER", f.nonce(), "secret"));
  proxy::Decision d = f.run(ok);
  CHECK(d.status == 200);
  CHECK(ok.auth.verified);
  CHECK(ok.auth.user == "alice");

  FakeRequest other(AuthFixture::with_credentials("REGISTER", f.nonce(), "secret", "bob"));
  d = f.run(other);
  CHECK(d.status == 403);

  FakeRequest wrong(AuthFixture::with_credentials("REGISTER", f.nonce(), "nope"));
  d = f.run(wrong);
  CHECK(d.status == 401);  // a new challenge: the UA may ask its user again
}

TEST_CASE("auth api: verified credentials are removed before relaying, others stay") {
  AuthFixture f;
  FakeRequest inv(AuthFixture::with_credentials(
      "INVITE", f.nonce(), "secret", "bob",
      {"Proxy-Authorization: Digest username=\"x\", realm=\"upstream.net\", nonce=\"n\", "
       "uri=\"sip:example.com\", response=\"r\""}));
  proxy::Decision d = f.run(inv);
  CHECK(d.kind == proxy::Decision::Kind::Relay);
  CHECK(inv.edits_.remove_headers == std::vector<std::string>{"Proxy-Authorization"});
  REQUIRE(inv.edits_.add_headers.size() == 1);
  CHECK(inv.edits_.add_headers[0].find("realm=\"upstream.net\"") != std::string::npos);
}

TEST_CASE("auth api: replay, stale and the reason") {
  AuthFixture f(R"lua(
function on_request(req)
  local user, why = auth.verify(req)
  if not user then return auth.challenge(req) end
  return req:reply(200, "OK " .. user)
end
)lua");
  std::string n = f.nonce();
  FakeRequest first(AuthFixture::with_credentials("INVITE", n, "secret"));
  CHECK(f.run(first).reason == "OK alice");
  FakeRequest replay(AuthFixture::with_credentials("INVITE", n, "secret"));
  proxy::Decision d = f.run(replay);
  CHECK(d.status == 407);
  CHECK(d.headers[0].find("stale=true") == std::string::npos);

  f.clock.advance(301'000);
  FakeRequest old(AuthFixture::with_credentials("INVITE", n, "secret", "alice", {}, "00000002"));
  d = f.run(old);
  CHECK(d.status == 407);
  CHECK(d.headers[0].ends_with(", stale=true"));
}

TEST_CASE("auth api: reasons, realm and HA1 from the script") {
  AuthFixture f(R"lua(
function on_request(req)
  local mode = req:header("X-Mode")
  if mode == "reason" then
    local user, why = auth.verify(req)
    return req:reply(403, why)
  elseif mode == "username" then
    local name, err = auth.username(req)
    return req:reply(200, name or err)
  elseif mode == "ha1" then
    local ha1 = {["SHA-256"] = req:header("X-HA1")}
    local user, why = auth.verify(req, nil, ha1)
    return req:reply(200, user or why)
  elseif mode == "realm" then
    return auth.challenge(req, "other.org")
  elseif mode == "badrealm" then
    return auth.challenge(req, 'a"b')
  end
end
)lua");
  FakeRequest none(sip_request("INVITE", "sip:bob@example.com", {"X-Mode: reason"}));
  CHECK(f.run(none).reason == "no credentials for realm example.com");
  FakeRequest wrong(AuthFixture::with_credentials("INVITE", f.nonce(), "nope", "bob", {"X-Mode: reason"}));
  CHECK(f.run(wrong).reason == "wrong password");
  FakeRequest name(AuthFixture::with_credentials("INVITE", f.nonce(), "nope", "bob", {"X-Mode: username"}));
  CHECK(f.run(name).reason == "alice");
  FakeRequest nocred(sip_request("INVITE", "sip:bob@example.com", {"X-Mode: username"}));
  CHECK(f.run(nocred).reason == "no credentials");

  std::string other = proxy::digest::ha1(Algorithm::SHA256, "alice", "example.com", "other-pw");
  FakeRequest ha1(AuthFixture::with_credentials("INVITE", f.nonce(), "other-pw", "bob",
                                                {"X-Mode: ha1", "X-HA1: " + other}));
  CHECK(f.run(ha1).reason == "alice");

  FakeRequest realm(sip_request("INVITE", "sip:bob@example.com", {"X-Mode: realm"}));
  proxy::Decision d = f.run(realm);
  CHECK(d.status == 407);
  CHECK(d.headers[0].starts_with("Proxy-Authenticate: Digest realm=\"other.org\""));
  FakeRequest bad(sip_request("INVITE", "sip:bob@example.com", {"X-Mode: badrealm"}));
  d = f.run(bad);
  CHECK(d.status == 500);  // a script error
}

TEST_CASE("auth api: without config auth the functions return nil, err") {
  AuthFixture f(R"lua(
function on_request(req)
  local user, why = auth.verify(req)
  local ok, err = auth.challenge(req)
  return req:reply(403, tostring(user) .. "|" .. why .. "|" .. tostring(ok) .. "|" .. err)
end
)lua", false);
  FakeRequest r(sip_request("INVITE", "sip:bob@example.com"));
  CHECK(f.run(r).reason ==
        "nil|authentication is not configured (config auth)|nil|authentication is not configured (config auth)");
}

}  // namespace
}  // namespace sb::scripts::test
