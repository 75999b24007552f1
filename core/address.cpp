#include "core/address.h"

#include <arpa/inet.h>

#include <cstring>
#include <functional>

#include "core/text.h"

namespace sb::core {

std::string_view protocol_name(Protocol p) {
  switch (p) {
    case Protocol::Udp: return "UDP";
    case Protocol::Tcp: return "TCP";
    case Protocol::Tls: return "TLS";
    case Protocol::Ws: return "WS";
    case Protocol::Wss: return "WSS";
  }
  return "UDP";
}

std::optional<Protocol> protocol_from_name(std::string_view s) {

  if (iequals(s, "udp")) return Protocol::Udp;
  if (iequals(s, "tcp")) return Protocol::Tcp;
  if (iequals(s, "tls")) return Protocol::Tls;
  if (iequals(s, "ws")) return Protocol::Ws;
  if (iequals(s, "wss")) return Protocol::Wss;
  return std::nullopt;
}

uint16_t default_port(Protocol p) {
  switch (p) {
    case Protocol::Tls: return 5061;
    case Protocol::Ws: return 80;
    case Protocol::Wss: return 443;
    default: return 5060;
  }
}

std::optional<Endpoint> Endpoint::from_sockaddr(const sockaddr* sa) {
  Endpoint e;
  if (sa->sa_family == AF_INET) std::memcpy(&e.ss_, sa, sizeof(sockaddr_in));
  else if (sa->sa_family == AF_INET6) std::memcpy(&e.ss_, sa, sizeof(sockaddr_in6));
  else return std::nullopt;
  return e;
}

std::optional<Endpoint> Endpoint::parse(std::string_view ip, uint16_t port) {
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  if (ip.empty() || ip.size() > 63 || ip.find('\0') != std::string_view::npos) return std::nullopt;
  char buf[64];
  std::memcpy(buf, ip.data(), ip.size());
  buf[ip.size()] = 0;
  Endpoint e;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&e.ss_);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&e.ss_);
  if (inet_pton(AF_INET, buf, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return e;
  }
  e.ss_ = {};
  if (inet_pton(AF_INET6, buf, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    return e;
  }
  return std::nullopt;
}

socklen_t Endpoint::len() const {
  return ss_.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

uint16_t Endpoint::port() const {
  if (ss_.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&ss_)->sin_port);
  if (ss_.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_port);
  return 0;
}

void Endpoint::set_port(uint16_t port) {
  if (ss_.ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(&ss_)->sin_port = htons(port);
  else if (ss_.ss_family == AF_INET6)
    reinterpret_cast<sockaddr_in6*>(&ss_)->sin6_port = htons(port);
}

static_assert(INET6_ADDRSTRLEN == 46, "Endpoint::ip_into's buffer");

size_t Endpoint::ip_into(char (&buf)[46]) const {
  size_t len = 0;
  if (ss_.ss_family == AF_INET) {
    // inet_ntop formats IPv4 with sprintf: this is a good part of a REGISTER's cost.
    const auto* a = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(&ss_)->sin_addr);
    for (int i = 0; i < 4; ++i) {
      if (i) buf[len++] = '.';
      const unsigned v = a[i];
      if (v >= 100) buf[len++] = static_cast<char>('0' + v / 100);
      if (v >= 10) buf[len++] = static_cast<char>('0' + v / 10 % 10);
      buf[len++] = static_cast<char>('0' + v % 10);
    }
  } else if (ss_.ss_family == AF_INET6) {
    if (inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_addr, buf, sizeof buf))
      len = std::strlen(buf);
  }
  buf[len] = '\0';
  return len;
}

std::string Endpoint::ip() const {
  char buf[INET6_ADDRSTRLEN];
  return std::string(buf, ip_into(buf));
}

std::string Endpoint::uri_host() const {
  if (ss_.ss_family != AF_INET6) return ip();
  // Built by appending: GCC 12 at -O3 reports a false -Wrestrict for "[" + ip() + "]".
  std::string s;
  s.reserve(INET6_ADDRSTRLEN + 2);
  s += '[';
  s += ip();
  s += ']';
  return s;
}

std::string Endpoint::to_string() const { return uri_host() + ":" + std::to_string(port()); }

bool Endpoint::operator==(const Endpoint& o) const {
  if (ss_.ss_family != o.ss_.ss_family) return false;
  if (ss_.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss_);
    auto* b = reinterpret_cast<const sockaddr_in*>(&o.ss_);
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
  }
  if (ss_.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss_);
    auto* b = reinterpret_cast<const sockaddr_in6*>(&o.ss_);
    return a->sin6_port == b->sin6_port &&
           std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(in6_addr)) == 0;
  }
  return true;
}

size_t Endpoint::hash() const {
  std::string_view bytes(reinterpret_cast<const char*>(&ss_), len());
  return std::hash<std::string_view>{}(bytes);
}

}  // namespace sb::core
