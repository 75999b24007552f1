// Reading DNS answers: records with TTLs, CNAME chains, negative answers with their SOA,
// server failures, malformed packets; real dnsmasq answers (with name compression).
#include "transport/dns_message.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "test/transport/dns_test_util.h"

using namespace sb::transport::dns;
using namespace sb::transport::dns::test;

namespace {

Bytes from_hex(std::string_view hex) {
  Bytes b;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) b.push_back(uint8_t(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return b;
}

}  // namespace

TEST_CASE("dns: A and AAAA records in answer order, least TTL") {
  Answer a = answer_of("sip.example.com", Type::A, 0,
                       {a_rr("sip.example.com", "192.0.2.2", 300), a_rr("sip.example.com", "192.0.2.1", 60)});
  CHECK(a.status == Status::Ok);
  REQUIRE(a.addresses.size() == 2);
  CHECK(a.addresses[0].ip() == "192.0.2.2");
  CHECK(a.addresses[1].ip() == "192.0.2.1");
  CHECK(a.ttl_s == 60);
  CHECK_FALSE(a.negative());

  Answer six = answer_of("sip.example.com", Type::Aaaa, 0, {a_rr("sip.example.com", "2001:db8::5", 30)});
  REQUIRE(six.addresses.size() == 1);
  CHECK(six.addresses[0].ip() == "2001:db8::5");
  CHECK(six.addresses[0].family() == AF_INET6);
}

TEST_CASE("dns: a CNAME bounds the TTL; records of other types are skipped") {
  Answer a = answer_of("www.example.com", Type::A, 0,
                       {cname_rr("www.example.com", "sip.example.com", 20), a_rr("sip.example.com", "192.0.2.1", 300),
                        srv_rr("x.example.com", 1, 1, 5060, "y.example.com")});
  REQUIRE(a.addresses.size() == 1);
  CHECK(a.ttl_s == 20);
  CHECK(a.srv.empty());
}

TEST_CASE("dns: negative answers") {
  Answer nx = answer_of("nope.example.com", Type::A, 3, {}, {soa_rr("example.com", 600, 45)});
  CHECK(nx.status == Status::NoSuchName);
  CHECK(nx.negative());
  CHECK(nx.negative_ttl_s == 45);  // RFC 2308 §5: min(SOA TTL, MINIMUM)

  Answer nodata = answer_of("sip.example.com", Type::Aaaa, 0, {}, {soa_rr("example.com", 10, 45)});
  CHECK(nodata.status == Status::Ok);
  CHECK(nodata.negative());
  CHECK(nodata.negative_ttl_s == 10);

  Answer bare = answer_of("nope.example.com", Type::A, 3, {});
  CHECK(bare.negative_ttl_s == -1);
}

TEST_CASE("dns: server failures and malformed packets are failures") {
  Answer servfail = answer_of("x.example.com", Type::A, 2, {});
  CHECK(servfail.status == Status::Failed);
  CHECK(servfail.error == "the DNS server answered SERVFAIL (rcode 2)");
  CHECK(answer_of("x.example.com", Type::A, 5, {}).error == "the DNS server answered REFUSED (rcode 5)");

  Bytes ok = response(7, "sip.example.com", Type::A, 0, {a_rr("sip.example.com", "192.0.2.1")});
  for (size_t cut : {size_t(0), size_t(5), size_t(12), size_t(20), ok.size() - 1}) {
    CAPTURE(cut);
    CHECK(parse_answer(ok.data(), cut, Type::A).status == Status::Failed);
  }
  // An A record with a 3-byte address.
  Rr bad = a_rr("sip.example.com", "192.0.2.1");
  bad.rdata.pop_back();
  Bytes b = response(7, "sip.example.com", Type::A, 0, {bad});
  Answer a = parse_answer(b.data(), b.size(), Type::A);
  CHECK(a.status == Status::Failed);
  CHECK(a.error == "malformed A record");
  // A TTL with the top bit set counts as 0 (RFC 2181 §8).
  Answer big = answer_of("sip.example.com", Type::A, 0, {a_rr("sip.example.com", "192.0.2.1", 0x80000000u)});
  CHECK(big.ttl_s == 0);
}

TEST_CASE("dns: SRV and NAPTR from dnsmasq (compressed names)") {
  // dnsmasq 2.90: srv-host=_sip._udp.example.test,sip1.example.test,5070,10,3 and
  // sip2...,5080,10,1, with the targets' addresses in the additional section; local-ttl=5.
  Bytes srv = from_hex(
      "1cc885800001000200000003045f736970045f756470076578616d706c6504746573740000210001c00c0021"
      "0001000000050019000a000113d80473697032076578616d706c65047465737400c00c002100010000000500"
      "19000a000313ce0473697031076578616d706c65047465737400c05f000100010000000500047f000001c03a"
      "001c000100000005001000000000000000000000000000000001c03a000100010000000500047f000001");
  Answer s = parse_answer(srv.data(), srv.size(), Type::Srv);
  CHECK(s.status == Status::Ok);
  CHECK(s.ttl_s == 5);
  REQUIRE(s.srv.size() == 2);
  CHECK(s.srv[0].priority == 10);
  CHECK(s.srv[0].weight == 1);
  CHECK(s.srv[0].port == 5080);
  CHECK(s.srv[0].target == "sip2.example.test");
  CHECK(s.srv[1].weight == 3);
  CHECK(s.srv[1].port == 5070);
  CHECK(s.srv[1].target == "sip1.example.test");

  // naptr-record=example.test,10,20,"S","SIP+D2T","",_sip._tcp.example.test and
  // example.test,20,20,s,SIP+D2U,,_sip._udp.example.test
  Bytes naptr = from_hex(
      "794785800001000200000000076578616d706c6504746573740000230001c00c00230001000000050027001400"
      "140173075349502b44325500045f736970045f756470076578616d706c65047465737400c00c00230001000000"
      "050027000a00140153075349502b44325400045f736970045f746370076578616d706c65047465737400");
  Answer n = parse_answer(naptr.data(), naptr.size(), Type::Naptr);
  REQUIRE(n.naptr.size() == 2);
  CHECK(n.naptr[0].order == 20);
  CHECK(n.naptr[0].flags == "s");
  CHECK(n.naptr[0].service == "SIP+D2U");
  CHECK(n.naptr[0].replacement == "_sip._udp.example.test");
  CHECK(n.naptr[1].order == 10);
  CHECK(n.naptr[1].preference == 20);
  CHECK(n.naptr[1].flags == "S");
  CHECK(n.naptr[1].service == "SIP+D2T");

  // dnsmasq's NXDOMAIN for a name under local=/test/ carries no SOA.
  Bytes nx = from_hex("f04f81830001000000000000046e6f706504746573740000010001");
  Answer x = parse_answer(nx.data(), nx.size(), Type::A);
  CHECK(x.status == Status::NoSuchName);
  CHECK(x.negative_ttl_s == -1);
}

TEST_CASE("dns: an SRV target of \".\" reads as \".\"") {
  Answer a = answer_of("_sip._udp.example.com", Type::Srv, 0, {srv_rr("_sip._udp.example.com", 0, 0, 0, ".")});
  REQUIRE(a.srv.size() == 1);
  CHECK(a.srv[0].target == ".");
}

TEST_CASE("dns: names are compared in lower case without the root dot") {
  CHECK(normalize_name("SIP.Example.COM.") == "sip.example.com");
  CHECK(normalize_name("") == "");
}
