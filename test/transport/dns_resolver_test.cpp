// RFC 3263 §4 over a fake DNS: numeric hosts, explicit port and transport, NAPTR filtering
// and order, SRV per transport, A/AAAA with the family preference, maddr, sips without
// TLS, NXDOMAIN; RFC 2782 SRV order with an injected random source; the greylist; and the
// cache in front (a thousand resolutions of a new domain: one query per record type).
#include "transport/dns_resolver.h"

#include <doctest/doctest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/clock.h"
#include "transport/dns_cache.h"
#include "transport/tls.h"
#include "test/transport/dns_test_util.h"

using namespace sb;
using namespace sb::transport;
using namespace sb::transport::dns;
using namespace sb::transport::dns::test;

namespace {

// Random that always returns the same fraction of its bound.
Random fixed(double fraction) {
  return [fraction](uint32_t bound) { return std::min<uint32_t>(uint32_t(fraction * bound), bound - 1); };
}

std::string show(const ServerList& l) {
  if (l.servers.empty()) return "error: " + l.error;
  std::string out;
  for (const auto& p : l.servers) {
    if (!out.empty()) out += ", ";
    out += std::string(core::protocol_name(p.protocol)) + " " + p.endpoint.to_string();
  }
  return out;
}

struct Fixture {
  core::FakeClock clock;
  FakeDns dns;
  DnsSettings settings;
  std::unique_ptr<DnsResolver> resolver;

  Fixture() {
    settings.greylist_s = 30;
    dns.immediate = true;
  }
  DnsResolver& r() {
    if (!resolver) resolver = std::make_unique<DnsResolver>(dns, clock, settings, fixed(0));
    return *resolver;
  }
  void zone(std::string_view name, Type t, std::vector<Rr> rrs, int rcode = 0) {
    dns.zone[std::string(type_name(t)) + " " + std::string(name)] = answer_of(name, t, rcode, rrs);
  }
  // Resolve and return the list (the fake answers inside resolve()).
  ServerList resolve(std::string_view text) {
    auto uri = core::parse_uri(text);
    REQUIRE(uri.ok());
    ServerList out;
    int calls = 0;
    r().resolve(*uri, [&](ServerList l) {
      ++calls;
      out = std::move(l);
    });
    dns.answer_all();
    REQUIRE(calls == 1);
    return out;
  }
  // The usual zone: NAPTR prefers TCP, SRV for both transports, two hosts.
  void example() {
    zone("example.com", Type::Naptr,
         {naptr_rr("example.com", 50, 50, "s", "SIP+D2U", "_sip._udp.example.com"),
          naptr_rr("example.com", 10, 50, "S", "SIP+D2T", "_sip._tcp.example.com"),
          naptr_rr("example.com", 5, 50, "s", "SIPS+D2T", "_sips._tcp.example.com"),
          naptr_rr("example.com", 1, 50, "s", "SIP+D2S", "_sip._sctp.example.com")});
    zone("_sip._tcp.example.com", Type::Srv,
         {srv_rr("_sip._tcp.example.com", 20, 0, 5080, "b.example.com"),
          srv_rr("_sip._tcp.example.com", 10, 0, 5070, "a.example.com")});
    zone("_sip._udp.example.com", Type::Srv, {srv_rr("_sip._udp.example.com", 10, 0, 5090, "a.example.com")});
    zone("a.example.com", Type::A, {a_rr("a.example.com", "192.0.2.1"), a_rr("a.example.com", "192.0.2.11")});
    zone("a.example.com", Type::Aaaa, {a_rr("a.example.com", "2001:db8::1")});
    zone("b.example.com", Type::A, {a_rr("b.example.com", "192.0.2.2")});
    zone("b.example.com", Type::Aaaa, {});
  }
};

}  // namespace

TEST_CASE("rfc3263: an IP literal is used as it is, with no query") {
  Fixture f;
  CHECK(show(f.resolve("sip:alice@192.0.2.9")) == "UDP 192.0.2.9:5060");
  CHECK(show(f.resolve("sip:alice@[2001:db8::9]:5070;transport=tcp")) == "TCP [2001:db8::9]:5070");
  CHECK(show(f.resolve("sip:alice@example.com;maddr=192.0.2.7")) == "UDP 192.0.2.7:5060");
  CHECK(show(f.resolve("sip:alice@localhost:5070")) == "UDP 127.0.0.1:5070");
  CHECK(f.dns.asked.empty());
  CHECK(show(f.resolve("sip:alice@example.com;transport=carrier-pigeon")) == "error: unknown transport carrier-pigeon");
}

TEST_CASE("rfc3263: NAPTR → SRV → A/AAAA, the NAPTR's transport, SRV priority order") {
  Fixture f;
  f.example();
  ServerList l = f.resolve("sip:bob@Example.COM");
  // SIPS+D2T (no TLS) and SIP+D2S (no SCTP) are skipped; SIP+D2T (order 10) wins.
  CHECK(show(l) == "TCP 192.0.2.1:5070, TCP 192.0.2.11:5070, TCP [2001:db8::1]:5070, TCP 192.0.2.2:5080");
  CHECK(f.dns.asked == std::vector<std::string>{"NAPTR example.com", "SRV _sip._tcp.example.com", "A a.example.com",
                                                "AAAA a.example.com", "A b.example.com", "AAAA b.example.com"});
}

TEST_CASE("rfc3263: the next NAPTR when the first one's SRV has nothing") {
  Fixture f;
  f.example();
  f.zone("_sip._tcp.example.com", Type::Srv, {});
  CHECK(show(f.resolve("sip:bob@example.com")) == "UDP 192.0.2.1:5090, UDP 192.0.2.11:5090, UDP [2001:db8::1]:5090");
}

TEST_CASE("rfc3263: NAPTR with only the transports we have") {
  Fixture f;
  f.settings.transports = {core::Protocol::Udp};
  f.example();
  CHECK(show(f.resolve("sip:bob@example.com")) == "UDP 192.0.2.1:5090, UDP 192.0.2.11:5090, UDP [2001:db8::1]:5090");
  CHECK(f.dns.count("SRV _sip._tcp.example.com") == 0);
}

TEST_CASE("rfc3263: usable NAPTR records") {
  std::vector<Naptr> in = {
      {30, 10, "s", "SIP+D2U", "", "_sip._udp.x"},
      {10, 20, "s", "SIP+D2T", "", "_sip._tcp.x"},
      {10, 10, "S", "sips+d2t", "", "_sips._tcp.x"},
      {1, 1, "u", "SIP+D2U", "!^.*$!sip:a@b!", ""},  // not an SRV pointer
      {1, 1, "s", "SIP+D2S", "", "_sip._sctp.x"},    // SCTP
      {1, 1, "s", "E2U+sip", "", "_sip._udp.x"},     // ENUM, not ours
      {1, 1, "s", "SIP+D2W", "", "_sip._ws.x"},      // WebSocket: no listener here
      {1, 1, "s", "SIP+D2T", "", "."},               // no replacement
  };
  const std::vector<core::Protocol> udp_tcp = {core::Protocol::Udp, core::Protocol::Tcp};
  std::vector<Naptr> sip = usable_naptr(in, false, udp_tcp);
  REQUIRE(sip.size() == 2);
  CHECK(sip[0].replacement == "_sip._tcp.x");
  CHECK(sip[1].replacement == "_sip._udp.x");

  std::vector<Naptr> with_tls = usable_naptr(in, false, {core::Protocol::Udp, core::Protocol::Tcp, core::Protocol::Tls});
  REQUIRE(with_tls.size() == 3);
  CHECK(with_tls[0].replacement == "_sips._tcp.x");  // order 10, preference 10

  CHECK(usable_naptr(in, true, udp_tcp).empty());  // a sips URI takes SIPS+ only
  REQUIRE(usable_naptr(in, true, {core::Protocol::Tls}).size() == 1);

  bool secure = false;
  CHECK(naptr_transport("SIP+D2U", secure) == core::Protocol::Udp);
  CHECK(naptr_transport("SIPS+D2U", secure) == std::nullopt);
  CHECK(naptr_transport("SIPS+D2W", secure) == core::Protocol::Wss);
  CHECK(secure);
  CHECK(naptr_transport("SIP", secure) == std::nullopt);
}

TEST_CASE("rfc3263: no NAPTR → SRV for each transport (UDP first), then A/AAAA") {
  Fixture f;
  f.example();
  f.dns.zone.erase("NAPTR example.com");
  f.zone("example.com", Type::Naptr, {});  // no data
  CHECK(show(f.resolve("sip:bob@example.com")) ==
        "UDP 192.0.2.1:5090, UDP 192.0.2.11:5090, UDP [2001:db8::1]:5090, TCP 192.0.2.1:5070, TCP 192.0.2.11:5070, "
        "TCP [2001:db8::1]:5070, TCP 192.0.2.2:5080");

  Fixture g;
  g.zone("plain.example.com", Type::Naptr, {});
  g.zone("plain.example.com", Type::A, {a_rr("plain.example.com", "192.0.2.50")});
  g.zone("plain.example.com", Type::Aaaa, {a_rr("plain.example.com", "2001:db8::50")});
  CHECK(show(g.resolve("sip:bob@plain.example.com")) == "UDP 192.0.2.50:5060, UDP [2001:db8::50]:5060");
  CHECK(g.dns.count("SRV _sip._udp.plain.example.com") == 1);
  CHECK(g.dns.count("SRV _sip._tcp.plain.example.com") == 1);
}

TEST_CASE("rfc3263: IPv6 first when preferred; AAAA only with an IPv6 listener") {
  Fixture f;
  f.settings.prefer_ipv6 = true;
  f.zone("plain.example.com", Type::Naptr, {});
  f.zone("plain.example.com", Type::A, {a_rr("plain.example.com", "192.0.2.50")});
  f.zone("plain.example.com", Type::Aaaa, {a_rr("plain.example.com", "2001:db8::50")});
  CHECK(show(f.resolve("sip:bob@plain.example.com")) == "UDP [2001:db8::50]:5060, UDP 192.0.2.50:5060");

  Fixture g;
  g.settings.ipv6 = false;
  g.zone("plain.example.com", Type::Naptr, {});
  g.zone("plain.example.com", Type::A, {a_rr("plain.example.com", "192.0.2.50")});
  CHECK(show(g.resolve("sip:bob@plain.example.com")) == "UDP 192.0.2.50:5060");
  CHECK(g.dns.count("AAAA plain.example.com") == 0);
}

TEST_CASE("rfc3263: an explicit port → A/AAAA only; an explicit transport → its SRV, then A/AAAA") {
  Fixture f;
  f.example();
  CHECK(show(f.resolve("sip:bob@a.example.com:5099")) == "UDP 192.0.2.1:5099, UDP 192.0.2.11:5099, UDP [2001:db8::1]:5099");
  CHECK(show(f.resolve("sip:bob@b.example.com:5099;transport=TCP")) == "TCP 192.0.2.2:5099");
  CHECK(f.dns.count("NAPTR a.example.com") == 0);
  CHECK(f.dns.count("SRV _sip._udp.a.example.com") == 0);

  CHECK(show(f.resolve("sip:bob@example.com;transport=tcp")) ==
        "TCP 192.0.2.1:5070, TCP 192.0.2.11:5070, TCP [2001:db8::1]:5070, TCP 192.0.2.2:5080");
  CHECK(f.dns.count("NAPTR example.com") == 0);
  // No SRV for that transport: the host's addresses on the default port.
  CHECK(show(f.resolve("sip:bob@b.example.com;transport=tcp")) == "TCP 192.0.2.2:5060");
  CHECK(f.dns.count("SRV _sip._tcp.b.example.com") == 1);
}

TEST_CASE("rfc3263: maddr replaces the host") {
  Fixture f;
  f.example();
  CHECK(show(f.resolve("sip:bob@elsewhere.example.org;maddr=b.example.com;transport=tcp")) == "TCP 192.0.2.2:5060");
  CHECK(f.dns.count("SRV _sip._tcp.b.example.com") == 1);
}

TEST_CASE("rfc3263: sips and transport=tls fail with a clear reason without a TLS listener") {
  Fixture f;
  f.example();
  ServerList l = f.resolve("sips:bob@example.com");
  CHECK(l.servers.empty());
  CHECK(l.error == "TLS target example.com: no TLS listener (config listen, transport \"tls\")");
  CHECK(f.resolve("sip:bob@example.com;transport=tls").error ==
        "TLS target example.com: no TLS listener (config listen, transport \"tls\")");
  CHECK(f.dns.asked.empty());
  CHECK(f.resolve("sips:bob@example.com;transport=udp").error == "sips URI with a non-TLS transport");

  // With TLS: SIPS+D2T only.
  Fixture g;
  g.settings.transports = {core::Protocol::Udp, core::Protocol::Tcp, core::Protocol::Tls};
  g.example();
  g.zone("_sips._tcp.example.com", Type::Srv, {srv_rr("_sips._tcp.example.com", 1, 0, 5061, "b.example.com")});
  CHECK(show(g.resolve("sips:bob@example.com")) == "TLS 192.0.2.2:5061");
  // RFC 5922 §4: the connection to it will check the certificate for example.com.
  CHECK(tls_peer_name(*core::Endpoint::parse("192.0.2.2", 5061)) == "example.com");
  CHECK(tls_peer_name(*core::Endpoint::parse("192.0.2.9", 5061)) == "192.0.2.9");
}

TEST_CASE("rfc3263: NXDOMAIN ends the lookup; other failures say what failed") {
  Fixture f;
  f.zone("nope.example.com", Type::Naptr, {}, 3);
  ServerList l = f.resolve("sip:bob@nope.example.com");
  CHECK(l.servers.empty());
  CHECK(l.no_such_name);
  CHECK(l.error == "nope.example.com: no such domain (NXDOMAIN)");
  CHECK(f.dns.asked == std::vector<std::string>{"NAPTR nope.example.com"});

  // With a port: the A/AAAA queries say it.
  ServerList p = f.resolve("sip:bob@nope.example.com:5060");
  CHECK(p.no_such_name);
  CHECK(p.error == "nope.example.com: no such domain (NXDOMAIN)");

  // The host exists but has no address.
  f.zone("empty.example.com", Type::Naptr, {});
  f.zone("empty.example.com", Type::A, {});
  f.zone("empty.example.com", Type::Aaaa, {});
  f.zone("_sip._udp.empty.example.com", Type::Srv, {});
  f.zone("_sip._tcp.empty.example.com", Type::Srv, {});
  ServerList e = f.resolve("sip:bob@empty.example.com");
  CHECK_FALSE(e.no_such_name);
  CHECK(e.error == "empty.example.com: no A/AAAA records");

  // A server failure.
  Answer fail;
  fail.status = Status::Failed;
  fail.error = "timeout";
  f.dns.zone["A down.example.com"] = fail;
  f.dns.zone["AAAA down.example.com"] = fail;
  ServerList d = f.resolve("sip:bob@down.example.com:5060");
  CHECK(d.error == "address lookup of down.example.com failed: timeout");
  CHECK_FALSE(d.no_such_name);

  // No answer at all to the NAPTR query: no SRV / A queries that would time out as well.
  Answer silent;
  silent.status = Status::Failed;
  silent.timed_out = true;
  silent.error = "timeout";
  f.dns.zone["NAPTR silent.example.com"] = silent;
  size_t asked = f.dns.asked.size();
  CHECK(f.resolve("sip:bob@silent.example.com").error == "DNS lookup of silent.example.com failed: timeout");
  CHECK(f.dns.asked.size() == asked + 1);
  // A server that does not do NAPTR (SERVFAIL): on to SRV.
  Answer notimp;
  notimp.status = Status::Failed;
  notimp.error = "the DNS server answered NOTIMP (rcode 4)";
  f.dns.zone["NAPTR old.example.com"] = notimp;
  f.zone("_sip._udp.old.example.com", Type::Srv, {srv_rr("_sip._udp.old.example.com", 1, 1, 5070, "old.example.com")});
  f.zone("_sip._tcp.old.example.com", Type::Srv, {});
  f.zone("old.example.com", Type::A, {a_rr("old.example.com", "192.0.2.70")});
  f.zone("old.example.com", Type::Aaaa, {});
  CHECK(show(f.resolve("sip:bob@old.example.com")) == "UDP 192.0.2.70:5070");

  // SRV target "." : the service is not offered.
  f.zone("closed.example.com", Type::Naptr, {});
  f.zone("_sip._udp.closed.example.com", Type::Srv, {srv_rr("_sip._udp.closed.example.com", 0, 0, 0, ".")});
  f.zone("_sip._tcp.closed.example.com", Type::Srv, {});
  CHECK(f.resolve("sip:bob@closed.example.com").error ==
        "the SRV records of closed.example.com say the service is not available");
}

TEST_CASE("rfc2782: priority first, then weighted random order") {
  std::vector<Srv> in = {{20, 1, 1, "p20"}, {10, 3, 2, "w3"}, {10, 1, 3, "w1"}, {10, 0, 4, "w0"}, {5, 0, 5, "p5"}};
  auto names = [](const std::vector<Srv>& v) {
    std::string s;
    for (const auto& r : v) s += r.target + " ";
    return s;
  };
  // Weights 3 and 1 (sum 4): r in [0,3) picks w3, r = 3 picks w1; weight 0 last.
  CHECK(names(order_srv(in, fixed(0))) == "p5 w3 w1 w0 p20 ");
  CHECK(names(order_srv(in, fixed(0.74))) == "p5 w3 w1 w0 p20 ");
  CHECK(names(order_srv(in, fixed(0.75))) == "p5 w1 w3 w0 p20 ");

  // The split over many picks follows the weights (seeded: deterministic).
  std::mt19937 rng(12345);
  Random random = [&rng](uint32_t bound) { return std::uniform_int_distribution<uint32_t>(0, bound - 1)(rng); };
  int first_w3 = 0;
  const int n = 10000;
  for (int i = 0; i < n; ++i)
    if (order_srv(in, random)[1].target == "w3") ++first_w3;
  // p = 0.75, sd = sqrt(n p (1-p)) ≈ 43: within 5 sd.
  CHECK(first_w3 > 7500 - 217);
  CHECK(first_w3 < 7500 + 217);

  // All weights 0: every order is possible.
  std::vector<Srv> zeros = {{1, 0, 1, "a"}, {1, 0, 2, "b"}};
  CHECK(names(order_srv(zeros, fixed(0))) == "a b ");
  CHECK(names(order_srv(zeros, fixed(0.9))) == "b a ");
}

TEST_CASE("greylist: a server that timed out or refused is left out for greylist_s") {
  Fixture f;
  f.example();
  auto servers = [&] { return show(f.resolve("sip:bob@example.com;transport=tcp")); };
  const std::string all = "TCP 192.0.2.1:5070, TCP 192.0.2.11:5070, TCP [2001:db8::1]:5070, TCP 192.0.2.2:5080";
  REQUIRE(servers() == all);
  core::Peer first;
  first.protocol = core::Protocol::Tcp;
  first.endpoint = *core::Endpoint::parse("192.0.2.1", 5070);
  f.r().report(first, ServerFault::TransportError, -1);
  CHECK(f.r().greylisted(first));
  CHECK(servers() == "TCP 192.0.2.11:5070, TCP [2001:db8::1]:5070, TCP 192.0.2.2:5080");
  // The same address over UDP is another server.
  core::Peer udp = first;
  udp.protocol = core::Protocol::Udp;
  CHECK_FALSE(f.r().greylisted(udp));

  f.clock.advance(29999);
  CHECK(f.r().greylisted(first));
  f.clock.advance(1);
  CHECK(servers() == all);  // retried after the period

  // Every server greylisted: all are tried rather than none.
  for (const char* ip : {"192.0.2.1", "192.0.2.11", "2001:db8::1"}) {
    core::Peer p = first;
    p.endpoint = *core::Endpoint::parse(ip, 5070);
    f.r().report(p, ServerFault::Timeout, -1);
  }
  core::Peer b = first;
  b.endpoint = *core::Endpoint::parse("192.0.2.2", 5080);
  f.r().report(b, ServerFault::Timeout, -1);
  CHECK(servers() == all);
}

TEST_CASE("greylist: a 503 with Retry-After skips the server that long; without, not at all") {
  Fixture f;
  f.example();
  core::Peer first;
  first.protocol = core::Protocol::Tcp;
  first.endpoint = *core::Endpoint::parse("192.0.2.1", 5070);
  f.r().report(first, ServerFault::Unavailable, -1);
  CHECK_FALSE(f.r().greylisted(first));
  f.r().report(first, ServerFault::Unavailable, retry_after_ms("120 (maintenance);duration=60"));
  CHECK(f.r().greylisted(first));
  f.clock.advance(119999);
  CHECK(f.r().greylisted(first));
  f.clock.advance(1);
  CHECK_FALSE(f.r().greylisted(first));

  Fixture off;
  off.settings.greylist_s = 0;
  off.r().report(first, ServerFault::Timeout, -1);
  CHECK_FALSE(off.r().greylisted(first));
}

TEST_CASE("retry_after_ms reads the delta-seconds") {
  CHECK(retry_after_ms("120") == 120000);
  CHECK(retry_after_ms(" 5 (back soon)") == 5000);
  CHECK(retry_after_ms("18000;duration=3600") == 18000000);
  CHECK(retry_after_ms("") == -1);
  CHECK(retry_after_ms("soon") == -1);
  CHECK(retry_after_ms("99999999999999999999") > 0);
}

TEST_CASE("rfc3263 + cache: a thousand resolutions of a new domain make one query per record") {
  core::FakeClock clock;
  FakeDns upstream;
  Cache cache(upstream, clock, CacheSettings{3600, 30, 1000});
  DnsResolver r(cache, clock, DnsSettings{}, fixed(0));
  upstream.zone["NAPTR example.com"] = answer_of("example.com", Type::Naptr, 0,
                                                 {naptr_rr("example.com", 10, 10, "s", "SIP+D2U", "_sip._udp.example.com")});
  upstream.zone["SRV _sip._udp.example.com"] = answer_of("_sip._udp.example.com", Type::Srv, 0,
      {srv_rr("_sip._udp.example.com", 1, 3, 5070, "a.example.com"), srv_rr("_sip._udp.example.com", 1, 1, 5080, "b.example.com")});
  upstream.zone["A a.example.com"] = answer_of("a.example.com", Type::A, 0, {a_rr("a.example.com", "192.0.2.1")});
  upstream.zone["AAAA a.example.com"] = answer_of("a.example.com", Type::Aaaa, 0, {});
  upstream.zone["A b.example.com"] = answer_of("b.example.com", Type::A, 0, {a_rr("b.example.com", "192.0.2.2")});
  upstream.zone["AAAA b.example.com"] = answer_of("b.example.com", Type::Aaaa, 0, {});
  auto uri = core::parse_uri("sip:bob@example.com");
  REQUIRE(uri.ok());
  std::vector<ServerList> got;
  for (int i = 0; i < 1000; ++i) r.resolve(*uri, [&](ServerList l) { got.push_back(std::move(l)); });
  CHECK(upstream.asked.size() == 1);
  upstream.answer_all();
  REQUIRE(got.size() == 1000);
  CHECK(show(got[999]) == "UDP 192.0.2.1:5070, UDP 192.0.2.2:5080");
  CHECK(upstream.asked == std::vector<std::string>{"NAPTR example.com", "SRV _sip._udp.example.com", "A a.example.com",
                                                   "AAAA a.example.com", "A b.example.com", "AAAA b.example.com"});
  // Cached now: answered inside resolve().
  int sync = 0;
  r.resolve(*uri, [&](ServerList) { ++sync; });
  CHECK(sync == 1);
  CHECK(upstream.asked.size() == 6);
}
