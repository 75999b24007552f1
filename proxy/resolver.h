// Locating the servers of a next hop (RFC 3263). The proxy core asks for the ordered
// server list of a URI and walks it on failover (503, timeout, transport error); the
// resolver behind the interface may answer at once (IP literals) or later (DNS).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/address.h"
#include "core/uri.h"

namespace sb::proxy {

// The servers for one target, in the order to try them (RFC 3263 §4.4: SRV priority and
// weight, then A/AAAA order). `error` says why the list is empty.
struct ServerList {
  std::vector<core::Peer> servers;
  std::string error;
};

class Resolver {
 public:
  virtual ~Resolver() = default;
  // Resolve the next hop `uri` (its maddr, transport param, port and host, RFC 3263 §4.1-4.2).
  // `done` runs exactly once, possibly before resolve() returns, always on this worker.
  virtual void resolve(const core::Uri& uri, std::function<void(ServerList)> done) = 0;
};

// The part of RFC 3263 that needs no DNS: the transport from the URI (transport param,
// sips → TLS), the port (explicit, or the transport's default), maddr. Fills `out` and
// returns true when the host is an IP literal; false otherwise (a name to look up).
// `transport_known` tells whether the transport was explicit (then NAPTR is skipped).
bool numeric_next_hop(const core::Uri& uri, core::Peer& out, bool& transport_known,
                      std::string& error);

// A resolver for IP literals only (and "localhost"): tests, and the fallback when DNS is off.
class NumericResolver final : public Resolver {
 public:
  void resolve(const core::Uri& uri, std::function<void(ServerList)> done) override;
};

}  // namespace sb::proxy
