// Config "security" (core/config.cpp): trusted networks and flood protection.
#include <doctest/doctest.h>

#include <string>

#include "core/config.h"

using namespace sb::core;

namespace {

ConfigLoad load(const std::string& security) {
  return parse_config("{\"security\": " + security + "}", "/srv/sb/etc", "test.json");
}

std::string only_error(const std::string& security) {
  ConfigLoad r = load(security);
  REQUIRE_FALSE(r.ok());
  REQUIRE_MESSAGE(r.errors.size() == 1, "errors: " << r.errors.size() << " first: " << r.errors[0]);
  return r.errors[0];
}

}  // namespace

TEST_CASE("security config: defaults trust loopback and limit others") {
  ConfigLoad r = parse_config("{}", "/srv/sb/etc", "test.json");
  REQUIRE(r.ok());
  const SecurityConfig& s = r.config->security;
  CHECK(s.trusted == CidrSet::loopback());
  CHECK(s.rate_limit);
  CHECK(s.rate_per_s == 100);
  CHECK(s.burst == 200);
  CHECK(s.block_after == 1000);
  CHECK(s.block_s == 60);
  CHECK(s.table_size == 65536);
  CHECK(s.max_connections_per_source == 32);
  // The shipped file says the same.
  ConfigLoad shipped = parse_config(embedded_default_config(), "/srv/sb/etc", "switchboard.json");
  REQUIRE(shipped.ok());
  CHECK(shipped.config->security == s);
}

TEST_CASE("security config: every key is read") {
  ConfigLoad r = load(R"({"trusted": ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7", "192.0.2.0/24"],
                          "rate_limit": {"enabled": false, "rate_per_s": 5, "burst": 10, "block_after": 0,
                                         "block_s": 300, "table_size": 1024},
                          "max_connections_per_source": 0})");
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.errors[0]));
  const SecurityConfig& s = r.config->security;
  REQUIRE(s.trusted.networks().size() == 3);  // the repeat is dropped
  CHECK(s.trusted.networks()[1].to_string() == "2001:db8::/32");
  CHECK(s.trusted.contains(*IpKey::parse("198.51.100.7")));
  CHECK_FALSE(s.trusted.contains(*IpKey::parse("127.0.0.1")));  // replaces the default
  CHECK_FALSE(s.rate_limit);
  CHECK(s.rate_per_s == 5);
  CHECK(s.burst == 10);
  CHECK(s.block_after == 0);
  CHECK(s.block_s == 300);
  CHECK(s.table_size == 1024);
  CHECK(s.max_connections_per_source == 0);

  // Nothing trusted at all is allowed (every source must authenticate).
  ConfigLoad none = load(R"({"trusted": []})");
  REQUIRE(none.ok());
  CHECK(none.config->security.trusted.empty());
}

TEST_CASE("security config: faults name their key path") {
  CHECK(only_error(R"({"trusted": "127.0.0.1"})").starts_with("security.trusted: expected an array of networks"));
  CHECK(only_error(R"({"trusted": ["127.0.0.1", "10.0.0.1/8"]})") ==
        "security.trusted[1]: host bits are set beyond the prefix (did you mean \"10.0.0.0/8\"?), got \"10.0.0.1/8\"");
  CHECK(only_error(R"({"trusted": ["localhost"]})")
            .starts_with("security.trusted[0]: \"localhost\" is not an IPv4 or IPv6 address"));
  CHECK(only_error(R"({"trusted": ["::1/200"]})").starts_with("security.trusted[0]: prefix length 200"));
  CHECK(only_error(R"({"trusted": [7]})").starts_with("security.trusted[0]: expected a network as a string"));
  CHECK(only_error(R"({"rate_limit": {"enabled": "yes"}})") ==
        "security.rate_limit.enabled: expected true or false, got \"yes\"");
  CHECK(only_error(R"({"rate_limit": {"rate_per_s": 0}})")
            .starts_with("security.rate_limit.rate_per_s: expected an integer from 1"));
  CHECK(only_error(R"({"rate_limit": {"burst": -1}})").starts_with("security.rate_limit.burst: expected an integer"));
  CHECK(only_error(R"({"rate_limit": {"table_size": 4}})")
            .starts_with("security.rate_limit.table_size: expected an integer from 16"));
  CHECK(only_error(R"({"rate_limit": {"block_s": 0}})").starts_with("security.rate_limit.block_s: expected an integer"));
  CHECK(only_error(R"({"rate_limit": {"rate": 5}})").starts_with("security.rate_limit.rate: unknown key"));
  CHECK(only_error(R"({"rate_limit": []})").starts_with("security.rate_limit: expected an object"));
  CHECK(only_error(R"({"max_connections_per_source": "many"})")
            .starts_with("security.max_connections_per_source: expected an integer"));
  CHECK(only_error(R"({"trustd": []})").find("did you mean \"trusted\"") != std::string::npos);
  CHECK(only_error(R"([])").starts_with("security: expected an object"));
}
