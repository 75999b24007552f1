// Who "we" are on the wire: our listeners (protocol, address, advertised host, port) and our
// domains. The proxy core asks it whether a URI or Via names this proxy (Route
// preprocessing §16.4, loop detection §16.3 step 4, requests to ourselves) and which
// listener a branch leaves from (Via, Record-Route).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/address.h"
#include "core/sip_headers.h"
#include "core/uri.h"

namespace sb::proxy {

struct LocalListener {
  core::Protocol protocol = core::Protocol::Udp;
  std::string address;     // IP literal, IPv6 without brackets
  std::string host;        // advertised host (or the address), IPv6 without brackets
  uint16_t port = 5060;
  int family = 0;          // AF_INET / AF_INET6
  int slot = -1;           // the transport's index of this listener (transport::Inbound::listener)
  // UDP: this worker's reply port on the listener (transport/listener.h), 0 when none; the
  // Via of a request it forwards names it, so the responses come back to this worker. And
  // every worker's: all of them are us.
  uint16_t reply_port = 0;
  std::vector<uint16_t> reply_ports;
  // Appends "127.0.0.1:5060" / "[::1]:5060" (Via sent-by, Record-Route) to `out`; with
  // `reply`, the reply port when there is one.
  void append_hostport(std::string& out, bool reply = false) const;
};

class LocalIdentity {
 public:
  LocalIdentity() = default;
  LocalIdentity(std::vector<LocalListener> listeners, std::vector<std::string> domains);

  const std::vector<LocalListener>& listeners() const { return listeners_; }
  const std::vector<std::string>& domains() const { return domains_; }
  bool is_local_domain(std::string_view host) const;
  // The host names one of our listeners (address or advertised host) and the port, when
  // present, is one we listen on (absent = the default: 5061 when `secure`, else 5060), or
  // the host is one of our domains and the port one we listen on.
  bool is_us(std::string_view host, uint16_t port, bool secure = false) const;
  // A URI naming this proxy: one of our listeners, or one of our domains at a port we use.
  bool uri_is_us(const core::Uri& uri) const;
  // A URI naming one of our listeners, domains excluded: what our Record-Route values
  // name (§16.4: a strict router puts one of them into the Request-URI).
  bool uri_is_listener(const core::Uri& uri) const;
  bool via_is_us(const core::Via& via) const;
  // The listener a message to `protocol`/`family` leaves from: same protocol and family
  // first, then same protocol; nullopt when we have none for the protocol.
  std::optional<size_t> outgoing(core::Protocol protocol, int family) const;

 private:
  std::vector<LocalListener> listeners_;
  std::vector<std::string> domains_;
};

}  // namespace sb::proxy
