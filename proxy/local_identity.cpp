#include "proxy/local_identity.h"

#include <sys/socket.h>

#include "core/text.h"

namespace sb::proxy {

std::string LocalListener::hostport() const {
  std::string s;
  bool v6 = host.find(':') != std::string::npos;
  if (v6) s += '[';
  s += host;
  if (v6) s += ']';
  s += ':';
  s += std::to_string(port);
  return s;
}

LocalIdentity::LocalIdentity(std::vector<LocalListener> listeners, std::vector<std::string> domains)
    : listeners_(std::move(listeners)), domains_(std::move(domains)) {}

bool LocalIdentity::is_local_domain(std::string_view host) const {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  for (const auto& d : domains_)
    if (core::iequals(d, host)) return true;
  return false;
}

bool LocalIdentity::is_us(std::string_view host, uint16_t port, bool sips) const {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  uint16_t want = port ? port : (sips ? 5061 : 5060);
  bool host_match = false;
  bool port_match = false;
  for (const auto& l : listeners_) {
    bool h = core::iequals(l.address, host) || core::iequals(l.host, host);
    host_match |= h;
    if (l.port == want) {
      port_match = true;
      if (h) return true;
    }
  }
  // A listener on 0.0.0.0 / :: answers for any address; a domain of ours counts as us at
  // any port we listen on.
  (void)host_match;
  return port_match && is_local_domain(host);
}

bool LocalIdentity::uri_is_us(const core::Uri& uri) const {
  if (!uri.is_sip()) return false;
  if (auto maddr = uri.param("maddr")) return is_us(*maddr, uri.port, uri.scheme == core::Scheme::Sips);
  return is_us(uri.host, uri.port, uri.scheme == core::Scheme::Sips);
}

bool LocalIdentity::via_is_us(const core::Via& via) const { return is_us(via.host, via.port); }

std::optional<size_t> LocalIdentity::outgoing(core::Protocol protocol, int family) const {
  std::optional<size_t> any;
  for (size_t i = 0; i < listeners_.size(); ++i) {
    if (listeners_[i].protocol != protocol) continue;
    if (listeners_[i].family == family) return i;
    if (!any) any = i;
  }
  return any;
}

}  // namespace sb::proxy
