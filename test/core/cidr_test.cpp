#include "core/cidr.h"

#include <doctest/doctest.h>

using namespace sb::core;

namespace {
IpKey ip(const char* s) {
  auto k = IpKey::parse(s);
  REQUIRE_MESSAGE(k.has_value(), s);
  return *k;
}
Cidr net(const char* s) {
  std::string err;
  auto c = parse_cidr(s, &err);
  REQUIRE_MESSAGE(c.has_value(), s << ": " << err);
  return *c;
}
std::string error_of(const char* s) {
  std::string err;
  CHECK_FALSE(parse_cidr(s, &err).has_value());
  return err;
}
}  // namespace

TEST_CASE("cidr: IPv4 networks contain their addresses and nothing else") {
  Cidr c = net("192.0.2.0/24");
  CHECK(c.contains(ip("192.0.2.0")));
  CHECK(c.contains(ip("192.0.2.255")));
  CHECK_FALSE(c.contains(ip("192.0.3.0")));
  CHECK_FALSE(c.contains(ip("192.0.1.255")));
  CHECK_FALSE(c.contains(ip("2001:db8::1")));
  CHECK(c.to_string() == "192.0.2.0/24");

  Cidr odd = net("10.64.0.0/10");  // prefix not on a byte boundary
  CHECK(odd.contains(ip("10.127.255.255")));
  CHECK_FALSE(odd.contains(ip("10.128.0.0")));
  CHECK_FALSE(odd.contains(ip("10.63.255.255")));

  Cidr host = net("198.51.100.7");
  CHECK(host.contains(ip("198.51.100.7")));
  CHECK_FALSE(host.contains(ip("198.51.100.8")));
  CHECK(host.to_string() == "198.51.100.7");

  Cidr all = net("0.0.0.0/0");
  CHECK(all.contains(ip("203.0.113.9")));
  CHECK_FALSE(all.contains(ip("::1")));  // IPv4 only
}

TEST_CASE("cidr: IPv6 networks, and IPv4-mapped addresses count as IPv4") {
  Cidr c = net("2001:db8::/32");
  CHECK(c.contains(ip("2001:db8:ffff::1")));
  CHECK_FALSE(c.contains(ip("2001:db9::1")));
  CHECK_FALSE(c.contains(ip("192.0.2.1")));
  CHECK(c.to_string() == "2001:db8::/32");

  Cidr lo = net("::1");
  CHECK(lo.contains(ip("::1")));
  CHECK(lo.contains(ip("0:0::1")));
  CHECK_FALSE(lo.contains(ip("::2")));

  CHECK(net("127.0.0.0/8").contains(ip("::ffff:127.0.0.2")));
  CHECK_FALSE(net("[2001:db8::]/48").contains(ip("2001:db8:1::5")));
  CHECK(net("2001:db8::/48").contains(ip("2001:db8:0:1::5")));
  CHECK(net("[2001:db8::]/48").contains(ip("2001:db8::5")));
}

TEST_CASE("cidr: malformed networks are refused with a reason") {
  CHECK(error_of("").find("not an IPv4 or IPv6 address") != std::string::npos);
  CHECK(error_of("example.com/24").find("not an IPv4 or IPv6 address") != std::string::npos);
  CHECK(error_of("192.0.2.0/").find("prefix length") != std::string::npos);
  CHECK(error_of("192.0.2.0/x").find("prefix length") != std::string::npos);
  CHECK(error_of("192.0.2.0/-1").find("prefix length") != std::string::npos);
  CHECK(error_of("192.0.2.0/33").find("longer than 32") != std::string::npos);
  CHECK(error_of("::/129").find("longer than 128") != std::string::npos);
  CHECK(error_of("192.0.2.0/2400").find("prefix length") != std::string::npos);
  CHECK(error_of("192.0.2.1/24").find("did you mean \"192.0.2.0/24\"") != std::string::npos);
  CHECK(error_of("2001:db8::1/32").find("did you mean \"2001:db8::/32\"") != std::string::npos);
  CHECK(error_of("1.2.3.4/8/8").size() > 0);
  CHECK_FALSE(parse_cidr(std::string_view("127.0.0.1\0/8", 12)).has_value());
}

TEST_CASE("cidr: a set matches any of its networks; loopback is 127/8 and ::1") {
  CidrSet lo = CidrSet::loopback();
  CHECK(lo.contains(ip("127.0.0.1")));
  CHECK(lo.contains(ip("127.255.0.9")));
  CHECK(lo.contains(ip("::1")));
  CHECK_FALSE(lo.contains(ip("128.0.0.1")));
  CHECK_FALSE(lo.contains(ip("::2")));
  CHECK(lo.contains(*Endpoint::parse("127.0.0.2", 5060)));
  CHECK_FALSE(lo.contains(Endpoint{}));  // invalid endpoint: never trusted

  CidrSet none;
  CHECK(none.empty());
  CHECK_FALSE(none.contains(ip("127.0.0.1")));

  CidrSet two({net("192.0.2.0/24"), net("2001:db8::/32")});
  CHECK(two.contains(ip("192.0.2.77")));
  CHECK(two.contains(ip("2001:db8::77")));
  CHECK_FALSE(two.contains(ip("198.51.100.1")));
  CHECK(two == CidrSet({net("192.0.2.0/24"), net("2001:db8::/32")}));
}
