// Locating the servers of a next hop (RFC 3263). The proxy core asks for the ordered
// server list of a URI and walks it on failover (503, timeout, transport error), and tells
// the resolver which servers failed so the next lists skip them for a while; the resolver
// behind the interface may answer at once (IP literals, cached names) or later (DNS).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/address.h"
#include "core/uri.h"

namespace sb::transport {

// The servers for one target, in the order to try them (RFC 3263 §4.4: SRV priority and
// weight, then A/AAAA order). `error` says why the list is empty.
struct ServerList {
  std::vector<core::Peer> servers;
  std::string error;
  // Empty because the host does not exist (NXDOMAIN): a definitive answer, so the proxy
  // fails the branch with 404 rather than 503 (docs/configuration.md "dns").
  bool no_such_name = false;
};

// Why a server of a list failed (RFC 3263 §4.3).
enum class ServerFault : uint8_t {
  Timeout,         // no answer: Timer B / F fired
  TransportError,  // connection refused or reset, send failed (RFC 3261 §16.9 treats it as 503)
  Unavailable,     // it answered 503 (RFC 3261 §21.5.4; skipped for its Retry-After, if any)
};

class Resolver {
 public:
  virtual ~Resolver() = default;
  // Resolve the next hop `uri` (its maddr, transport param, port and host, RFC 3263 §4.1-4.2).
  // `done` runs exactly once, possibly before resolve() returns, always on this worker
  // (unless the worker stops first: see stop()).
  // `uri` views a buffer of the caller's that need live only during this call: a resolver
  // answering later copies what it needs first.
  virtual void resolve(const core::Uri& uri, std::function<void(ServerList)> done) = 0;
  // A server from one of our lists failed. `retry_after_ms` is the 503's Retry-After in
  // milliseconds (< 0 when it had none). The resolver may leave the server out of the lists
  // it gives for a while (greylist); a no-op for resolvers without DNS.
  virtual void report(const core::Peer& server, ServerFault fault, int64_t retry_after_ms) {
    (void)server, (void)fault, (void)retry_after_ms;
  }
  // `hook` runs on the worker after answers were delivered from the event loop (not from
  // inside resolve()), so the owner can re-arm the timers the callbacks may have changed.
  virtual void set_after_answers(std::function<void()> hook) { (void)hook; }
  // The worker is stopping: close the resolver's handles on the worker's loop. Resolutions
  // still pending are dropped (their `done` never runs); later ones fail at once.
  virtual void stop() {}
};

// The part of RFC 3263 that needs no DNS: the transport from the URI (transport param,
// sips → TLS), the port (explicit, or the transport's default), maddr. Fills `out` and
// returns true when the host is an IP literal; false otherwise (a name to look up, or
// `error` set when the URI cannot be used at all). `out.protocol` is set unless `error` is.
bool numeric_next_hop(const core::Uri& uri, core::Peer& out, std::string& error);

// The delta-seconds of a Retry-After header value (RFC 3261 §20.33: "120 (comment);
// duration=3600") in milliseconds; -1 when it does not start with a number.
int64_t retry_after_ms(std::string_view value);

// A resolver for IP literals only (and "localhost"): tests, and the fallback when DNS is off.
class NumericResolver final : public Resolver {
 public:
  void resolve(const core::Uri& uri, std::function<void(ServerList)> done) override;
};

}  // namespace sb::transport
