// Where a message came from or goes to: protocol, IP endpoint and (for streams) the
// connection. Shared vocabulary of transport, transaction layer, registrar and location.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sb::core {

enum class Protocol : uint8_t { Udp = 0, Tcp = 1, Tls = 2, Ws = 3, Wss = 4 };

// "UDP", "TCP", "TLS", "WS", "WSS" (Via transport tokens, RFC 3261 §18, RFC 7118).
std::string_view protocol_name(Protocol p);
// Parses a Via transport or a ;transport= value, any case. nullopt when unknown.
std::optional<Protocol> protocol_from_name(std::string_view s);
inline bool is_reliable(Protocol p) { return p != Protocol::Udp; }
inline bool is_secure(Protocol p) { return p == Protocol::Tls || p == Protocol::Wss; }
// Default port per RFC 3261 §19.1.2 (5060, 5061 for TLS) and RFC 7118 (80/443 for WS/WSS).
uint16_t default_port(Protocol p);

// An IPv4 or IPv6 address with a port.
class Endpoint {
 public:
  Endpoint() = default;
  static std::optional<Endpoint> from_sockaddr(const sockaddr* sa);
  // "192.0.2.1" / "::1" / "[::1]" plus a port. nullopt when `ip` is not an IP literal.
  static std::optional<Endpoint> parse(std::string_view ip, uint16_t port);
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss_); }
  socklen_t len() const;
  int family() const { return ss_.ss_family; }
  bool valid() const { return ss_.ss_family == AF_INET || ss_.ss_family == AF_INET6; }
  uint16_t port() const;
  void set_port(uint16_t port);
  // "192.0.2.1" or "2001:db8::1" (no brackets).
  std::string ip() const;
  // The same text into `buf` (no allocation; IPv4 formatted by hand), its length returned.
  size_t ip_into(char (&buf)[46]) const;
  // "192.0.2.1:5060" or "[2001:db8::1]:5060".
  std::string to_string() const;
  // host part for a SIP URI / Via: IPv6 in brackets.
  std::string uri_host() const;
  bool operator==(const Endpoint& o) const;
  size_t hash() const;

 private:
  sockaddr_storage ss_{};
};

// A stream connection: the worker that owns it and its number there. id 0 = none.
struct ConnectionId {
  uint32_t worker = 0;
  uint32_t id = 0;
  bool valid() const { return id != 0; }
  bool operator==(const ConnectionId&) const = default;
};

// The far end of a hop: protocol, address and, for streams, the connection.
struct Peer {
  Protocol protocol = Protocol::Udp;
  Endpoint endpoint;
  ConnectionId connection;
  // UDP: the peer is reached over a flow it opened to our listening socket (RFC 5626, a NAT
  // binding), so requests to it leave from that socket, never from a worker's reply port
  // (transport/listener.h): a NAT lets in only what comes from where it sent.
  bool flow = false;
};

}  // namespace sb::core
