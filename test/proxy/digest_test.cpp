#include "proxy/digest.h"

#include <doctest/doctest.h>

#include <deque>
#include <string>

#include "core/clock.h"
#include "core/message.h"

namespace sb::proxy::digest {
namespace {

// RFC 7616 §3.9.1: user "Mufasa", password "Circle of Life", GET /dir/index.html.
constexpr std::string_view kRealm7616 = "http-auth@example.org";
constexpr std::string_view kNonce7616 = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
constexpr std::string_view kCnonce7616 = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

TEST_CASE("digest: RFC 7616 §3.9.1 worked example (MD5 and SHA-256)") {
  std::string h_md5 = ha1(Algorithm::MD5, "Mufasa", kRealm7616, "Circle of Life");
  CHECK(response(Algorithm::MD5, h_md5, kNonce7616, "00000001", kCnonce7616, "auth", "GET",
                 "/dir/index.html") == "8ca523f5e9506fed4657c9700eebdbec");
  std::string h_256 = ha1(Algorithm::SHA256, "Mufasa", kRealm7616, "Circle of Life");
  CHECK(response(Algorithm::SHA256, h_256, kNonce7616, "00000001", kCnonce7616, "auth", "GET",
                 "/dir/index.html") ==
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
}

TEST_CASE("digest: algorithm names and hashes") {
  CHECK(parse_algorithm("sha-256") == Algorithm::SHA256);
  CHECK(parse_algorithm("MD5") == Algorithm::MD5);
  CHECK(parse_algorithm("SHA-512-256") == Algorithm::SHA512_256);
  CHECK_FALSE(parse_algorithm("MD5-sess"));
  CHECK_FALSE(parse_algorithm("SHA-1"));
  CHECK(hash_hex(Algorithm::MD5, "") == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(hash_hex(Algorithm::SHA256, "abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // FIPS 180-4 SHA-512/256 of "abc".
  CHECK(hash_hex(Algorithm::SHA512_256, "abc") ==
        "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23");
  CHECK(random_secret().size() == 64);
  CHECK(random_secret() != random_secret());
}

TEST_CASE("digest: NonceCounts refuses replays and forgotten nonces") {
  NonceCounts t(2);
  CHECK(t.use("a", 10, 1) == NonceCounts::Result::Accepted);
  CHECK(t.use("a", 10, 1) == NonceCounts::Result::Replayed);
  CHECK(t.use("a", 10, 2) == NonceCounts::Result::Accepted);
  CHECK(t.use("b", 20, 1) == NonceCounts::Result::Accepted);
  CHECK(t.use("c", 30, 1) == NonceCounts::Result::Accepted);  // evicts "a" (issued 10)
  CHECK(t.size() == 2);
  CHECK(t.use("a", 10, 3) == NonceCounts::Result::Forgotten);  // its nc is lost: stale
  CHECK(t.use("d", 5, 1) == NonceCounts::Result::Forgotten);   // as old as an evicted one
  CHECK(t.use("b", 20, 1) == NonceCounts::Result::Replayed);
}

// A UA answering challenges: builds requests with credentials.
struct Fixture {
  core::FakeClock clock;
  Settings settings() {
    Settings s;
    s.realm = "example.com";
    s.secret = "0123456789abcdef0123456789abcdef";
    s.nonce_ttl_ms = 300'000;
    s.worker = 1;
    return s;
  }
  Authenticator auth{settings(), clock};
  std::deque<std::string> texts;
  std::deque<core::Message> msgs;

  const core::Message& parse(std::string text) {
    texts.push_back(std::move(text));
    msgs.emplace_back();
    auto st = msgs.back().parse(texts.back());
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? "" : core::describe(st.error())));
    return msgs.back();
  }

  // The nonce of a fresh challenge line.
  std::string nonce(std::string_view realm = {}) {
    auto lines = auth.challenge(true, realm, false);
    REQUIRE(!lines.empty());
    size_t a = lines[0].find("nonce=\"") + 7;
    return lines[0].substr(a, lines[0].find('"', a) - a);
  }

  std::string request(std::string_view method, std::string_view n, std::string_view password,
                      Algorithm alg = Algorithm::SHA256, std::string_view nc = "00000001",
                      std::string_view realm = "example.com", std::string_view user = "alice",
                      std::string extra = {}) {
    std::string uri = "sip:example.com";
    std::string h = ha1(alg, user, realm, password);
    std::string resp = response(alg, h, n, nc, "0a4f113b", "auth", method, uri);
    std::string cred = "Digest username=\"" + std::string(user) + "\", realm=\"" +
                       std::string(realm) + "\", nonce=\"" + std::string(n) + "\", uri=\"" + uri +
                       "\", response=\"" + resp + "\", algorithm=" +
                       std::string(algorithm_name(alg)) + ", cnonce=\"0a4f113b\", qop=auth, nc=" +
                       std::string(nc);
    std::string hname = method == "REGISTER" ? "Authorization" : "Proxy-Authorization";
    return std::string(method) + " " + uri + " SIP/2.0\r\n" +
           "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\n"
           "To: <sip:alice@example.com>\r\nCall-ID: c1\r\nCSeq: 1 " + std::string(method) + "\r\n" +
           extra + hname + ": " + cred + "\r\nContent-Length: 0\r\n\r\n";
  }

  Verdict verify(const std::string& text, std::string_view realm = {}) {
    Ha1Lookup lookup = [](std::string_view user, std::string_view rlm,
                          Algorithm a) -> std::optional<std::string> {
      if (user != "alice") return std::nullopt;
      return ha1(a, user, rlm, "secret");
    };
    return auth.verify(parse(text), realm, lookup);
  }
};

TEST_CASE("digest: challenge lines") {
  Fixture f;
  auto www = f.auth.challenge(true, {}, false);
  REQUIRE(www.size() == 2);
  CHECK(www[0].starts_with("WWW-Authenticate: Digest realm=\"example.com\", nonce=\""));
  CHECK(www[0].ends_with("\", algorithm=SHA-256, qop=\"auth\""));
  CHECK(www[1].ends_with("\", algorithm=MD5, qop=\"auth\""));
  // One nonce for both algorithms.
  CHECK(www[0].substr(www[0].find("nonce")) .substr(0, 40) == www[1].substr(www[1].find("nonce")).substr(0, 40));
  auto proxy = f.auth.challenge(false, "other.org", true);
  CHECK(proxy[0].starts_with("Proxy-Authenticate: Digest realm=\"other.org\""));
  CHECK(proxy[0].ends_with(", stale=true"));
}

TEST_CASE("digest: good and wrong passwords, algorithms") {
  Fixture f;
  for (Algorithm a : {Algorithm::SHA256, Algorithm::MD5}) {
    CAPTURE(algorithm_name(a));
    Verdict v = f.verify(f.request("REGISTER", f.nonce(), "secret", a));
    CHECK(v.ok());
    CHECK(v.credentials.username == "alice");
    CHECK(v.credentials.algorithm == a);
    v = f.verify(f.request("INVITE", f.nonce(), "secret", a));
    CHECK(v.ok());
    v = f.verify(f.request("REGISTER", f.nonce(), "wrong", a));
    CHECK(v.outcome == Outcome::WrongPassword);
    CHECK_FALSE(v.stale());
  }
  // Not enabled in the settings: refused before any hashing.
  Verdict v = f.verify(f.request("REGISTER", f.nonce(), "secret", Algorithm::SHA512_256));
  CHECK(v.outcome == Outcome::UnsupportedAlgorithm);
  Settings s = f.settings();
  s.algorithms = {Algorithm::SHA512_256};
  f.auth.set_settings(s);
  CHECK(f.verify(f.request("REGISTER", f.nonce(), "secret", Algorithm::SHA512_256)).ok());
  CHECK(f.verify(f.request("REGISTER", f.nonce(), "secret", Algorithm::MD5)).outcome ==
        Outcome::UnsupportedAlgorithm);
}

TEST_CASE("digest: unknown user, missing and malformed credentials") {
  Fixture f;
  CHECK(f.verify(f.request("REGISTER", f.nonce(), "secret", Algorithm::SHA256, "00000001",
                           "example.com", "mallory")).outcome == Outcome::UnknownUser);
  CHECK(f.verify("OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK2\r\n"
                 "Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\n"
                 "Call-ID: c2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
            .outcome == Outcome::NoCredentials);
  // A REGISTER answers with Authorization: Proxy-Authorization does not count for it.
  std::string reg = f.request("INVITE", f.nonce(), "secret");
  reg.replace(reg.find("CSeq: 1 INVITE"), 14, "CSeq: 1 REGISTER");
  reg.replace(0, 6, "REGISTER");
  CHECK(f.verify(reg).outcome == Outcome::NoCredentials);
  std::string no_qop = f.request("REGISTER", f.nonce(), "secret");
  no_qop.replace(no_qop.find(", qop=auth"), 10, "");
  CHECK(f.verify(no_qop).outcome == Outcome::Malformed);
  std::string no_resp = f.request("REGISTER", f.nonce(), "secret");
  no_resp.replace(no_resp.find("response=\""), 10, "respons0=\"");
  CHECK(f.verify(no_resp).outcome == Outcome::Malformed);
  CHECK(f.verify(f.request("REGISTER", f.nonce(), "secret", Algorithm::SHA256, "1")).outcome ==
        Outcome::Malformed);
}

TEST_CASE("digest: wrong realm") {
  Fixture f;
  // Credentials for another realm are not ours: no credentials for this realm.
  std::string other = f.request("REGISTER", f.nonce("other.org"), "secret", Algorithm::SHA256,
                                "00000001", "other.org");
  CHECK(f.verify(other).outcome == Outcome::NoCredentials);
  // A nonce issued for another realm, presented in this realm: not a nonce of ours.
  std::string moved = f.request("REGISTER", f.nonce("other.org"), "secret");
  CHECK(f.verify(moved).outcome == Outcome::BadNonce);
  // Verified in the realm they were made for.
  CHECK(f.verify(other, "other.org").ok());
}

TEST_CASE("digest: replayed nonce-count") {
  Fixture f;
  std::string n = f.nonce();
  std::string first = f.request("REGISTER", n, "secret");
  CHECK(f.verify(first).ok());
  Verdict again = f.verify(first);
  CHECK(again.outcome == Outcome::Replayed);
  CHECK_FALSE(again.stale());
  CHECK(f.verify(f.request("REGISTER", n, "secret", Algorithm::SHA256, "00000002")).ok());
  CHECK(f.verify(f.request("REGISTER", n, "secret", Algorithm::SHA256, "00000002")).outcome ==
        Outcome::Replayed);
  CHECK(f.auth.tracked_nonces() == 1);
}

TEST_CASE("digest: expired nonce is stale only with the right password") {
  Fixture f;
  std::string n = f.nonce();
  f.clock.advance(300'001);
  Verdict v = f.verify(f.request("REGISTER", n, "secret"));
  CHECK(v.outcome == Outcome::Stale);
  CHECK(v.stale());
  CHECK(v.reason == "nonce expired");
  CHECK(f.verify(f.request("REGISTER", n, "wrong")).outcome == Outcome::WrongPassword);
}

TEST_CASE("digest: tampered nonce, other secret, other worker") {
  Fixture f;
  std::string n = f.nonce();
  std::string t = n;
  t[0] = t[0] == 'f' ? 'e' : 'f';  // another timestamp under the same MAC
  CHECK(f.verify(f.request("REGISTER", t, "secret")).outcome == Outcome::BadNonce);
  CHECK(f.verify(f.request("REGISTER", "garbage", "secret")).outcome == Outcome::BadNonce);
  std::string m = n;
  m.back() = m.back() == '0' ? '1' : '0';
  CHECK(f.verify(f.request("REGISTER", m, "secret")).outcome == Outcome::BadNonce);

  // Issued by worker 1, presented to worker 2 (same secret): accepted, since a UA's next
  // transaction may land on any worker (each has its own table here; the app shares one).
  Authenticator other_worker([&] { Settings s = f.settings(); s.worker = 2; return s; }(), f.clock);
  Ha1Lookup lookup = [](std::string_view u, std::string_view r, Algorithm a) -> std::optional<std::string> {
    return ha1(a, u, r, "secret");
  };
  Verdict v = other_worker.verify(f.parse(f.request("REGISTER", n, "secret")), {}, lookup);
  CHECK(v.ok());

  // Another secret (a restart without auth.secret): not ours.
  Authenticator restarted([&] { Settings s = f.settings(); s.secret = "another secret, 32 bytes long.."; return s; }(), f.clock);
  CHECK(restarted.verify(f.parse(f.request("REGISTER", n, "secret")), {}, lookup).outcome == Outcome::BadNonce);
}

TEST_CASE("digest: credentials of several realms, the one for ours is found") {
  Fixture f;
  std::string n = f.nonce();
  std::string other = "Proxy-Authorization: Digest username=\"x\", realm=\"upstream.net\", nonce=\"abc\", "
                      "uri=\"sip:example.com\", response=\"00\", qop=auth, nc=00000001, cnonce=\"c\"\r\n";
  const core::Message& m = f.parse(f.request("INVITE", n, "secret", Algorithm::SHA256, "00000001",
                                             "example.com", "alice", other));
  auto c = find_credentials(m, "example.com");
  REQUIRE(c);
  CHECK(c->username == "alice");
  CHECK(m.headers()[c->header_index].value.find("example.com") != std::string_view::npos);
  CHECK(find_credentials(m, "upstream.net")->username == "x");
  CHECK_FALSE(find_credentials(m, "nowhere.org"));
}

}  // namespace
}  // namespace sb::proxy::digest

namespace sb::proxy::digest {
namespace {

TEST_CASE("digest: workers sharing one nonce-count table refuse a replay on any of them") {
  Fixture f;
  auto shared = std::make_shared<SharedNonceCounts>(64);
  auto worker = [&](uint32_t id) {
    Settings s = f.settings();
    s.worker = id;
    return std::make_unique<Authenticator>(s, f.clock, shared);
  };
  auto w1 = worker(1), w2 = worker(2);
  Ha1Lookup lookup = [](std::string_view u, std::string_view r, Algorithm a) -> std::optional<std::string> {
    return ha1(a, u, r, "secret");
  };
  std::string n = f.nonce();
  std::string first = f.request("REGISTER", n, "secret");
  CHECK(w1->verify(f.parse(first), {}, lookup).ok());
  // The same request replayed to the other worker (a new branch lands anywhere).
  CHECK(w2->verify(f.parse(first), {}, lookup).outcome == Outcome::Replayed);
  CHECK(w2->verify(f.parse(f.request("REGISTER", n, "secret", Algorithm::SHA256, "00000002")), {}, lookup).ok());
  CHECK(w1->verify(f.parse(f.request("REGISTER", n, "secret", Algorithm::SHA256, "00000002")), {}, lookup).outcome ==
        Outcome::Replayed);
  CHECK(shared->size() == 1);
  // A reload keeping the table keeps what it knows.
  w1->set_settings(f.settings(), shared);
  CHECK(w1->verify(f.parse(first), {}, lookup).outcome == Outcome::Replayed);
}

}  // namespace
}  // namespace sb::proxy::digest
