// The DNS cache in front of a worker's c-ares channel (one per worker, like the channel:
// shared-nothing, no lock; each worker learns a name once per TTL). It keeps answers for
// their TTL (capped by config dns.max_ttl_s), negative answers (NXDOMAIN, no data) for the
// SOA's negative TTL capped by dns.negative_ttl_s (RFC 2308), and coalesces queries in
// flight: a thousand calls to one new domain wait on one query. Failures (timeout,
// SERVFAIL) are not cached. Private to transport/.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "transport/dns_message.h"

namespace sb::transport::dns {

struct CacheSettings {
  uint32_t max_ttl_s = 3600;
  uint32_t negative_ttl_s = 30;
  size_t max_entries = 100000;  // beyond it (after dropping expired entries) answers are not kept
};

struct CacheStats {
  uint64_t hits = 0;       // answered from the cache
  uint64_t coalesced = 0;  // joined a query already in flight
  uint64_t queries = 0;    // sent upstream
};

class Cache final : public Querier {
 public:
  Cache(Querier& upstream, const core::Clock& clock, CacheSettings settings);
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;

  // A cached answer is delivered before query() returns.
  void query(const std::string& name, Type type, std::function<void(Answer)> done) override;

  const CacheStats& stats() const { return stats_; }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    bool pending = true;
    int64_t expires_ms = 0;
    Answer answer;
    std::vector<std::function<void(Answer)>> waiters;
  };
  void answered(const std::string& key, Answer a);
  void sweep(int64_t now);

  Querier& upstream_;
  const core::Clock& clock_;
  CacheSettings settings_;
  std::unordered_map<std::string, Entry> entries_;  // "TYPE name"
  CacheStats stats_;
};

}  // namespace sb::transport::dns
