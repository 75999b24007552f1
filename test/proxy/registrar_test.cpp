#include "proxy/registrar.h"

#include <doctest/doctest.h>

#include <deque>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/response.h"
#include "test/support/heap_count.h"

using namespace sb;
using proxy::RegistrarReply;
using Strings = std::vector<std::string>;

namespace {

constexpr std::string_view kAor = "sip:alice@example.com";

proxy::RegistrarSettings registrar_settings() {
  proxy::RegistrarSettings s;
  s.min_expires = 60;
  s.max_expires = 3600;
  s.default_expires = 1800;
  s.max_bindings_per_aor = 3;
  s.max_aors = 100;
  s.domains = {"example.com", "192.0.2.1", "2001:db8::1"};
  return s;
}

location::Settings table_settings() {
  location::Settings s;
  s.sweep_interval_ms = 0;
  return s;
}

struct Register {
  std::string headers;  // extra header lines, each ending in CRLF
  std::string call_id = "reg-1@192.0.2.10";
  uint32_t cseq = 1;
  std::string to = "<sip:alice@example.com>";
  std::string ruri = "sip:example.com";

  std::string text() const {
    std::string cs = std::to_string(cseq);
    return "REGISTER " + ruri + " SIP/2.0\r\n" +
           "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK" +
           std::to_string(std::hash<std::string>{}(call_id)) + "x" + cs + "\r\n" +
           "Max-Forwards: 70\r\n"
           "From: <sip:alice@example.com>;tag=ft1\r\n"
           "To: " + to + "\r\n" +
           "Call-ID: " + call_id + "\r\n" +
           "CSeq: " + cs + " REGISTER\r\n" + headers + "Content-Length: 0\r\n\r\n";
  }
};

struct Fixture {
  core::FakeClock clock;  // wall clock starts at 2023-11-14 22:13:20 GMT
  location::LocationService loc;
  proxy::Registrar registrar{loc, clock, registrar_settings()};
  core::Peer peer;
  std::deque<std::string> texts;  // the messages outlive their views
  core::Message last;

  Fixture() : Fixture(table_settings()) {}
  explicit Fixture(const location::Settings& table) : loc{clock, table, nullptr} {
    peer.protocol = core::Protocol::Udp;
    peer.endpoint = *core::Endpoint::parse("192.0.2.10", 5060);
  }

  RegistrarReply send_text(std::string text) {
    texts.push_back(std::move(text));
    auto st = last.parse(texts.back());
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? "" : core::describe(st.error())));
    return registrar.handle(last, peer);
  }
  RegistrarReply send(const Register& r) { return send_text(r.text()); }
  RegistrarReply send(std::string headers, uint32_t cseq = 1,
                      std::string call_id = "reg-1@192.0.2.10") {
    Register r;
    r.headers = std::move(headers);
    r.cseq = cseq;
    r.call_id = std::move(call_id);
    return send(r);
  }
};

// The values of every "Name: value" line called `name`.
std::vector<std::string> values(const RegistrarReply& r, std::string_view name) {
  std::vector<std::string> out;
  for (const auto& h : r.headers) {
    if (h.size() > name.size() + 1 && h.compare(0, name.size(), name) == 0 &&
        h[name.size()] == ':')
      out.push_back(h.substr(name.size() + 2));
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string rfc4475(const char* name) {
  return read_file(std::string(SB_SHARED_DIR) + "/conformance/rfc4475/" + name + ".dat");
}

// The URI between < and > of a Contact value.
std::string contact_uri(const std::string& v) {
  size_t lt = v.find('<'), gt = v.find('>');
  REQUIRE(lt != std::string::npos);
  REQUIRE(gt != std::string::npos);
  return v.substr(lt + 1, gt - lt - 1);
}

}  // namespace

TEST_CASE("REGISTER: 200 lists every binding with its expires, and a Date") {
  Fixture f;
  auto r = f.send("Contact: <sip:alice@192.0.2.10:5060>;expires=600\r\n"
                  "User-Agent: Phone/1.0\r\n");
  CHECK(r.status == 200);
  CHECK(r.reason == "OK");
  CHECK(!r.not_ours());
  CHECK(values(r, "Contact") == Strings{"<sip:alice@192.0.2.10:5060>;expires=600"});
  CHECK(values(r, "Date") == Strings{"Tue, 14 Nov 2023 22:13:20 GMT"});

  auto bs = f.loc.lookup(kAor);
  REQUIRE(bs.size() == 1);
  CHECK(bs[0].user_agent == "Phone/1.0");
  CHECK(bs[0].source.endpoint.to_string() == "192.0.2.10:5060");
  CHECK(bs[0].call_id == "reg-1@192.0.2.10");
  CHECK(bs[0].cseq == 1);

  // A second phone: both listed, by q; q is shown when not 1.
  f.clock.advance(10'000);
  r = f.send("Contact: \"Desk\" <sip:alice@192.0.2.20>;q=0.5\r\nExpires: 300\r\n", 1, "other");
  CHECK(r.status == 200);
  CHECK(values(r, "Contact") == Strings{"<sip:alice@192.0.2.10:5060>;expires=590",
                                        "<sip:alice@192.0.2.20>;q=0.5;expires=300"});

  // The reply makes a well-formed response.
  auto views = r.header_views();
  std::string resp = core::build_response(f.last, {r.status, r.reason, "totag", views, {}});
  core::Message m;
  REQUIRE(m.parse(resp));
  CHECK(m.status() == 200);
  CHECK(m.count(core::HeaderId::Contact) == 2);
  CHECK(m.to().tag() == "totag");
}

TEST_CASE("REGISTER: refresh, fetch, expiry and removal") {
  Fixture f;
  REQUIRE(f.send("Contact: <sip:alice@192.0.2.10>;expires=600\r\n", 1).status == 200);
  f.clock.advance(100'000);
  // Refresh with a higher CSeq of the same Call-ID.
  auto r = f.send("Contact: <sip:alice@192.0.2.10>;expires=600\r\n", 2);
  CHECK(r.status == 200);
  CHECK(values(r, "Contact") == Strings{"<sip:alice@192.0.2.10>;expires=600"});
  f.clock.advance(50'000);
  // No Contact: a fetch.
  r = f.send("", 3);
  CHECK(r.status == 200);
  CHECK(values(r, "Contact") == Strings{"<sip:alice@192.0.2.10>;expires=550"});
  CHECK(values(r, "Date").size() == 1);

  // expires=0 removes that binding only.
  REQUIRE(f.send("Contact: <sip:alice@192.0.2.11>\r\n", 4).status == 200);
  r = f.send("Contact: <sip:alice@192.0.2.10>;expires=0\r\n", 5);
  CHECK(r.status == 200);
  CHECK(values(r, "Contact") == Strings{"<sip:alice@192.0.2.11>;expires=1800"});

  // Expires: 0 applies to Contacts without their own expires.
  r = f.send("Contact: <sip:alice@192.0.2.11>\r\nExpires: 0\r\n", 6);
  CHECK(r.status == 200);
  CHECK(values(r, "Contact").empty());
  CHECK(f.loc.lookup(kAor).empty());
}

TEST_CASE("REGISTER: a binding expires on the clock") {
  Fixture f;
  REQUIRE(f.send("Contact: <sip:alice@192.0.2.10>;expires=60\r\n").status == 200);
  f.clock.advance(59'000);
  CHECK(values(f.send("", 2), "Contact") ==
        Strings{"<sip:alice@192.0.2.10>;expires=1"});
  f.clock.advance(1'000);
  CHECK(values(f.send("", 3), "Contact").empty());
  CHECK(f.loc.lookup(kAor).empty());
}

TEST_CASE("REGISTER: Contact: * removes every binding, only alone and with Expires: 0") {
  Fixture f;
  REQUIRE(f.send("Contact: <sip:alice@192.0.2.10>, <sip:alice@192.0.2.11>\r\n", 1).status == 200);
  REQUIRE(f.loc.lookup(kAor).size() == 2);

  auto r = f.send("Contact: *\r\n", 2);
  CHECK(r.status == 400);
  CHECK(r.reason.find("Contact") != std::string::npos);
  r = f.send("Contact: *\r\nExpires: 3600\r\n", 2);
  CHECK(r.status == 400);
  r = f.send("Contact: *, <sip:alice@192.0.2.12>\r\nExpires: 0\r\n", 2);
  CHECK(r.status == 400);
  r = f.send("Contact: <sip:alice@192.0.2.12>\r\nContact: *\r\nExpires: 0\r\n", 2);
  CHECK(r.status == 400);
  CHECK(f.loc.lookup(kAor).size() == 2);

  // Same Call-ID, old CSeq: the '*' is out of order too.
  r = f.send("Contact: *\r\nExpires: 0\r\n", 1);
  CHECK(r.status == 500);
  CHECK(f.loc.lookup(kAor).size() == 2);

  r = f.send("Contact: *\r\nExpires: 0\r\n", 2);
  CHECK(r.status == 200);
  CHECK(values(r, "Contact").empty());
  CHECK(f.loc.lookup(kAor).empty());
}

TEST_CASE("REGISTER: expiry intervals: 423, clamp, default, header and param") {
  Fixture f;
  auto r = f.send("Contact: <sip:alice@192.0.2.10>;expires=30\r\n");
  CHECK(r.status == 423);
  CHECK(values(r, "Min-Expires") == Strings{"60"});
  CHECK(f.loc.lookup(kAor).empty());
  r = f.send("Contact: <sip:alice@192.0.2.10>\r\nExpires: 59\r\n");
  CHECK(r.status == 423);
  // One short Contact refuses the whole request.
  r = f.send("Contact: <sip:alice@192.0.2.10>, <sip:alice@192.0.2.11>;expires=1\r\n");
  CHECK(r.status == 423);
  CHECK(f.loc.lookup(kAor).empty());

  r = f.send("Contact: <sip:alice@192.0.2.10>;expires=100000\r\n", 2);
  CHECK(values(r, "Contact") == Strings{"<sip:alice@192.0.2.10>;expires=3600"});
  r = f.send("Contact: <sip:alice@192.0.2.10>\r\n", 3);
  CHECK(values(r, "Contact") == Strings{"<sip:alice@192.0.2.10>;expires=1800"});
  r = f.send("Contact: <sip:alice@192.0.2.10>\r\nExpires: 120\r\n", 4);
  CHECK(values(r, "Contact") == Strings{"<sip:alice@192.0.2.10>;expires=120"});
  r = f.send("Contact: <sip:alice@192.0.2.10>;expires=90\r\nExpires: 120\r\n", 5);
  CHECK(values(r, "Contact") == Strings{"<sip:alice@192.0.2.10>;expires=90"});
}

TEST_CASE("REGISTER: 423 only below one hour (RFC 3261 10.3 step 7)") {
  core::FakeClock clock;
  location::LocationService loc(clock, table_settings(), nullptr);
  auto s = registrar_settings();
  s.min_expires = 7200;
  s.max_expires = 86400;
  proxy::Registrar registrar(loc, clock, s);
  Register reg;
  reg.headers = "Contact: <sip:alice@192.0.2.10>;expires=3600\r\n";
  std::string text = reg.text();
  core::Message m;
  REQUIRE(m.parse(text));
  auto r = registrar.handle(m, core::Peer{});
  CHECK(r.status == 200);
  CHECK(values(r, "Contact") == Strings{"<sip:alice@192.0.2.10>;expires=3600"});
}

TEST_CASE("REGISTER: out-of-order CSeq is refused with 500 and changes nothing") {
  Fixture f;
  REQUIRE(f.send("Contact: <sip:alice@192.0.2.10>;expires=600\r\n", 10).status == 200);
  f.clock.advance(5'000);
  const auto before = f.loc.lookup(kAor);
  for (uint32_t cseq : {10u, 9u}) {
    auto r = f.send("Contact: <sip:alice@192.0.2.11>, <sip:alice@192.0.2.10>;expires=60\r\n",
                    cseq);
    CHECK(r.status == 500);
    CHECK(r.reason.find("CSeq") != std::string::npos);
    CHECK(values(r, "Contact").empty());
  }
  const auto after = f.loc.lookup(kAor);
  REQUIRE(after.size() == 1);
  CHECK(after[0].expires_at == before[0].expires_at);
  CHECK(after[0].cseq == 10);
  // Another Call-ID may replace it, whatever its CSeq.
  auto r = f.send("Contact: <sip:alice@192.0.2.10>;expires=60\r\n", 1, "new-call");
  CHECK(r.status == 200);
  CHECK(values(r, "Contact") == Strings{"<sip:alice@192.0.2.10>;expires=60"});
}

TEST_CASE("REGISTER: Path is stored, and echoed when the UA supports path (RFC 3327)") {
  Fixture f;
  auto r = f.send("Path: <sip:p2.example.net;lr>\r\nPath: <sip:p1.example.net;lr>\r\n"
                  "Supported: path\r\nContact: <sip:alice@192.0.2.10>\r\n");
  CHECK(r.status == 200);
  CHECK(values(r, "Path") ==
        Strings{"<sip:p2.example.net;lr>, <sip:p1.example.net;lr>"});
  auto bs = f.loc.lookup(kAor);
  REQUIRE(bs.size() == 1);
  CHECK(bs[0].path == Strings{"<sip:p2.example.net;lr>", "<sip:p1.example.net;lr>"});

  // Without Supported: path the Path is kept but not echoed.
  r = f.send("Path: <sip:p1.example.net;lr>\r\nContact: <sip:alice@192.0.2.10>\r\n", 2);
  CHECK(r.status == 200);
  CHECK(values(r, "Path").empty());
  CHECK(f.loc.lookup(kAor)[0].path == Strings{"<sip:p1.example.net;lr>"});
}

TEST_CASE("REGISTER: outbound flows (RFC 5626)") {
  Fixture f;
  const std::string inst = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"";
  auto r = f.send("Supported: outbound, path\r\n"
                  "Contact: <sip:alice@192.0.2.10:5060;transport=tcp;ob>;reg-id=1;" + inst +
                  "\r\n");
  CHECK(r.status == 200);
  CHECK(values(r, "Require") == Strings{"outbound"});
  CHECK(values(r, "Contact") ==
        Strings{"<sip:alice@192.0.2.10:5060;transport=tcp;ob>;" + inst +
                                 ";reg-id=1;expires=1800"});

  // The same flow from another address and Call-ID replaces the binding.
  r = f.send("Supported: outbound\r\n"
             "Contact: <sip:alice@198.51.100.4:41000;transport=tcp;ob>;reg-id=1;" + inst + "\r\n",
             1, "after-reboot");
  CHECK(r.status == 200);
  CHECK(values(r, "Contact") ==
        Strings{"<sip:alice@198.51.100.4:41000;transport=tcp;ob>;" + inst +
                                 ";reg-id=1;expires=1800"});
  // A second flow of the same instance is another binding.
  r = f.send("Supported: outbound\r\n"
             "Contact: <sip:alice@198.51.100.4:41001;transport=tcp;ob>;reg-id=2;" + inst + "\r\n",
             2, "after-reboot");
  CHECK(values(r, "Contact").size() == 2);

  // Without Supported: outbound no Require in the answer.
  r = f.send("Contact: <sip:alice@198.51.100.4:41001;transport=tcp;ob>;reg-id=2;" + inst + "\r\n",
             3, "after-reboot");
  CHECK(r.status == 200);
  CHECK(values(r, "Require").empty());

  // Through an edge proxy: its Path must say it supports outbound.
  r = f.send("Supported: outbound, path\r\nPath: <sip:edge.example.net;lr>\r\n"
             "Contact: <sip:alice@198.51.100.4:41001;transport=tcp;ob>;reg-id=2;" + inst + "\r\n",
             4, "after-reboot");
  CHECK(r.status == 439);
  r = f.send("Supported: outbound, path\r\nPath: <sip:edge.example.net;lr;ob>\r\n"
             "Contact: <sip:alice@198.51.100.4:41001;transport=tcp;ob>;reg-id=2;" + inst + "\r\n",
             5, "after-reboot");
  CHECK(r.status == 200);
  CHECK(values(r, "Require") == Strings{"outbound"});

  // The same flow twice in one request.
  r = f.send("Contact: <sip:alice@192.0.2.10;ob>;reg-id=3;" + inst +
                 ", <sip:alice@192.0.2.11;ob>;reg-id=3;" + inst + "\r\n",
             6, "after-reboot");
  CHECK(r.status == 400);
  // reg-id out of range.
  r = f.send("Contact: <sip:alice@192.0.2.10;ob>;reg-id=0;" + inst + "\r\n", 7, "after-reboot");
  CHECK(r.status == 400);
}

TEST_CASE("REGISTER: Require with an unknown extension gets 420 and Unsupported") {
  Fixture f;
  auto r = f.send("Require: path, foo\r\nRequire: bar\r\nContact: <sip:alice@192.0.2.10>\r\n");
  CHECK(r.status == 420);
  CHECK(values(r, "Unsupported") == Strings{"foo, bar"});
  CHECK(f.loc.lookup(kAor).empty());
  r = f.send("Require: path, outbound\r\nContact: <sip:alice@192.0.2.10>\r\n");
  CHECK(r.status == 200);
}

TEST_CASE("REGISTER: domains (RFC 3261 10.3 steps 1 and 5)") {
  Fixture f;
  Register reg;
  reg.ruri = "sip:elsewhere.org";
  reg.headers = "Contact: <sip:alice@192.0.2.10>\r\n";
  auto r = f.send(reg);
  CHECK(r.not_ours());
  CHECK(r.status == 403);
  CHECK(r.reason == "domain not served here");
  CHECK(f.loc.aor_count() == 0);

  // Domains compare without case; IP literals work, IPv6 without brackets.
  reg.ruri = "sip:EXAMPLE.COM";
  CHECK(f.send(reg).status == 200);
  reg.ruri = "sip:[2001:db8::1]:5060";
  reg.cseq = 2;
  CHECK(f.send(reg).status == 200);
  reg.ruri = "sip:192.0.2.1";
  reg.cseq = 3;
  CHECK(f.send(reg).status == 200);

  // Our Request-URI, but an AOR of another domain: 404.
  reg.to = "<sip:alice@elsewhere.org>";
  reg.cseq = 4;
  r = f.send(reg);
  CHECK(r.status == 404);
  CHECK(!r.not_ours());
}

TEST_CASE("REGISTER: the AOR is canonical") {
  Fixture f;
  Register reg;
  reg.to = "\"Alice\" <sip:%61lice@EXAMPLE.com:5060;user=phone>;tag=x";
  reg.headers = "Contact: <sip:alice@192.0.2.10>\r\n";
  REQUIRE(f.send(reg).status == 200);
  CHECK(f.loc.lookup(kAor).size() == 1);
}

TEST_CASE("REGISTER: bad To and bad Contact get 400 naming them") {
  Fixture f;
  Register reg;
  reg.to = "<tel:+15551234567>";
  reg.headers = "Contact: <sip:alice@192.0.2.10>\r\n";
  auto r = f.send(reg);
  CHECK(r.status == 400);
  CHECK(r.reason.find("To") != std::string::npos);

  r = f.send("Contact: <sip:alice@192.0.2.10\r\n");
  CHECK(r.status == 400);
  CHECK(r.reason.rfind("bad Contact: ", 0) == 0);
  r = f.send("Contact: <sip:alice@192.0.2.10>;q=2\r\n");
  CHECK(r.status == 400);
  CHECK(r.reason.rfind("bad Contact: ", 0) == 0);
  r = f.send("Contact: <sip:alice@192.0.2.10>,,<sip:alice@192.0.2.11>\r\n");
  CHECK(r.status == 400);
  CHECK(f.loc.lookup(kAor).empty());
  // A malformed expires param reads as absent (core::parse_contact, RFC 4475 3.1.2.4):
  // the default applies and the param is not echoed.
  r = f.send("Contact: <sip:alice@192.0.2.10>;expires=soon\r\n");
  CHECK(r.status == 200);
  CHECK(values(r, "Contact") == Strings{"<sip:alice@192.0.2.10>;expires=1800"});
}

TEST_CASE("REGISTER: limits give clear errors") {
  Fixture f;  // 3 bindings per AOR
  REQUIRE(f.send("Contact: <sip:alice@192.0.2.10>, <sip:alice@192.0.2.11>, "
                 "<sip:alice@192.0.2.12>\r\n")
              .status == 200);
  auto r = f.send("Contact: <sip:alice@192.0.2.13>\r\n", 2);
  CHECK(r.status == 403);
  CHECK(r.reason.find("too many bindings") != std::string::npos);
  CHECK(f.loc.lookup(kAor).size() == 3);

  core::FakeClock clock;
  location::LocationService loc(clock, table_settings(), nullptr);
  auto s = registrar_settings();
  s.max_aors = 1;
  proxy::Registrar registrar(loc, clock, s);
  Register a, b;
  a.headers = b.headers = "Contact: <sip:x@192.0.2.10>\r\n";
  b.to = "<sip:bob@example.com>";
  std::string ta = a.text(), tb = b.text();
  core::Message ma, mb;
  REQUIRE(ma.parse(ta));
  REQUIRE(mb.parse(tb));
  CHECK(registrar.handle(ma, core::Peer{}).status == 200);
  r = registrar.handle(mb, core::Peer{});
  CHECK(r.status == 503);
  CHECK(values(r, "Retry-After") == Strings{"300"});
}

TEST_CASE("REGISTER: the authorizer hook sees the canonical AOR and may stop the request") {
  Fixture f;
  std::string seen;
  f.registrar.set_authorizer(
      [&](const core::Message&, std::string_view aor) -> std::optional<RegistrarReply> {
        seen = aor;
        RegistrarReply r;
        r.status = 401;
        r.reason = "Unauthorized";
        r.headers.push_back("WWW-Authenticate: Digest realm=\"example.com\", nonce=\"n\"");
        return r;
      });
  auto r = f.send("Contact: <sip:alice@192.0.2.10>\r\n");
  CHECK(r.status == 401);
  CHECK(seen == kAor);
  CHECK(f.loc.lookup(kAor).empty());
}

TEST_CASE("RFC 4475 registrar cases") {
  Fixture f;
  SUBCASE("cparam01: unknownparam is a contact-param, not in the URI") {
    auto r = f.send_text(rfc4475("cparam01"));
    CHECK(r.status == 200);
    auto cs = values(r, "Contact");
    REQUIRE(cs.size() == 1);
    CHECK(contact_uri(cs[0]) == "sip:+19725552222@gw1.example.net");
    CHECK(cs[0] == "<sip:+19725552222@gw1.example.net>;unknownparam;expires=1800");
  }
  SUBCASE("cparam02: unknownparam stays inside the URI") {
    auto r = f.send_text(rfc4475("cparam02"));
    CHECK(r.status == 200);
    auto cs = values(r, "Contact");
    REQUIRE(cs.size() == 1);
    CHECK(contact_uri(cs[0]) == "sip:+19725552222@gw1.example.net;unknownparam");
  }
  SUBCASE("regescrt: the escaped Route header stays in the contact URI") {
    auto r = f.send_text(rfc4475("regescrt"));
    CHECK(r.status == 200);
    auto cs = values(r, "Contact");
    REQUIRE(cs.size() == 1);
    CHECK(contact_uri(cs[0]) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E");
  }
  SUBCASE("regbadct: a name-addr URI with '?' outside <> is a bad Contact") {
    auto r = f.send_text(rfc4475("regbadct"));
    CHECK(r.status == 400);
    CHECK(r.reason.rfind("bad Contact", 0) == 0);
    CHECK(f.loc.aor_count() == 0);
  }
  SUBCASE("unksm2: To must be a SIP or SIPS URI") {
    auto r = f.send_text(rfc4475("unksm2"));
    CHECK(r.status == 400);
    CHECK(r.reason.find("To") != std::string::npos);
  }
  SUBCASE("regaut01: an unknown Authorization scheme is ignored without auth") {
    auto r = f.send_text(rfc4475("regaut01"));
    CHECK(r.status == 200);
  }
}

TEST_CASE("registrar answers only REGISTER") {
  Fixture f;
  std::string text =
      "OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n"
      "From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\n"
      "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
  auto r = f.send_text(text);
  CHECK(r.status == 405);
  CHECK(values(r, "Allow") == Strings{"REGISTER"});
}

TEST_CASE("rfc1123 date, appended after what the string holds") {
  std::string epoch;
  proxy::append_rfc1123_date(epoch, 0);
  CHECK(epoch == "Thu, 01 Jan 1970 00:00:00 GMT");
  std::string line = "Date: ";
  proxy::append_rfc1123_date(line, 1'700'000'000'000);
  CHECK(line == "Date: Tue, 14 Nov 2023 22:13:20 GMT");
  proxy::append_rfc1123_date(line, 1'700'000'000'999);  // the same second, from the cache
  CHECK(line == "Date: Tue, 14 Nov 2023 22:13:20 GMTTue, 14 Nov 2023 22:13:20 GMT");
}

// The design's "no per-message heap churn": the registrar's temporaries (the parsed Contacts,
// the changes, the location service's work lists, the Date text) live on the stack. What a
// REGISTER still allocates is what it keeps (the binding, a new AOR) or hands back (the
// bindings and the header lines of the 200).
TEST_CASE("REGISTER: heap allocations are only what the table keeps and the 200 returns") {
  // One shard, so the AOR warmed up below gives alice's shard its table (16 slots, grown at
  // the 13th AOR); this thread's Date is cached by it too.
  location::Settings table = table_settings();
  table.shards = 1;
  Fixture f(table);
  Register warm;
  warm.to = "<sip:warm@example.com>";
  warm.call_id = "warm-1@192.0.2.10";
  warm.headers = "Contact: <sip:warm@192.0.2.10:5060>\r\n";
  REQUIRE(f.send(warm).status == 200);
  Register first;
  first.headers = "Contact: <sip:alice@192.0.2.10:5060>;expires=600\r\n";
  Register refresh = first;
  refresh.cseq = 2;
  f.texts.push_back(first.text());
  f.texts.push_back(refresh.text());
  REQUIRE(f.last.parse(f.texts[f.texts.size() - 2]).ok());

  uint64_t fresh_allocs = 0;
  {
    test::HeapCount n;
    RegistrarReply r = f.registrar.handle(f.last, f.peer);
    fresh_allocs = n.count();
    CHECK(r.status == 200);
  }
  // The canonical AOR; the Record and the AOR entry the table keeps; the outcome's vector
  // and its Binding's contact and Call-ID; the 200's header vector, Contact line and Date line.
  CHECK(fresh_allocs == 9);

  REQUIRE(f.last.parse(f.texts.back()).ok());
  test::HeapCount n;
  RegistrarReply r = f.registrar.handle(f.last, f.peer);
  CHECK(r.status == 200);
  // A refresh: the same, less the AOR entry (it exists).
  CHECK(n.count() == 8);
}
