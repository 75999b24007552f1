// Locating SIP servers with DNS (RFC 3263 §4): numeric hosts as they are; an explicit port
// → A/AAAA; an explicit transport → SRV, then A/AAAA; otherwise NAPTR (the services of the
// transports we have), then SRV (_sip._udp, _sip._tcp, _sips._tcp), then A/AAAA. SRV records
// are ordered by priority and, within one, by weighted random selection (RFC 2782); the
// addresses of a name keep their record order, IPv4 or IPv6 first by config. Servers that
// failed are left out for a while (the greylist), unless every server of a list is.
//
// DnsResolver is the procedure over any Querier (a fake in tests); make_dns_resolver()
// builds the production stack for one worker: c-ares on the worker's loop, the cache
// (dns_cache.h) in front of it, this procedure on top.
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/address.h"
#include "core/clock.h"
#include "transport/dns_message.h"
#include "transport/resolver.h"

namespace sb::transport {

// Config "dns" (docs/configuration.md) plus what the proxy can send on.
struct DnsSettings {
  std::vector<std::string> servers;  // "IP:port" ("[v6]:port"); empty = /etc/resolv.conf
  int timeout_ms = 2000;             // per query try
  int tries = 2;
  uint32_t max_ttl_s = 3600;
  uint32_t negative_ttl_s = 30;
  uint32_t greylist_s = 30;
  bool prefer_ipv6 = false;
  // The transports and address families we have listeners for: NAPTR services and SRV
  // queries keep to these transports; A / AAAA are asked only for these families.
  std::vector<core::Protocol> transports = {core::Protocol::Udp, core::Protocol::Tcp};
  bool ipv4 = true;
  bool ipv6 = true;
};

namespace dns {

// Uniform random integer in [0, bound), bound > 0.
using Random = std::function<uint32_t(uint32_t bound)>;

// RFC 2782 order: priority ascending; within a priority, weighted random selection (each
// pick proportional to weight among those left). Records of weight 0 come after the
// weighted ones of their priority, in random order (RFC 2782 gives them "a very small
// chance"; we make it the last one). The target "." is kept (the caller reads it).
std::vector<Srv> order_srv(std::vector<Srv> records, const Random& random);

// The transport of a NAPTR service field ("SIP+D2U" → UDP, "SIPS+D2T" → TLS, ...); nullopt
// for services that are not SIP or that we cannot use (SCTP). `secure` tells SIPS+.
std::optional<core::Protocol> naptr_transport(std::string_view service, bool& secure);

// The NAPTR records usable for a URI (RFC 3263 §4.1): flag "s", a SIP service over one of
// `transports` (a sips URI: SIPS+ services only), a replacement; sorted by order, then
// preference.
std::vector<Naptr> usable_naptr(std::vector<Naptr> records, bool sips,
                                const std::vector<core::Protocol>& transports);

}  // namespace dns

class DnsResolver final : public Resolver {
 public:
  DnsResolver(dns::Querier& dns, const core::Clock& clock, DnsSettings settings,
              dns::Random random = {});
  ~DnsResolver() override;
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  void resolve(const core::Uri& uri, std::function<void(ServerList)> done) override;
  // Timeout / transport error: greylisted for dns.greylist_s. 503: for its Retry-After
  // (RFC 3261 §21.5.4); a 503 without one only moves the branch on.
  void report(const core::Peer& server, ServerFault fault, int64_t retry_after_ms) override;

  bool greylisted(const core::Peer& server) const;
  const DnsSettings& settings() const { return settings_; }

 private:
  struct Lookup;  // one resolution in progress (dns_resolver.cpp)
  std::string greylist_key(const core::Peer& p) const;

  dns::Querier& dns_;
  const core::Clock& clock_;
  DnsSettings settings_;
  dns::Random random_;
  std::unordered_map<std::string, int64_t> greylist_;  // "UDP 192.0.2.1:5060" → until (ms)
  std::shared_ptr<bool> alive_;                          // lookups outliving us do nothing
};

// One worker's resolver: a c-ares channel on `loop` (its sockets watched with uv_poll, its
// timeouts on a uv timer), the cache, RFC 3263. Create and use it on the loop's thread;
// stop() it from the worker's on_stop. nullptr and `error` set when c-ares cannot start.
std::unique_ptr<Resolver> make_dns_resolver(uv_loop_t* loop, const core::Clock& clock,
                                            const DnsSettings& settings, std::string& error);

}  // namespace sb::transport
