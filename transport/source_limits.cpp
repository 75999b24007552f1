#include "transport/source_limits.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace sb::transport {

RateLimiter::RateLimiter(uint32_t capacity) { reset(capacity); }

void RateLimiter::reset(uint32_t capacity) {
  capacity = std::max<uint32_t>(capacity, 1);
  slots_.assign(capacity, Slot{});
  size_t n = 4;
  while (n < size_t(capacity) * 2) n <<= 1;
  index_.assign(n, kNone);
  mask_ = n - 1;
  size_ = 0;
  head_ = tail_ = kNone;
}

void RateLimiter::configure(uint32_t rate_per_s, uint32_t burst, uint32_t block_after,
                            uint32_t block_s, uint32_t capacity) {
  rate_ = rate_per_s;
  burst_milli_ = uint64_t(std::max<uint32_t>(burst, 1)) * 1000;
  block_after_ = block_after;
  block_ms_ = int64_t(block_s) * 1000;
  if (std::max<uint32_t>(capacity, 1) != slots_.size()) reset(capacity);
}

uint32_t RateLimiter::find(const core::IpKey& ip) const {
  for (size_t i = ip.hash() & mask_;; i = (i + 1) & mask_) {
    uint32_t s = index_[i];
    if (s == kNone) return kNone;
    if (slots_[s].ip == ip) return s;
  }
}

// Backward-shift deletion: the entries after the hole that would no longer be found from
// their home bucket move up, so lookups never need tombstones.
void RateLimiter::index_erase(uint32_t slot) {
  size_t i = slots_[slot].ip.hash() & mask_;
  while (index_[i] != slot) i = (i + 1) & mask_;
  size_t hole = i;
  for (size_t j = (hole + 1) & mask_; index_[j] != kNone; j = (j + 1) & mask_) {
    size_t home = slots_[index_[j]].ip.hash() & mask_;
    // Move j into the hole when its home is not in (hole, j] (cyclically).
    bool in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!in_range) {
      index_[hole] = index_[j];
      hole = j;
    }
  }
  index_[hole] = kNone;
}

void RateLimiter::lru_unlink(uint32_t s) {
  Slot& e = slots_[s];
  if (e.prev != kNone) slots_[e.prev].next = e.next;
  else head_ = e.next;
  if (e.next != kNone) slots_[e.next].prev = e.prev;
  else tail_ = e.prev;
  e.prev = e.next = kNone;
}

void RateLimiter::lru_push_front(uint32_t s) {
  Slot& e = slots_[s];
  e.prev = kNone;
  e.next = head_;
  if (head_ != kNone) slots_[head_].prev = s;
  head_ = s;
  if (tail_ == kNone) tail_ = s;
}

uint32_t RateLimiter::insert(const core::IpKey& ip, int64_t now_ms) {
  uint32_t s;
  if (size_ < slots_.size()) {
    s = static_cast<uint32_t>(size_++);
  } else {
    // Full: the least recently heard source gives its slot up.
    s = tail_;
    assert(s != kNone);
    lru_unlink(s);
    index_erase(s);
    ++evictions_;
  }
  Slot& e = slots_[s];
  e = Slot{};
  e.ip = ip;
  e.last_ms = now_ms;
  e.tokens_milli = burst_milli_;
  size_t i = ip.hash() & mask_;
  while (index_[i] != kNone) i = (i + 1) & mask_;
  index_[i] = s;
  lru_push_front(s);
  return s;
}

bool RateLimiter::blocked(const core::IpKey& ip, int64_t now_ms) const {
  uint32_t s = find(ip);
  return s != kNone && slots_[s].blocked_until_ms != 0 && now_ms < slots_[s].blocked_until_ms;
}

RateLimiter::Verdict RateLimiter::admit(const core::IpKey& ip, int64_t now_ms) {
  uint32_t s = find(ip);
  if (s == kNone) {
    s = insert(ip, now_ms);
  } else if (s != head_) {
    lru_unlink(s);
    lru_push_front(s);
  }
  Slot& e = slots_[s];
  if (e.blocked_until_ms != 0) {
    if (now_ms < e.blocked_until_ms) return Verdict::Blocked;
    // The block is over: start again with a full bucket.
    e.blocked_until_ms = 0;
    e.over = 0;
    e.tokens_milli = burst_milli_;
    e.last_ms = now_ms;
  }
  if (now_ms > e.last_ms) {
    uint64_t add = uint64_t(now_ms - e.last_ms) * rate_;  // ms * (tokens/s) = milli-tokens
    e.tokens_milli = std::min(burst_milli_, e.tokens_milli + add);
    e.last_ms = now_ms;
  }
  if (e.tokens_milli >= burst_milli_) e.over = 0;  // calm again: forget earlier excess
  if (e.tokens_milli >= 1000) {
    e.tokens_milli -= 1000;
    return Verdict::Pass;
  }
  ++e.over;
  if (block_after_ != 0 && e.over >= block_after_ && block_ms_ > 0) {
    e.blocked_until_ms = now_ms + block_ms_;
    if (e.blocked_until_ms == 0) e.blocked_until_ms = 1;
    return Verdict::NewlyBlocked;
  }
  return Verdict::RateLimited;
}

// ---- SourceLimits ----

namespace {

// The key a source is limited by: an IPv4 address, or an IPv6 /64 (one subscriber's prefix,
// RFC 6177 — a host that owns a /64 could otherwise use a new address per message).
core::IpKey limit_key(core::IpKey ip) {
  if (!ip.is_v4()) std::memset(ip.bytes.data() + 8, 0, 8);
  return ip;
}

}  // namespace

void SourceLimits::configure(const SourceLimitSettings& s) {
  settings_ = s;
  limiter_.configure(s.rate_per_s, s.burst, s.block_after, s.block_s, s.table_size);
}

SourceLimits::Verdict SourceLimits::on_message(const core::Endpoint& from, int64_t now_ms,
                                               bool* newly_blocked) {
  if (!settings_.rate_limit || !from.valid()) return Verdict::Pass;
  core::IpKey ip = core::IpKey::of(from);
  if (settings_.trusted.contains(ip)) return Verdict::Pass;
  switch (limiter_.admit(limit_key(ip), now_ms)) {
    case RateLimiter::Verdict::Pass:
      return Verdict::Pass;
    case RateLimiter::Verdict::RateLimited:
      return Verdict::RateLimited;
    case RateLimiter::Verdict::NewlyBlocked:
      if (newly_blocked) *newly_blocked = true;
      return Verdict::RateLimited;
    case RateLimiter::Verdict::Blocked:
      return Verdict::Blocked;
  }
  return Verdict::Pass;
}

bool SourceLimits::blocked(const core::Endpoint& from, int64_t now_ms) const {
  if (!settings_.rate_limit || !from.valid()) return false;
  core::IpKey ip = core::IpKey::of(from);
  return !settings_.trusted.contains(ip) && limiter_.blocked(limit_key(ip), now_ms);
}

bool SourceLimits::connection_accepted(uint32_t id, const core::Endpoint& from) {
  core::IpKey ip = core::IpKey::of(from);
  core::IpKey key = limit_key(ip);
  auto [it, inserted] = conn_source_.emplace(id, key);
  if (!inserted) return true;  // already counted (ids are unique while open)
  uint32_t n = ++conns_per_ip_[key];
  if (settings_.max_connections_per_source == 0) return true;
  if (n <= settings_.max_connections_per_source) return true;
  return settings_.trusted.contains(ip);
}

void SourceLimits::connection_closed(uint32_t id) {
  auto it = conn_source_.find(id);
  if (it == conn_source_.end()) return;
  auto c = conns_per_ip_.find(it->second);
  if (c != conns_per_ip_.end() && --c->second == 0) conns_per_ip_.erase(c);
  conn_source_.erase(it);
}

uint32_t SourceLimits::connections_from(const core::Endpoint& from) const {
  auto it = conns_per_ip_.find(limit_key(core::IpKey::of(from)));
  return it == conns_per_ip_.end() ? 0 : it->second;
}

}  // namespace sb::transport
