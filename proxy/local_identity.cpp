#include "proxy/local_identity.h"

#include <sys/socket.h>

#include <algorithm>
#include <charconv>

#include "core/text.h"

namespace sb::proxy {

void LocalListener::append_hostport(std::string& out, bool reply) const {
  const bool v6 = host.find(':') != std::string::npos;
  if (v6) out += '[';
  out += host;
  if (v6) out += ']';
  out += ':';
  char digits[8];
  auto r = std::to_chars(digits, digits + sizeof digits, reply && reply_port ? reply_port : port);
  out.append(digits, r.ptr);
}

namespace {

std::string_view strip_brackets(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return host;
}

// RFC 3263 §4.2 / RFC 3261 §19.1.2: without a port, sips: and TLS mean 5061, else 5060.
bool uri_secure(const core::Uri& uri) {
  if (uri.scheme == core::Scheme::Sips) return true;
  auto t = uri.param("transport");
  if (!t) return false;
  auto p = core::protocol_from_name(*t);
  return p && core::is_secure(*p);
}

std::string_view uri_target_host(const core::Uri& uri) {
  auto maddr = uri.param("maddr");
  return maddr ? *maddr : uri.host;
}

}  // namespace

LocalIdentity::LocalIdentity(std::vector<LocalListener> listeners, std::vector<std::string> domains)
    : listeners_(std::move(listeners)), domains_(std::move(domains)) {}

bool LocalIdentity::is_local_domain(std::string_view host) const {
  host = strip_brackets(host);
  for (const auto& d : domains_)
    if (core::iequals(d, host)) return true;
  return false;
}

bool LocalIdentity::is_us(std::string_view host, uint16_t port, bool secure) const {
  host = strip_brackets(host);
  const uint16_t want = port ? port : (secure ? 5061 : 5060);
  bool port_match = false;
  for (const auto& l : listeners_) {
    if (l.port != want && std::find(l.reply_ports.begin(), l.reply_ports.end(), want) == l.reply_ports.end())
      continue;
    port_match = true;
    if (core::iequals(l.address, host) || core::iequals(l.host, host)) return true;
  }
  // A domain of ours counts as us at any port we listen on.
  return port_match && is_local_domain(host);
}

bool LocalIdentity::uri_is_us(const core::Uri& uri) const {
  if (!uri.is_sip()) return false;
  return is_us(uri_target_host(uri), uri.port, uri_secure(uri));
}

bool LocalIdentity::uri_is_listener(const core::Uri& uri) const {
  if (!uri.is_sip()) return false;
  std::string_view host = strip_brackets(uri_target_host(uri));
  const uint16_t want = uri.port ? uri.port : (uri_secure(uri) ? 5061 : 5060);
  for (const auto& l : listeners_)
    if (l.port == want && (core::iequals(l.address, host) || core::iequals(l.host, host))) return true;
  return false;
}

bool LocalIdentity::via_is_us(const core::Via& via) const {
  auto p = core::protocol_from_name(via.transport);
  return is_us(via.host, via.port, p && core::is_secure(*p));
}

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
