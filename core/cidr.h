// Sets of IP networks in CIDR notation ("192.0.2.0/24", "2001:db8::/32", "::1"): the
// trusted networks of config "security.trusted". Parsing is strict (the address must be a
// literal, the prefix within the family's width, no host bits set beyond it); lookups do
// no allocation, so the transport can ask for every message.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/address.h"

namespace sb::core {

// An IP address as 16 bytes: IPv4 as an IPv4-mapped IPv6 address (::ffff:a.b.c.d), so one
// comparison covers both families. IPv4 and IPv4-mapped IPv6 sources are the same host.
struct IpKey {
  std::array<uint8_t, 16> bytes{};
  bool operator==(const IpKey&) const = default;
  // From an endpoint's address (the port is ignored); all zero for an invalid endpoint.
  static IpKey of(const Endpoint& e);
  static std::optional<IpKey> parse(std::string_view ip);
  size_t hash() const;
  // An IPv4 address (stored IPv4-mapped, ::ffff:a.b.c.d).
  bool is_v4() const;
};

struct Cidr {
  IpKey net;           // host bits cleared
  uint8_t prefix = 0;  // over the 128-bit key: an IPv4 /24 is stored as /120
  bool operator==(const Cidr&) const = default;
  bool contains(const IpKey& ip) const;
  // "192.0.2.0/24" / "2001:db8::/32"; a single host without "/n".
  std::string to_string() const;
};

// Parses "ADDR" or "ADDR/N". An error text (naming what is wrong) when it is not one.
// `host bits set` ("192.0.2.1/24") is an error: it usually hides a typo.
std::optional<Cidr> parse_cidr(std::string_view text, std::string* error = nullptr);

class CidrSet {
 public:
  CidrSet() = default;
  explicit CidrSet(std::vector<Cidr> nets) : nets_(std::move(nets)) {}
  // Loopback: 127.0.0.0/8 and ::1 (the shipped default of security.trusted).
  static CidrSet loopback();

  bool contains(const IpKey& ip) const;
  bool contains(const Endpoint& e) const { return e.valid() && contains(IpKey::of(e)); }
  bool empty() const { return nets_.empty(); }
  const std::vector<Cidr>& networks() const { return nets_; }
  bool operator==(const CidrSet&) const = default;

 private:
  std::vector<Cidr> nets_;
};

}  // namespace sb::core
