#include "core/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace sb::core {

namespace {

constexpr uint8_t kV4Mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void clear_host_bits(IpKey& k, unsigned prefix) {
  for (unsigned i = 0; i < 16; ++i) {
    unsigned first_bit = i * 8;
    if (first_bit >= prefix) {
      k.bytes[i] = 0;
    } else if (first_bit + 8 > prefix) {
      k.bytes[i] &= static_cast<uint8_t>(0xff00u >> (prefix - first_bit));
    }
  }
}

}  // namespace

bool IpKey::is_v4() const { return std::memcmp(bytes.data(), kV4Mapped, 12) == 0; }

IpKey IpKey::of(const Endpoint& e) {
  IpKey k;
  if (e.family() == AF_INET) {
    std::memcpy(k.bytes.data(), kV4Mapped, 12);
    std::memcpy(k.bytes.data() + 12, &reinterpret_cast<const sockaddr_in*>(e.sa())->sin_addr, 4);
  } else if (e.family() == AF_INET6) {
    std::memcpy(k.bytes.data(), &reinterpret_cast<const sockaddr_in6*>(e.sa())->sin6_addr, 16);
  }
  return k;
}

std::optional<IpKey> IpKey::parse(std::string_view ip) {
  auto ep = Endpoint::parse(ip, 0);
  if (!ep) return std::nullopt;
  return of(*ep);
}

size_t IpKey::hash() const {
  // Two 64-bit words, multiplied and folded: a few cycles, and addresses that differ only in
  // their last bytes still land far apart.
  uint64_t a, b;
  std::memcpy(&a, bytes.data(), 8);
  std::memcpy(&b, bytes.data() + 8, 8);
  uint64_t h = (a ^ 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
  h ^= b * 0x94d049bb133111ebull;
  h ^= h >> 31;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return static_cast<size_t>(h);
}

bool Cidr::contains(const IpKey& ip) const {
  unsigned full = prefix / 8, rest = prefix % 8;
  if (std::memcmp(ip.bytes.data(), net.bytes.data(), full) != 0) return false;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff00u >> rest);
  return (ip.bytes[full] & mask) == net.bytes[full];
}

std::string Cidr::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  bool v4 = net.is_v4() && prefix >= 96;
  if (v4) inet_ntop(AF_INET, net.bytes.data() + 12, buf, sizeof buf);
  else inet_ntop(AF_INET6, net.bytes.data(), buf, sizeof buf);
  unsigned width = v4 ? 32 : 128;
  unsigned p = v4 ? prefix - 96u : prefix;
  std::string out(buf);
  if (p != width) {
    out += '/';  // appended: GCC 12 at -O3 reports a false -Wrestrict for "/" + std::string
    out += std::to_string(p);
  }
  return out;
}

std::optional<Cidr> parse_cidr(std::string_view text, std::string* error) {
  auto fail = [&](const std::string& why) -> std::optional<Cidr> {
    if (error) *error = why;
    return std::nullopt;
  };
  std::string_view addr = text, len;
  size_t slash = text.find('/');
  if (slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    len = text.substr(slash + 1);
  }
  auto ep = Endpoint::parse(addr, 0);
  if (!ep) {
    std::string why = "\"";  // appended, as in to_string()
    why += addr;
    why += "\" is not an IPv4 or IPv6 address";
    return fail(why);
  }
  bool v4 = ep->family() == AF_INET;
  unsigned width = v4 ? 32 : 128;
  unsigned n = width;
  if (slash != std::string_view::npos) {
    if (len.empty() || len.size() > 3) return fail("expected a prefix length after '/'");
    n = 0;
    for (char c : len) {
      if (c < '0' || c > '9') return fail("expected a prefix length after '/'");
      n = n * 10 + static_cast<unsigned>(c - '0');
    }
    if (n > width)
      return fail("prefix length " + std::to_string(n) + " is longer than " + std::to_string(width));
  }
  Cidr c;
  c.net = IpKey::of(*ep);
  c.prefix = static_cast<uint8_t>(v4 ? 96 + n : n);
  IpKey cleared = c.net;
  clear_host_bits(cleared, c.prefix);
  if (!(cleared == c.net)) {
    Cidr shown{cleared, c.prefix};
    return fail("host bits are set beyond the prefix (did you mean \"" + shown.to_string() + "\"?)");
  }
  return c;
}

CidrSet CidrSet::loopback() {
  return CidrSet({*parse_cidr("127.0.0.0/8"), *parse_cidr("::1")});
}

bool CidrSet::contains(const IpKey& ip) const {
  for (const Cidr& c : nets_)
    if (c.contains(ip)) return true;
  return false;
}

}  // namespace sb::core
