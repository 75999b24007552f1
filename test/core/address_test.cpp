// core/address: endpoints as text.
#include "core/address.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>

#include <string>

using sb::core::Endpoint;

TEST_CASE("Endpoint::ip writes what inet_ntop writes, IPv4 by hand") {
  for (const char* ip : {"0.0.0.0", "1.2.3.4", "9.10.99.100", "127.0.0.1", "192.168.100.9", "255.255.255.255",
                         "::1", "2001:db8::17", "::ffff:192.0.2.1", "fe80::1:2:3:4"}) {
    CAPTURE(ip);
    auto ep = Endpoint::parse(ip, 5060);
    REQUIRE(ep);
    char expect[INET6_ADDRSTRLEN];
    const bool v6 = std::string(ip).find(':') != std::string::npos;
    unsigned char raw[16];
    REQUIRE(inet_pton(v6 ? AF_INET6 : AF_INET, ip, raw) == 1);
    REQUIRE(inet_ntop(v6 ? AF_INET6 : AF_INET, raw, expect, sizeof expect));
    CHECK(ep->ip() == expect);
    char buf[INET6_ADDRSTRLEN];
    size_t n = ep->ip_into(buf);
    CHECK(std::string(buf, n) == expect);
    CHECK(buf[n] == '\0');
  }
  CHECK(Endpoint().ip().empty());
}
