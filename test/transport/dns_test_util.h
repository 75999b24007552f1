// Building DNS messages for the resolver tests (RFC 1035 wire format, no compression), and
// a fake Querier that holds queries until the test answers them.
#pragma once
#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/address.h"
#include "transport/dns_message.h"

namespace sb::transport::dns::test {

using Bytes = std::vector<uint8_t>;

inline void put16(Bytes& b, uint16_t v) {
  b.push_back(uint8_t(v >> 8));
  b.push_back(uint8_t(v));
}
inline void put32(Bytes& b, uint32_t v) {
  put16(b, uint16_t(v >> 16));
  put16(b, uint16_t(v));
}
inline void put_name(Bytes& b, std::string_view name) {
  while (!name.empty()) {
    size_t dot = name.find('.');
    std::string_view label = name.substr(0, dot);
    b.push_back(uint8_t(label.size()));
    b.insert(b.end(), label.begin(), label.end());
    if (dot == std::string_view::npos) break;
    name.remove_prefix(dot + 1);
  }
  b.push_back(0);
}
inline void put_string(Bytes& b, std::string_view s) {
  b.push_back(uint8_t(s.size()));
  b.insert(b.end(), s.begin(), s.end());
}

struct Rr {
  std::string name;
  Type type;
  uint32_t ttl;
  Bytes rdata;
};

inline Rr a_rr(std::string name, std::string_view ip, uint32_t ttl = 300) {
  auto ep = core::Endpoint::parse(ip, 0);
  REQUIRE(ep.has_value());
  Bytes rd;
  if (ep->family() == AF_INET) {
    auto* sin = reinterpret_cast<const sockaddr_in*>(ep->sa());
    auto* p = reinterpret_cast<const uint8_t*>(&sin->sin_addr);
    rd.assign(p, p + 4);
    return {std::move(name), Type::A, ttl, rd};
  }
  auto* sin6 = reinterpret_cast<const sockaddr_in6*>(ep->sa());
  auto* p = reinterpret_cast<const uint8_t*>(&sin6->sin6_addr);
  rd.assign(p, p + 16);
  return {std::move(name), Type::Aaaa, ttl, rd};
}
inline Rr srv_rr(std::string name, uint16_t prio, uint16_t weight, uint16_t port,
                 std::string_view target, uint32_t ttl = 300) {
  Bytes rd;
  put16(rd, prio);
  put16(rd, weight);
  put16(rd, port);
  put_name(rd, target == "." ? "" : target);
  return {std::move(name), Type::Srv, ttl, rd};
}
inline Rr naptr_rr(std::string name, uint16_t order, uint16_t pref, std::string_view flags,
                   std::string_view service, std::string_view replacement, uint32_t ttl = 300) {
  Bytes rd;
  put16(rd, order);
  put16(rd, pref);
  put_string(rd, flags);
  put_string(rd, service);
  put_string(rd, "");
  put_name(rd, replacement);
  return {std::move(name), Type::Naptr, ttl, rd};
}
inline Rr cname_rr(std::string name, std::string_view target, uint32_t ttl = 300) {
  Bytes rd;
  put_name(rd, target);
  return {std::move(name), Type::Cname, ttl, rd};
}
inline Rr soa_rr(std::string name, uint32_t ttl, uint32_t minimum) {
  Bytes rd;
  put_name(rd, "ns." + name);
  put_name(rd, "hostmaster." + name);
  for (uint32_t v : {1u, 3600u, 600u, 86400u}) put32(rd, v);
  put32(rd, minimum);
  return {std::move(name), Type::Soa, ttl, rd};
}

// A response to (qname, qtype) with id `id`, rcode, answers and authority records.
inline Bytes response(uint16_t id, std::string_view qname, Type qtype, int rcode,
                      const std::vector<Rr>& answers, const std::vector<Rr>& authority = {}) {
  Bytes b;
  put16(b, id);
  put16(b, uint16_t(0x8180 | rcode));  // QR, RD, RA
  put16(b, 1);
  put16(b, uint16_t(answers.size()));
  put16(b, uint16_t(authority.size()));
  put16(b, 0);
  put_name(b, qname);
  put16(b, uint16_t(qtype));
  put16(b, 1);
  for (const auto* section : {&answers, &authority})
    for (const Rr& r : *section) {
      put_name(b, r.name);
      put16(b, uint16_t(r.type));
      put16(b, 1);
      put32(b, r.ttl);
      put16(b, uint16_t(r.rdata.size()));
      b.insert(b.end(), r.rdata.begin(), r.rdata.end());
    }
  return b;
}

inline Answer answer_of(std::string_view qname, Type qtype, int rcode, const std::vector<Rr>& answers,
                        const std::vector<Rr>& authority = {}) {
  Bytes b = response(1, qname, qtype, rcode, answers, authority);
  return parse_answer(b.data(), b.size(), qtype);
}

// Holds each query until the test answers it (or answers at once from `zone`).
class FakeDns final : public Querier {
 public:
  struct Pending {
    std::string name;
    Type type;
    std::function<void(Answer)> done;
  };

  void query(const std::string& name, Type type, std::function<void(Answer)> done) override {
    asked.push_back(std::string(type_name(type)) + " " + name);
    if (auto it = zone.find(asked.back()); it != zone.end() && immediate) {
      done(it->second);
      return;
    }
    pending.push_back({name, type, std::move(done)});
  }

  // Answer every pending query from `zone` (absent names: NXDOMAIN), including the queries
  // these answers cause, until none is left.
  void answer_all() {
    while (!pending.empty()) {
      Pending p = std::move(pending.front());
      pending.erase(pending.begin());
      auto it = zone.find(std::string(type_name(p.type)) + " " + p.name);
      Answer a;
      if (it != zone.end()) {
        a = it->second;
      } else {
        a.status = Status::NoSuchName;
      }
      p.done(std::move(a));
    }
  }
  int count(std::string_view key) const {
    int n = 0;
    for (const auto& k : asked)
      if (k == key) ++n;
    return n;
  }

  std::map<std::string, Answer> zone;  // "SRV _sip._udp.example.com" → answer
  bool immediate = false;              // answer from the zone inside query()
  std::vector<std::string> asked;
  std::vector<Pending> pending;
};

}  // namespace sb::transport::dns::test
