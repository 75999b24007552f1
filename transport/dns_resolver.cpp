#include "transport/dns_resolver.h"

#include <algorithm>
#include <random>
#include <utility>

#include "core/log.h"
#include "core/text.h"
#include "transport/dns_cache.h"
#include "transport/dns_cares.h"
#include "transport/tls.h"

namespace sb::transport {

namespace dns {

std::vector<Srv> order_srv(std::vector<Srv> records, const Random& random) {
  std::stable_sort(records.begin(), records.end(),
                   [](const Srv& a, const Srv& b) { return a.priority < b.priority; });
  std::vector<Srv> out;
  out.reserve(records.size());
  size_t i = 0;
  while (i < records.size()) {
    size_t j = i;
    while (j < records.size() && records[j].priority == records[i].priority) ++j;
    std::vector<Srv> weighted, zero;
    for (size_t k = i; k < j; ++k)
      (records[k].weight > 0 ? weighted : zero).push_back(std::move(records[k]));
    // RFC 2782: pick with probability weight / (sum of the weights left), repeat.
    while (!weighted.empty()) {
      uint32_t sum = 0;
      for (const Srv& s : weighted) sum += s.weight;
      uint32_t r = random(sum);  // [0, sum)
      size_t pick = 0;
      uint32_t running = 0;
      for (; pick < weighted.size(); ++pick) {
        running += weighted[pick].weight;
        if (r < running) break;
      }
      if (pick == weighted.size()) pick = weighted.size() - 1;  // a bad Random
      out.push_back(std::move(weighted[pick]));
      weighted.erase(weighted.begin() + static_cast<std::ptrdiff_t>(pick));
    }
    while (!zero.empty()) {
      size_t pick = zero.size() > 1 ? std::min<size_t>(random(uint32_t(zero.size())), zero.size() - 1) : 0;
      out.push_back(std::move(zero[pick]));
      zero.erase(zero.begin() + static_cast<std::ptrdiff_t>(pick));
    }
    i = j;
  }
  return out;
}

std::optional<core::Protocol> naptr_transport(std::string_view service, bool& secure) {
  // RFC 3263 §4.1 and RFC 7118 §5: SIP+D2U, SIP+D2T, SIPS+D2T, SIP+D2W, SIPS+D2W.
  secure = false;
  std::string_view rest;
  if (service.size() > 5 && core::iequals(service.substr(0, 5), "SIPS+")) {
    secure = true;
    rest = service.substr(5);
  } else if (service.size() > 4 && core::iequals(service.substr(0, 4), "SIP+")) {
    rest = service.substr(4);
  } else {
    return std::nullopt;
  }
  if (core::iequals(rest, "D2U")) return secure ? std::nullopt : std::optional(core::Protocol::Udp);
  if (core::iequals(rest, "D2T")) return secure ? core::Protocol::Tls : core::Protocol::Tcp;
  if (core::iequals(rest, "D2W")) return secure ? core::Protocol::Wss : core::Protocol::Ws;
  return std::nullopt;  // D2S (SCTP) and unknown ones
}

std::vector<Naptr> usable_naptr(std::vector<Naptr> records, bool sips,
                                const std::vector<core::Protocol>& transports) {
  std::vector<Naptr> out;
  for (auto& n : records) {
    bool secure = false;
    auto proto = naptr_transport(n.service, secure);
    if (!proto || !core::iequals(n.flags, "s") || n.replacement.empty() || n.replacement == ".")
      continue;
    if (sips && !secure) continue;  // §4.1: a SIPS URI uses SIPS+ services only
    if (std::find(transports.begin(), transports.end(), *proto) == transports.end()) continue;
    out.push_back(std::move(n));
  }
  std::stable_sort(out.begin(), out.end(), [](const Naptr& a, const Naptr& b) {
    return a.order != b.order ? a.order < b.order : a.preference < b.preference;
  });
  return out;
}

}  // namespace dns

namespace {

using dns::Answer;
using dns::Status;
using dns::Type;

// The SRV owner name of a transport (RFC 3263 §4.1-4.2).
std::string srv_name(core::Protocol p, const std::string& host) {
  switch (p) {
    case core::Protocol::Udp: return "_sip._udp." + host;
    case core::Protocol::Tcp: return "_sip._tcp." + host;
    case core::Protocol::Tls: return "_sips._tcp." + host;
    case core::Protocol::Ws: return "_sip._ws." + host;
    case core::Protocol::Wss: return "_sips._ws." + host;
  }
  return host;
}

bool has(const std::vector<core::Protocol>& v, core::Protocol p) {
  return std::find(v.begin(), v.end(), p) != v.end();
}

// `addresses` as servers reached over `p` on `port`, appended to `out`.
void append_servers(std::vector<core::Peer>& out, const std::vector<core::Endpoint>& addresses,
                    core::Protocol p, uint16_t port) {
  for (core::Endpoint ep : addresses) {
    ep.set_port(port);
    core::Peer peer;
    peer.protocol = p;
    peer.endpoint = ep;
    out.push_back(peer);
  }
}

// The addresses of one name (A and/or AAAA), or why there are none.
struct Addresses {
  std::vector<core::Endpoint> list;
  bool no_such_name = false;
  std::string error;
};

}  // namespace

struct DnsResolver::Lookup : std::enable_shared_from_this<DnsResolver::Lookup> {
  DnsResolver* r = nullptr;
  std::shared_ptr<bool> alive;
  std::string host;  // the name to locate (maddr or host), lower case
  bool sips = false;
  std::function<void(ServerList)> done;
  std::vector<dns::Naptr> naptr;  // usable records, in order
  size_t next_naptr = 0;
  bool no_such_name = false;      // the host itself does not exist

  bool live() const { return *alive; }

  void ask(const std::string& name, Type t, std::function<void(Answer)> cb) {
    auto self = shared_from_this();
    r->dns_.query(name, t, [self, cb = std::move(cb)](Answer a) {
      if (self->live()) cb(std::move(a));
    });
  }

  // A and AAAA of `name` in parallel; the families we have, the preferred one first.
  void addresses(const std::string& name, std::function<void(Addresses)> cb) {
    struct State {
      int pending = 0;
      Answer v4, v6;
      std::function<void(Addresses)> cb;
      std::string name;
      bool prefer_v6 = false;
    };
    auto st = std::make_shared<State>();
    st->cb = std::move(cb);
    st->name = name;
    st->prefer_v6 = r->settings_.prefer_ipv6;
    const bool v4 = r->settings_.ipv4, v6 = r->settings_.ipv6;
    st->pending = int(v4) + int(v6);
    if (st->pending == 0) {
      Addresses out;
      out.error = "no address family to look up " + name + " for";
      st->cb(std::move(out));
      return;
    }
    auto finish = [st] {
      if (--st->pending > 0) return;
      Addresses out;
      const Answer& first = st->prefer_v6 ? st->v6 : st->v4;
      const Answer& second = st->prefer_v6 ? st->v4 : st->v6;
      out.list = first.addresses;
      out.list.insert(out.list.end(), second.addresses.begin(), second.addresses.end());
      if (out.list.empty()) {
        out.no_such_name = st->v4.status == Status::NoSuchName || st->v6.status == Status::NoSuchName;
        const Answer& failed = st->v4.status == Status::Failed ? st->v4 : st->v6;
        if (out.no_such_name)
          out.error = st->name + ": no such domain (NXDOMAIN)";
        else if (failed.status == Status::Failed && !failed.error.empty())
          out.error = "address lookup of " + st->name + " failed: " + failed.error;
        else
          out.error = st->name + ": no A/AAAA records";
      }
      st->cb(std::move(out));
    };
    // Unasked families count as empty, not failed.
    st->v4.status = st->v6.status = Status::Ok;
    if (v4)
      ask(name, Type::A, [st, finish](Answer a) {
        st->v4 = std::move(a);
        finish();
      });
    if (v6)
      ask(name, Type::Aaaa, [st, finish](Answer a) {
        st->v6 = std::move(a);
        finish();
      });
  }

  // The servers of an SRV RRset for `p`: records in RFC 2782 order, each target's
  // addresses in order, the record's port.
  void srv_servers(core::Protocol p, std::vector<dns::Srv> records,
                   std::function<void(std::vector<core::Peer>, std::string)> cb) {
    std::vector<dns::Srv> ordered = dns::order_srv(std::move(records), r->random_);
    // RFC 2782: a single record with target "." says the service is not available here.
    ordered.erase(std::remove_if(ordered.begin(), ordered.end(),
                                 [](const dns::Srv& s) { return s.target == "."; }),
                  ordered.end());
    if (ordered.empty()) {
      cb({}, "the SRV records of " + host + " say the service is not available");
      return;
    }
    struct State {
      size_t pending;
      std::vector<dns::Srv> srv;
      std::vector<Addresses> found;
      std::function<void(std::vector<core::Peer>, std::string)> cb;
      core::Protocol p;
    };
    auto st = std::make_shared<State>();
    st->pending = ordered.size();
    st->found.resize(ordered.size());
    st->srv = std::move(ordered);
    st->cb = std::move(cb);
    st->p = p;
    for (size_t i = 0; i < st->srv.size(); ++i) {
      addresses(st->srv[i].target, [st, i](Addresses a) {
        st->found[i] = std::move(a);
        if (--st->pending > 0) return;
        std::vector<core::Peer> out;
        std::string error;
        for (size_t k = 0; k < st->srv.size(); ++k) {
          append_servers(out, st->found[k].list, st->p, st->srv[k].port);
          if (error.empty()) error = st->found[k].error;
        }
        st->cb(std::move(out), std::move(error));
      });
    }
  }

  void finish(std::vector<core::Peer> servers, std::string error) {
    if (!done) return;
    ServerList list;
    // The same server twice (two SRV names for one host) is tried once.
    for (const core::Peer& p : servers) {
      bool dup = false;
      for (const core::Peer& q : list.servers)
        if (q.protocol == p.protocol && q.endpoint == p.endpoint) dup = true;
      if (!dup) list.servers.push_back(p);
      // RFC 5922 §4: a TLS server is verified against the domain we looked up.
      if (!dup && p.protocol == core::Protocol::Tls) note_tls_peer_name(p.endpoint, host);
    }
    // Greylisted servers are left out, unless that would leave none (then try them all).
    std::vector<core::Peer> healthy;
    for (const core::Peer& p : list.servers)
      if (!r->greylisted(p)) healthy.push_back(p);
    if (!healthy.empty()) list.servers = std::move(healthy);
    if (list.servers.empty()) {
      list.error = error.empty() ? "no servers found for " + host : std::move(error);
      list.no_such_name = no_such_name;
    }
    auto cb = std::move(done);
    done = nullptr;
    cb(std::move(list));
  }

  void fail(std::string error) { finish({}, std::move(error)); }

  // §4.2 with a known port: A/AAAA only.
  void by_address(core::Protocol p, uint16_t with_port) {
    auto self = shared_from_this();
    addresses(host, [self, p, with_port](Addresses a) {
      std::vector<core::Peer> out;
      append_servers(out, a.list, p, with_port);
      self->no_such_name = a.no_such_name;
      self->finish(std::move(out), std::move(a.error));
    });
  }

  // §4.2 with a known transport: its SRV, else A/AAAA on the transport's default port.
  void by_transport(core::Protocol p) {
    auto self = shared_from_this();
    ask(srv_name(p, host), Type::Srv, [self, p](Answer a) {
      if (a.srv.empty()) {
        self->by_address(p, core::default_port(p));
        return;
      }
      self->srv_servers(p, std::move(a.srv), [self](std::vector<core::Peer> s, std::string e) {
        self->finish(std::move(s), std::move(e));
      });
    });
  }

  // §4.1: NAPTR first.
  void by_naptr() {
    auto self = shared_from_this();
    ask(host, Type::Naptr, [self](Answer a) {
      // RFC 8020: no such name means nothing below it either. A server that does not do
      // NAPTR (NOTIMP, SERVFAIL) just moves us on to SRV; one that does not answer at all
      // would not answer those either: fail now rather than time out three times over.
      if (a.status == Status::NoSuchName) {
        self->no_such_name = true;
        self->fail(self->host + ": no such domain (NXDOMAIN)");
        return;
      }
      if (a.status == Status::Failed && a.timed_out) {
        self->fail("DNS lookup of " + self->host + " failed: timeout");
        return;
      }
      self->naptr = dns::usable_naptr(std::move(a.naptr), self->sips, self->r->settings_.transports);
      self->next_naptr = 0;
      self->try_naptr();
    });
  }

  // The NAPTR records in order: the first whose SRV gives servers wins (§4.1: "if no
  // SRV records are found, the next NAPTR is tried"); none → SRV per transport.
  void try_naptr() {
    if (next_naptr >= naptr.size()) {
      by_srv();
      return;
    }
    const dns::Naptr& n = naptr[next_naptr++];
    bool secure = false;
    core::Protocol p = *dns::naptr_transport(n.service, secure);
    auto self = shared_from_this();
    ask(n.replacement, Type::Srv, [self, p](Answer a) {
      if (a.srv.empty()) {
        self->try_naptr();
        return;
      }
      self->srv_servers(p, std::move(a.srv), [self](std::vector<core::Peer> s, std::string) {
        if (s.empty())
          self->try_naptr();
        else
          self->finish(std::move(s), {});
      });
    });
  }

  // §4.1 without NAPTR: an SRV query per transport we support (in parallel); the servers
  // of each transport that has some, UDP before TCP; none → A/AAAA.
  void by_srv() {
    std::vector<core::Protocol> protos;
    const auto& have = r->settings_.transports;
    if (sips) {
      if (has(have, core::Protocol::Tls)) protos.push_back(core::Protocol::Tls);
    } else {
      for (core::Protocol p : {core::Protocol::Udp, core::Protocol::Tcp})
        if (has(have, p)) protos.push_back(p);
    }
    if (protos.empty()) {
      fail("no transport to reach " + host + " with");
      return;
    }
    struct State {
      size_t pending;
      std::vector<core::Protocol> protos;
      std::vector<std::vector<core::Peer>> found;
      std::string error;
    };
    auto st = std::make_shared<State>();
    st->pending = protos.size();
    st->found.resize(protos.size());
    st->protos = protos;
    auto self = shared_from_this();
    auto one_done = [self, st] {
      if (--st->pending > 0) return;
      std::vector<core::Peer> all;
      for (auto& f : st->found) all.insert(all.end(), f.begin(), f.end());
      if (!all.empty()) {
        self->finish(std::move(all), {});
        return;
      }
      if (!st->error.empty()) {
        self->fail(std::move(st->error));
        return;
      }
      // §4.2: no SRV at all: A/AAAA, UDP for sip (TCP when we have no UDP), TLS for sips.
      core::Protocol p = self->sips ? core::Protocol::Tls : st->protos.front();
      self->by_address(p, core::default_port(p));
    };
    for (size_t i = 0; i < protos.size(); ++i) {
      core::Protocol p = protos[i];
      ask(srv_name(p, host), Type::Srv, [self, st, i, p, one_done](Answer a) {
        if (a.srv.empty()) {
          one_done();
          return;
        }
        self->srv_servers(p, std::move(a.srv), [st, i, one_done](std::vector<core::Peer> s, std::string e) {
          if (s.empty() && st->error.empty()) st->error = std::move(e);
          st->found[i] = std::move(s);
          one_done();
        });
      });
    }
  }
};

DnsResolver::DnsResolver(dns::Querier& dns, const core::Clock& clock, DnsSettings settings,
                         dns::Random random)
    : dns_(dns), clock_(clock), settings_(std::move(settings)), random_(std::move(random)),
      alive_(std::make_shared<bool>(true)) {
  if (!random_) {
    auto rng = std::make_shared<std::mt19937>(std::random_device{}());
    random_ = [rng](uint32_t bound) {
      return std::uniform_int_distribution<uint32_t>(0, bound - 1)(*rng);
    };
  }
}

DnsResolver::~DnsResolver() { *alive_ = false; }

void DnsResolver::resolve(const core::Uri& uri, std::function<void(ServerList)> done) {
  ServerList list;
  core::Peer peer;  // its protocol: the explicit or implied transport
  if (numeric_next_hop(uri, peer, list.error)) {
    list.servers.push_back(peer);
    done(std::move(list));
    return;
  }
  if (!list.error.empty()) {
    done(std::move(list));
    return;
  }
  const core::Protocol proto = peer.protocol;
  const bool transport_known = uri.has_param("transport");
  auto l = std::make_shared<Lookup>();
  l->r = this;
  l->alive = alive_;
  l->host = dns::normalize_name(uri.param("maddr").value_or(uri.host));
  l->sips = uri.scheme == core::Scheme::Sips;
  l->done = std::move(done);
  if (l->host.empty()) {
    l->fail("no host to resolve");
    return;
  }
  // sips (or transport=tls) needs TLS; say so rather than trying what cannot work.
  if ((l->sips || transport_known) && !has(settings_.transports, proto)) {
    l->fail(std::string(core::protocol_name(proto)) + " target " + l->host +
            (core::is_secure(proto) ? ": no TLS listener (config listen, transport \"tls\")"
                                    : ": no listener for that transport"));
    return;
  }
  if (uri.port) {
    l->by_address(proto, uri.port);  // §4.1: explicit port → A/AAAA (UDP for sip)
  } else if (transport_known) {
    l->by_transport(proto);
  } else {
    l->by_naptr();
  }
}

std::string DnsResolver::greylist_key(const core::Peer& p) const {
  std::string k(core::protocol_name(p.protocol));
  k += ' ';
  k += p.endpoint.to_string();
  return k;
}

bool DnsResolver::greylisted(const core::Peer& server) const {
  if (greylist_.empty()) return false;
  auto it = greylist_.find(greylist_key(server));
  return it != greylist_.end() && clock_.now_ms() < it->second;
}

void DnsResolver::report(const core::Peer& server, ServerFault fault, int64_t retry_after_ms) {
  int64_t ms = 0;
  switch (fault) {
    case ServerFault::Timeout:
    case ServerFault::TransportError:
      ms = int64_t(settings_.greylist_s) * 1000;
      break;
    case ServerFault::Unavailable:
      // RFC 3261 §21.5.4: not again for the Retry-After duration, if present (capped at a day).
      ms = std::min<int64_t>(retry_after_ms, 86400000);
      break;
  }
  if (ms <= 0) return;
  int64_t now = clock_.now_ms();
  if (greylist_.size() >= 4096) {
    for (auto it = greylist_.begin(); it != greylist_.end();)
      it = it->second <= now ? greylist_.erase(it) : std::next(it);
    if (greylist_.size() >= 4096) return;  // bounded; a flood of failures keeps the oldest
  }
  int64_t& until = greylist_[greylist_key(server)];
  until = std::max(until, now + ms);
  SB_LOG_RL(Info, {}, "server %s %s: not used for %lld ms", greylist_key(server).c_str(),
            fault == ServerFault::Timeout ? "timed out" : fault == ServerFault::TransportError
                                                             ? "unreachable" : "answered 503",
            static_cast<long long>(ms));
}

// ---- one worker's production stack: c-ares, the cache, RFC 3263 ----

namespace {

class CaresResolver final : public Resolver {
 public:
  CaresResolver(std::unique_ptr<dns::CaresChannel> channel, const core::Clock& clock,
                const DnsSettings& s)
      : channel_(std::move(channel)),
        cache_(*channel_, clock, dns::CacheSettings{s.max_ttl_s, s.negative_ttl_s}),
        rfc3263_(cache_, clock, s) {}

  void resolve(const core::Uri& uri, std::function<void(ServerList)> done) override {
    rfc3263_.resolve(uri, std::move(done));
  }
  void report(const core::Peer& server, ServerFault fault, int64_t retry_after_ms) override {
    rfc3263_.report(server, fault, retry_after_ms);
  }
  void set_after_answers(std::function<void()> hook) override {
    channel_->set_after_process(std::move(hook));
  }
  void stop() override { channel_->close(); }

 private:
  // Destroyed last: closing it drops the callbacks that point into the cache.
  std::unique_ptr<dns::CaresChannel> channel_;
  dns::Cache cache_;
  DnsResolver rfc3263_;
};

}  // namespace

std::unique_ptr<Resolver> make_dns_resolver(uv_loop_t* loop, const core::Clock& clock,
                                            const DnsSettings& settings, std::string& error) {
  dns::ChannelSettings cs;
  for (const auto& s : settings.servers) {
    if (!cs.servers.empty()) cs.servers += ',';
    cs.servers += s;
  }
  cs.timeout_ms = settings.timeout_ms;
  cs.tries = settings.tries;
  auto channel = dns::CaresChannel::create(loop, cs, error);
  if (!channel) return nullptr;
  return std::make_unique<CaresResolver>(std::move(channel), clock, settings);
}

}  // namespace sb::transport
