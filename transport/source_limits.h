// Flood protection per source address (config "security", docs/security.md): trusted
// networks, a token bucket per source IP with a block after sustained excess, and a cap on
// the stream connections one source holds. One instance per worker, used only on its thread
// (no locks): SO_REUSEPORT spreads sources over the workers by their 4-tuple, so the limits
// are per worker.
//
// The rate table has a fixed capacity chosen by the config: a fixed slot array, an
// open-addressing index (linear probing, O(1) lookup, no allocation per message or per new
// source) and an LRU list through the slots; a new source beyond the capacity evicts the one
// heard from least recently. Time is passed in (milliseconds), so tests use a fake clock.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/address.h"
#include "core/cidr.h"

namespace sb::transport {

struct SourceLimitSettings {
  // Exempt from every limit here (and `req.source.trusted` in scripts).
  core::CidrSet trusted = core::CidrSet::loopback();
  bool rate_limit = true;
  uint32_t rate_per_s = 100;   // messages per second a source may send on average
  uint32_t burst = 200;        // messages a source may send at once (bucket size)
  // A source that had this many messages dropped since its bucket was last full is blocked
  // (every message dropped) for block_s seconds. 0 = never block.
  uint32_t block_after = 1000;
  uint32_t block_s = 60;
  uint32_t table_size = 65536;  // sources tracked per worker (LRU beyond)
  // Stream connections one untrusted source may hold on one worker; 0 = no limit.
  uint32_t max_connections_per_source = 32;
  bool operator==(const SourceLimitSettings&) const = default;
};

// A fixed-capacity table of token buckets keyed by source IP (SourceLimits passes IPv6
// sources as their /64).
class RateLimiter {
 public:
  enum class Verdict : uint8_t {
    Pass,
    RateLimited,  // over its rate: this message is dropped
    Blocked,      // blocked: dropped without looking at the bucket
    NewlyBlocked, // this message crossed block_after: dropped, and the source is now blocked
  };

  explicit RateLimiter(uint32_t capacity = 65536);
  // Rate, burst and the block rule apply to the next message of every source; a different
  // capacity starts an empty table.
  void configure(uint32_t rate_per_s, uint32_t burst, uint32_t block_after, uint32_t block_s,
                 uint32_t capacity);

  Verdict admit(const core::IpKey& ip, int64_t now_ms);

  size_t size() const { return size_; }
  size_t capacity() const { return slots_.size(); }
  uint64_t evictions() const { return evictions_; }
  // For tests: whether `ip` has an entry (does not touch the LRU order).
  bool tracked(const core::IpKey& ip) const { return find(ip) != kNone; }
  // Whether `ip` is blocked now (no token taken, LRU order unchanged).
  bool blocked(const core::IpKey& ip, int64_t now_ms) const;

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Slot {
    core::IpKey ip;
    int64_t last_ms = 0;
    int64_t blocked_until_ms = 0;
    uint64_t tokens_milli = 0;  // tokens * 1000: integer arithmetic, no drift
    uint32_t over = 0;          // drops since the bucket was last full
    uint32_t prev = kNone, next = kNone;  // LRU list, most recent at head_
  };

  uint32_t find(const core::IpKey& ip) const;  // slot index or kNone
  uint32_t insert(const core::IpKey& ip, int64_t now_ms);
  void index_erase(uint32_t slot);
  void lru_unlink(uint32_t s);
  void lru_push_front(uint32_t s);
  void reset(uint32_t capacity);

  uint64_t rate_ = 100, burst_milli_ = 200000;
  uint32_t block_after_ = 1000;
  int64_t block_ms_ = 60000;

  std::vector<Slot> slots_;
  std::vector<uint32_t> index_;  // power of two, >= 2 * capacity; slot numbers or kNone
  size_t mask_ = 0;
  size_t size_ = 0;
  uint32_t head_ = kNone, tail_ = kNone;
  uint64_t evictions_ = 0;
};

// What the worker asks for each message and connection.
class SourceLimits {
 public:
  enum class Verdict : uint8_t { Pass, RateLimited, Blocked };

  SourceLimits() = default;
  explicit SourceLimits(const SourceLimitSettings& s) { configure(s); }
  void configure(const SourceLimitSettings& s);
  const SourceLimitSettings& settings() const { return settings_; }

  bool trusted(const core::Endpoint& from) const { return settings_.trusted.contains(from); }
  // Sources are limited by IPv4 address or IPv6 /64 (one subscriber's prefix, RFC 6177);
  // trust is decided on the full address.
  // One message from `from`, before it is parsed. `newly_blocked` is set when this message
  // blocked the source (for a log line).
  Verdict on_message(const core::Endpoint& from, int64_t now_ms, bool* newly_blocked = nullptr);

  // Whether an untrusted `from` is blocked now: its new connections are closed at once.
  bool blocked(const core::Endpoint& from, int64_t now_ms) const;

  // A stream connection `id` was accepted from `from`: false when that source already holds
  // max_connections_per_source connections on this worker (close it). Either way it is
  // counted until connection_closed(id).
  bool connection_accepted(uint32_t id, const core::Endpoint& from);
  void connection_closed(uint32_t id);
  uint32_t connections_from(const core::Endpoint& from) const;

  const RateLimiter& limiter() const { return limiter_; }

 private:
  struct IpHash {
    size_t operator()(const core::IpKey& k) const { return k.hash(); }
  };
  SourceLimitSettings settings_;
  RateLimiter limiter_{1};
  std::unordered_map<uint32_t, core::IpKey> conn_source_;
  std::unordered_map<core::IpKey, uint32_t, IpHash> conns_per_ip_;
};

}  // namespace sb::transport
