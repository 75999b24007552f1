#include "transport/source_limits.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace sb::transport;
using sb::core::Endpoint;
using sb::core::IpKey;
using V = RateLimiter::Verdict;

namespace {
IpKey ip(const std::string& s) { return *IpKey::parse(s); }
Endpoint ep(const char* s, uint16_t port = 5060) { return *Endpoint::parse(s, port); }
}  // namespace

TEST_CASE("rate limiter: a burst passes, then the rate; refills with time") {
  RateLimiter r(16);
  r.configure(/*rate*/ 10, /*burst*/ 5, /*block_after*/ 0, /*block_s*/ 60, 16);
  IpKey a = ip("192.0.2.1");
  int64_t t = 1000;
  for (int i = 0; i < 5; ++i) CHECK(r.admit(a, t) == V::Pass);
  CHECK(r.admit(a, t) == V::RateLimited);
  CHECK(r.admit(a, t + 99) == V::RateLimited);  // 0.99 token
  CHECK(r.admit(a, t + 100) == V::Pass);       // one token after 100 ms at 10/s
  CHECK(r.admit(a, t + 100) == V::RateLimited);
  // A long pause refills only up to the burst.
  t += 100000;
  for (int i = 0; i < 5; ++i) CHECK(r.admit(a, t) == V::Pass);
  CHECK(r.admit(a, t) == V::RateLimited);
  // Sources have their own buckets.
  CHECK(r.admit(ip("192.0.2.2"), t) == V::Pass);
  CHECK(r.admit(ip("2001:db8::1"), t) == V::Pass);
  CHECK(r.size() == 3);
}

TEST_CASE("rate limiter: sustained excess blocks for block_s, then the source starts afresh") {
  RateLimiter r(16);
  r.configure(10, 5, /*block_after*/ 20, /*block_s*/ 30, 16);
  IpKey a = ip("198.51.100.9");
  int64_t t = 0;
  for (int i = 0; i < 5; ++i) CHECK(r.admit(a, t) == V::Pass);
  for (int i = 0; i < 19; ++i) CHECK(r.admit(a, t) == V::RateLimited);
  CHECK(r.admit(a, t) == V::NewlyBlocked);
  // Blocked: even after the bucket would have refilled.
  CHECK(r.admit(a, t + 1000) == V::Blocked);
  CHECK(r.admit(a, t + 29999) == V::Blocked);
  CHECK(r.admit(a, t + 30000) == V::Pass);
  // Another source is unaffected.
  CHECK(r.admit(ip("198.51.100.10"), t + 1) == V::Pass);
}

TEST_CASE("rate limiter: excess that stops in time (bucket full again) is forgiven") {
  RateLimiter r(16);
  r.configure(10, 5, /*block_after*/ 10, 30, 16);
  IpKey a = ip("203.0.113.5");
  int64_t t = 0;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 5; ++i) CHECK(r.admit(a, t) == V::Pass);
    for (int i = 0; i < 9; ++i) CHECK(r.admit(a, t) == V::RateLimited);  // 9 < 10
    t += 1000;  // 10 tokens: the bucket is full again, the 9 drops are forgotten
  }
  // A source that never lets its bucket fill up is blocked once its drops add up.
  for (int i = 0; i < 5; ++i) CHECK(r.admit(a, t) == V::Pass);
  // Half a token per step: every other message passes, the bucket never fills, so the
  // tenth drop (about the twentieth message) blocks.
  int blocked_at = -1, passed = 0;
  for (int i = 0; i < 40 && blocked_at < 0; ++i) {
    V v = r.admit(a, t);
    if (v == V::NewlyBlocked) blocked_at = i;
    if (v == V::Pass) ++passed;
    t += 50;
  }
  CHECK(blocked_at >= 16);
  CHECK(blocked_at <= 20);
  CHECK(passed >= 8);
  CHECK(r.admit(a, t) == V::Blocked);
}

TEST_CASE("rate limiter: bounded table, least recently heard source evicted") {
  RateLimiter r(4);
  r.configure(1, 1, 0, 60, 4);
  int64_t t = 0;
  for (int i = 1; i <= 4; ++i) CHECK(r.admit(ip("10.0.0." + std::to_string(i)), t) == V::Pass);
  CHECK(r.size() == 4);
  // 10.0.0.1 is heard again (most recent now); 10.0.0.2 is the least recent.
  CHECK(r.admit(ip("10.0.0.1"), t) == V::RateLimited);
  CHECK(r.admit(ip("10.0.0.5"), t) == V::Pass);
  CHECK(r.size() == 4);
  CHECK(r.evictions() == 1);
  CHECK_FALSE(r.tracked(ip("10.0.0.2")));
  CHECK(r.tracked(ip("10.0.0.1")));
  CHECK(r.tracked(ip("10.0.0.3")));
  CHECK(r.tracked(ip("10.0.0.5")));
  // 10.0.0.1 kept its (empty) bucket.
  CHECK(r.admit(ip("10.0.0.1"), t) == V::RateLimited);

  // Many more sources than slots: the table never grows, every lookup still works.
  for (int i = 0; i < 5000; ++i) {
    IpKey k = ip("10." + std::to_string(1 + i / 65536) + "." + std::to_string((i / 256) % 256) + "." +
                 std::to_string(i % 256));
    CHECK(r.admit(k, t) == V::Pass);
    CHECK(r.admit(k, t) == V::RateLimited);
  }
  CHECK(r.size() == 4);
  CHECK(r.capacity() == 4);
}

TEST_CASE("rate limiter: eviction keeps the index consistent under collisions") {
  // A large table with few slots per bucket group exercises backward-shift deletion.
  RateLimiter r(64);
  r.configure(1, 1, 0, 60, 64);
  int64_t t = 0;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 64; ++i) {
      IpKey k = ip("2001:db8::" + std::to_string(round * 64 + i));
      CHECK(r.admit(k, t) == V::Pass);
    }
    // The last 64 inserted are exactly the ones tracked; each is found once.
    for (int i = 0; i < 64; ++i) CHECK(r.tracked(ip("2001:db8::" + std::to_string(round * 64 + i))));
    if (round > 0) CHECK_FALSE(r.tracked(ip("2001:db8::" + std::to_string((round - 1) * 64))));
  }
}

TEST_CASE("source limits: trusted sources are exempt; a new capacity starts empty") {
  SourceLimitSettings s;
  s.rate_per_s = 1;
  s.burst = 1;
  s.block_after = 0;
  s.table_size = 8;
  SourceLimits l(s);
  for (int i = 0; i < 100; ++i) CHECK(l.on_message(ep("127.0.0.1"), 0) == SourceLimits::Verdict::Pass);
  for (int i = 0; i < 100; ++i) CHECK(l.on_message(ep("::1"), 0) == SourceLimits::Verdict::Pass);
  CHECK(l.on_message(ep("192.0.2.1"), 0) == SourceLimits::Verdict::Pass);
  CHECK(l.on_message(ep("192.0.2.1", 5070), 0) == SourceLimits::Verdict::RateLimited);  // per IP
  CHECK(l.trusted(ep("127.0.0.5")));
  CHECK_FALSE(l.trusted(ep("192.0.2.1")));
  CHECK(l.limiter().size() == 1);  // trusted sources take no slot

  // Reload: only 127.0.0.1 trusted; 127.0.0.2 is limited now.
  s.trusted = sb::core::CidrSet({*sb::core::parse_cidr("127.0.0.1")});
  l.configure(s);
  CHECK(l.limiter().size() == 1);  // same capacity: state kept
  CHECK(l.on_message(ep("127.0.0.2"), 0) == SourceLimits::Verdict::Pass);
  CHECK(l.on_message(ep("127.0.0.2"), 0) == SourceLimits::Verdict::RateLimited);
  CHECK(l.on_message(ep("127.0.0.1"), 0) == SourceLimits::Verdict::Pass);
  CHECK(l.on_message(ep("127.0.0.1"), 0) == SourceLimits::Verdict::Pass);

  s.table_size = 16;
  l.configure(s);
  CHECK(l.limiter().size() == 0);

  // Rate limiting off: everything passes.
  s.rate_limit = false;
  l.configure(s);
  for (int i = 0; i < 10; ++i) CHECK(l.on_message(ep("192.0.2.1"), 0) == SourceLimits::Verdict::Pass);
}

TEST_CASE("source limits: IPv6 sources share a bucket per /64") {
  SourceLimitSettings s;
  s.rate_per_s = 1;
  s.burst = 2;
  s.block_after = 0;
  s.max_connections_per_source = 1;
  SourceLimits l(s);
  CHECK(l.on_message(ep("2001:db8:0:1::1"), 0) == SourceLimits::Verdict::Pass);
  CHECK(l.on_message(ep("2001:db8:0:1::2"), 0) == SourceLimits::Verdict::Pass);
  CHECK(l.on_message(ep("2001:db8:0:1:ffff::3"), 0) == SourceLimits::Verdict::RateLimited);
  CHECK(l.on_message(ep("2001:db8:0:2::1"), 0) == SourceLimits::Verdict::Pass);  // another /64
  CHECK(l.limiter().size() == 2);
  CHECK(l.connection_accepted(1, ep("2001:db8:0:1::1")));
  CHECK_FALSE(l.connection_accepted(2, ep("2001:db8:0:1::2")));
  CHECK(l.connections_from(ep("2001:db8:0:1::99")) == 2);
  // IPv4 is per address.
  CHECK(l.connection_accepted(3, ep("192.0.2.1")));
  CHECK(l.connection_accepted(4, ep("192.0.2.2")));
}

TEST_CASE("source limits: blocked verdict and the newly-blocked flag") {
  SourceLimitSettings s;
  s.trusted = {};
  s.rate_per_s = 1;
  s.burst = 1;
  s.block_after = 3;
  s.block_s = 10;
  SourceLimits l(s);
  Endpoint a = ep("127.0.0.1");  // nothing trusted
  CHECK(l.on_message(a, 0) == SourceLimits::Verdict::Pass);
  bool nb = false;
  CHECK(l.on_message(a, 0, &nb) == SourceLimits::Verdict::RateLimited);
  CHECK(l.on_message(a, 0, &nb) == SourceLimits::Verdict::RateLimited);
  CHECK_FALSE(nb);
  CHECK_FALSE(l.blocked(a, 0));
  CHECK(l.on_message(a, 0, &nb) == SourceLimits::Verdict::RateLimited);
  CHECK(nb);
  CHECK(l.blocked(a, 0));
  CHECK(l.blocked(ep("127.0.0.1", 6000), 9999));  // any port of the address
  CHECK_FALSE(l.blocked(ep("127.0.0.2"), 0));
  CHECK(l.on_message(a, 5000, &nb) == SourceLimits::Verdict::Blocked);
  CHECK_FALSE(l.blocked(a, 10000));
  CHECK(l.on_message(a, 10000) == SourceLimits::Verdict::Pass);
}

TEST_CASE("source limits: connections per source are capped and released on close") {
  SourceLimitSettings s;
  s.max_connections_per_source = 2;
  SourceLimits l(s);
  Endpoint a = ep("192.0.2.1", 40000), a2 = ep("192.0.2.1", 40001), a3 = ep("192.0.2.1", 40002);
  CHECK(l.connection_accepted(1, a));
  CHECK(l.connection_accepted(2, a2));
  CHECK_FALSE(l.connection_accepted(3, a3));  // third from the same IP
  CHECK(l.connections_from(a) == 3);          // counted until closed
  CHECK(l.connection_accepted(4, ep("192.0.2.2")));
  l.connection_closed(3);
  CHECK(l.connections_from(a) == 2);
  l.connection_closed(1);
  CHECK(l.connection_accepted(5, a3));
  l.connection_closed(99);  // unknown: ignored
  l.connection_closed(2);
  l.connection_closed(5);
  l.connection_closed(5);  // twice: ignored
  CHECK(l.connections_from(a) == 0);
  // Trusted sources are not capped.
  for (uint32_t i = 10; i < 20; ++i) CHECK(l.connection_accepted(i, ep("127.0.0.1", uint16_t(i))));
  // 0 = no limit.
  s.max_connections_per_source = 0;
  l.configure(s);
  for (uint32_t i = 30; i < 40; ++i) CHECK(l.connection_accepted(i, ep("192.0.2.9", uint16_t(i))));
}

TEST_CASE("rate limiter: random traffic matches a reference LRU model") {
  // The open-addressing index with backward-shift deletion against a plain list + map.
  constexpr uint32_t kCap = 50;
  RateLimiter r(kCap);
  r.configure(1000, 1000, 0, 60, kCap);
  std::vector<IpKey> lru;  // most recent first
  uint64_t seed = 12345;
  auto next = [&] {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(seed >> 33);
  };
  for (int step = 0; step < 20000; ++step) {
    // 120 distinct addresses over 50 slots: plenty of evictions and collisions.
    uint32_t n = next() % 120;
    IpKey k = n % 3 == 0 ? ip("2001:db8::" + std::to_string(n)) : ip("198.51.100." + std::to_string(n));
    r.admit(k, step);
    auto it = std::find(lru.begin(), lru.end(), k);
    if (it != lru.end()) lru.erase(it);
    lru.insert(lru.begin(), k);
    if (lru.size() > kCap) lru.pop_back();
    if (step % 97 == 0) {
      REQUIRE(r.size() == lru.size());
      for (const IpKey& e : lru) REQUIRE(r.tracked(e));
      for (uint32_t m = 0; m < 120; ++m) {
        IpKey q = m % 3 == 0 ? ip("2001:db8::" + std::to_string(m)) : ip("198.51.100." + std::to_string(m));
        bool in_model = std::find(lru.begin(), lru.end(), q) != lru.end();
        REQUIRE(r.tracked(q) == in_model);
      }
    }
  }
}
