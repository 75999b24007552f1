#include "transport/response_route.h"

#include <doctest/doctest.h>

#include <string>

#include "core/sip_headers.h"

using sb::core::ConnectionId;
using sb::core::Endpoint;
using sb::core::Peer;
using sb::core::Protocol;
using sb::transport::response_destination;

namespace {

// The stamped Via as the proxy builds it: appended after its own Via and ", ". The prefix
// must come through untouched; the stamped part is returned.
std::string stamped_via(const sb::core::Via& v, const Peer& from) {
  const std::string ours = "SIP/2.0/UDP 192.0.2.99;branch=z9hG4bKsb0.1.2, ";
  std::string out = ours;
  sb::transport::append_stamped_via(out, v, from);
  CHECK(out.compare(0, ours.size(), ours) == 0);
  return out.substr(ours.size());
}

Peer peer(Protocol p, const char* ip, uint16_t port, ConnectionId c = {}) {
  Peer x;
  x.protocol = p;
  x.endpoint = *Endpoint::parse(ip, port);
  x.connection = c;
  return x;
}

sb::core::Via via(const std::string& value) {
  auto v = sb::core::parse_via(value);
  REQUIRE_MESSAGE(v.ok(), value);
  return *v;
}

}  // namespace

TEST_CASE("response_destination: table") {
  struct Row {
    const char* via;
    Peer from;
    const char* want;  // Endpoint::to_string()
  };
  const Row rows[] = {
      // §18.2.2: no rport, sent-by port (or 5060), the source IP stands for received.
      {"SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1", peer(Protocol::Udp, "192.0.2.1", 5070), "192.0.2.1:5070"},
      {"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1", peer(Protocol::Udp, "192.0.2.1", 40000), "192.0.2.1:5060"},
      {"SIP/2.0/UDP pc33.example.com:5066;branch=z9hG4bK1", peer(Protocol::Udp, "198.51.100.7", 5066), "198.51.100.7:5066"},
      // RFC 3581 §4: empty rport → the source port.
      {"SIP/2.0/UDP 10.0.0.2:5060;rport;branch=z9hG4bK1", peer(Protocol::Udp, "203.0.113.9", 61000), "203.0.113.9:61000"},
      // A Via already stamped (forwarding a response): received + rport values.
      {"SIP/2.0/UDP 10.0.0.2:5060;received=203.0.113.9;rport=61000;branch=z9hG4bK1", peer(Protocol::Udp, "192.0.2.200", 5060), "203.0.113.9:61000"},
      {"SIP/2.0/UDP 10.0.0.2:5062;received=203.0.113.9;branch=z9hG4bK1", peer(Protocol::Udp, "192.0.2.200", 5060), "203.0.113.9:5062"},
      // maddr wins, with the sent-by port or 5060.
      {"SIP/2.0/UDP 10.0.0.2:5064;maddr=239.255.255.1;branch=z9hG4bK1", peer(Protocol::Udp, "203.0.113.9", 61000), "239.255.255.1:5064"},
      {"SIP/2.0/UDP 10.0.0.2;maddr=192.0.2.77;rport;branch=z9hG4bK1", peer(Protocol::Udp, "203.0.113.9", 61000), "192.0.2.77:5060"},
      // An maddr name cannot be resolved here: answered like no maddr.
      {"SIP/2.0/UDP 10.0.0.2:5064;maddr=mcast.example.com;branch=z9hG4bK1", peer(Protocol::Udp, "203.0.113.9", 61000), "203.0.113.9:5064"},
      // IPv6.
      {"SIP/2.0/UDP [2001:db8::9]:5080;branch=z9hG4bK1", peer(Protocol::Udp, "2001:db8::9", 5080), "[2001:db8::9]:5080"},
      {"SIP/2.0/UDP [2001:db8::9];rport;branch=z9hG4bK1", peer(Protocol::Udp, "2001:db8::1:2", 33333), "[2001:db8::1:2]:33333"},
      {"SIP/2.0/UDP [2001:db8::9];received=2001:db8::5;branch=z9hG4bK1", peer(Protocol::Udp, "2001:db8::1:2", 33333), "[2001:db8::5]:5060"},
  };
  for (const Row& r : rows) {
    CAPTURE(r.via);
    Peer to = response_destination(via(r.via), r.from);
    CHECK(to.protocol == Protocol::Udp);
    CHECK(to.endpoint.to_string() == r.want);
    CHECK_FALSE(to.connection.valid());
  }
}

TEST_CASE("response_destination: reliable transports use the same connection") {
  ConnectionId c{1, 42};
  Peer from = peer(Protocol::Tcp, "203.0.113.9", 51515, c);
  Peer to = response_destination(via("SIP/2.0/TCP 10.0.0.2:5070;rport;branch=z9hG4bK1"), from);
  CHECK(to.protocol == Protocol::Tcp);
  CHECK(to.connection == c);
  // If it has closed, §18.2.2: a new connection to the received IP and the sent-by port.
  CHECK(to.endpoint.to_string() == "203.0.113.9:5070");

  Peer tls = peer(Protocol::Tls, "2001:db8::7", 50000, ConnectionId{0, 3});
  Peer to6 = response_destination(via("SIP/2.0/TLS client.example.com;branch=z9hG4bK1"), tls);
  CHECK(to6.protocol == Protocol::Tls);
  CHECK(to6.connection == tls.connection);
  CHECK(to6.endpoint.to_string() == "[2001:db8::7]:5061");
}

TEST_CASE("stamped_via: when received and rport are added (§18.2.1, RFC 3581 §4)") {
  struct Row {
    const char* via;
    Peer from;
    const char* want;
  };
  const Row rows[] = {
      // The sent-by IP is the source IP: nothing to add, whatever the port.
      {"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", peer(Protocol::Udp, "192.0.2.1", 5060),
       "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1"},
      {"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", peer(Protocol::Udp, "192.0.2.1", 7000),
       "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1"},
      // Another IP, or a name: received.
      {"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", peer(Protocol::Udp, "192.0.2.2", 5060),
       "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;received=192.0.2.2"},
      {"SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1", peer(Protocol::Udp, "192.0.2.2", 5060),
       "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1;received=192.0.2.2"},
      // rport asked: received always (RFC 3581 §4), even when the IP matches.
      {"SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1", peer(Protocol::Udp, "192.0.2.1", 5060),
       "SIP/2.0/UDP 192.0.2.1:5060;rport=5060;branch=z9hG4bK1;received=192.0.2.1"},
      // An rport that already has a value is left alone.
      {"SIP/2.0/UDP 192.0.2.1:5060;rport=5060;branch=z9hG4bK1", peer(Protocol::Udp, "192.0.2.1", 5060),
       "SIP/2.0/UDP 192.0.2.1:5060;rport=5060;branch=z9hG4bK1"},
      // IPv6: compared as addresses, received written without brackets (RFC 3261 grammar).
      {"SIP/2.0/UDP [2001:DB8:0::1]:5060;branch=z9hG4bK1", peer(Protocol::Udp, "2001:db8::1", 5060),
       "SIP/2.0/UDP [2001:DB8:0::1]:5060;branch=z9hG4bK1"},
      {"SIP/2.0/TCP [2001:db8::1];rport;branch=z9hG4bK1", peer(Protocol::Tcp, "2001:db8::2", 40000),
       "SIP/2.0/TCP [2001:db8::1];rport=40000;branch=z9hG4bK1;received=2001:db8::2"},
  };
  for (const Row& r : rows) {
    CAPTURE(r.via);
    CHECK(stamped_via(via(r.via), r.from) == r.want);
  }
}

TEST_CASE("stamped_via: fills rport in place and appends received") {
  Peer from = peer(Protocol::Udp, "203.0.113.9", 61000);
  CHECK(stamped_via(via("SIP/2.0/UDP 10.0.0.2:5060;rport;branch=z9hG4bK1"), from) ==
        "SIP/2.0/UDP 10.0.0.2:5060;rport=61000;branch=z9hG4bK1;received=203.0.113.9");
  CHECK(stamped_via(via("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport"), from) ==
        "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport=61000;received=203.0.113.9");
  CHECK(stamped_via(via("SIP/2.0/UDP host.example.com;branch=z9hG4bK1"), from) ==
        "SIP/2.0/UDP host.example.com;branch=z9hG4bK1;received=203.0.113.9");
  CHECK(stamped_via(via("SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK1"), from) ==
        "SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bK1");
  // A received param the client put there is replaced by ours.
  CHECK(stamped_via(via("SIP/2.0/UDP 10.0.0.2;received=1.2.3.4;branch=z9hG4bK1"), from) ==
        "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1;received=203.0.113.9");
  CHECK(stamped_via(via("SIP/2.0/UDP 10.0.0.2"), from) == "SIP/2.0/UDP 10.0.0.2;received=203.0.113.9");
  // Its only param was the client's received: no ';' is left behind it.
  CHECK(stamped_via(via("SIP/2.0/UDP 10.0.0.2;received=1.2.3.4"), from) ==
        "SIP/2.0/UDP 10.0.0.2;received=203.0.113.9");
  // The stamped Via parses and gives the same destination.
  std::string stamped = stamped_via(via("SIP/2.0/UDP 10.0.0.2:5060;rport;branch=z9hG4bK1"), from);
  auto v = via(stamped);  // views into `stamped`
  CHECK(v.rport == "61000");
  CHECK(v.received == "203.0.113.9");
  CHECK(response_destination(v, peer(Protocol::Udp, "192.0.2.50", 5060)).endpoint.to_string() ==
        "203.0.113.9:61000");
}
