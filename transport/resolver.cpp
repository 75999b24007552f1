#include "transport/resolver.h"

#include "core/text.h"

namespace sb::transport {

bool numeric_next_hop(const core::Uri& uri, core::Peer& out, std::string& error) {
  out = core::Peer{};
  if (!uri.is_sip()) {
    error = "not a SIP URI";
    return false;
  }
  out.protocol = uri.scheme == core::Scheme::Sips ? core::Protocol::Tls : core::Protocol::Udp;
  if (auto t = uri.param("transport")) {
    auto p = core::protocol_from_name(*t);
    if (!p) {
      error = "unknown transport " + std::string(*t);
      return false;
    }
    // RFC 3261 §26.2.2: a sips URI is reached over TLS only.
    if (uri.scheme == core::Scheme::Sips && !core::is_secure(*p)) {
      error = "sips URI with a non-TLS transport";
      return false;
    }
    out.protocol = *p;
  }
  std::string_view host = uri.host;
  if (auto maddr = uri.param("maddr")) host = *maddr;
  uint16_t port = uri.port ? uri.port : core::default_port(out.protocol);
  if (core::iequals(host, "localhost")) host = "127.0.0.1";
  auto ep = core::Endpoint::parse(host, port);
  if (!ep) return false;
  out.endpoint = *ep;
  return true;
}

int64_t retry_after_ms(std::string_view value) {
  size_t i = 0;
  while (i < value.size() && core::is_ws(value[i])) ++i;
  int64_t s = 0;
  size_t digits = 0;
  for (; i < value.size() && core::is_digit(value[i]); ++i, ++digits) {
    if (s < 100000000) s = s * 10 + (value[i] - '0');  // beyond ~3 years: saturate
  }
  return digits == 0 ? -1 : s * 1000;
}

void NumericResolver::resolve(const core::Uri& uri, std::function<void(ServerList)> done) {
  ServerList list;
  core::Peer peer;
  if (numeric_next_hop(uri, peer, list.error)) {
    list.servers.push_back(peer);
  } else if (list.error.empty()) {
    list.error = "cannot resolve " + std::string(uri.host) + " (no DNS resolver)";
  }
  done(std::move(list));
}

}  // namespace sb::transport
