#include "transport/dns_cache.h"

#include <algorithm>
#include <utility>

namespace sb::transport::dns {

Cache::Cache(Querier& upstream, const core::Clock& clock, CacheSettings settings)
    : upstream_(upstream), clock_(clock), settings_(settings) {}

void Cache::query(const std::string& name, Type type, std::function<void(Answer)> done) {
  std::string normal = normalize_name(name);
  std::string key;
  key.reserve(normal.size() + 6);
  key.append(type_name(type)).append(" ").append(normal);
  int64_t now = clock_.now_ms();
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    Entry& e = it->second;
    if (e.pending) {
      ++stats_.coalesced;
      e.waiters.push_back(std::move(done));
      return;
    }
    if (now < e.expires_ms) {
      ++stats_.hits;
      done(e.answer);
      return;
    }
    entries_.erase(it);
  }
  if (entries_.size() >= settings_.max_entries) sweep(now);
  Entry& e = entries_[key];
  e.waiters.push_back(std::move(done));
  ++stats_.queries;
  // The upstream may answer before query() returns (a fake, or a failure to send):
  // answered() finds the entry by key, so nothing here may hold on to `e` after this call.
  upstream_.query(normal, type,
                  [this, key](Answer a) { answered(key, std::move(a)); });
}

void Cache::answered(const std::string& key, Answer a) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  std::vector<std::function<void(Answer)>> waiters = std::move(it->second.waiters);
  int64_t ttl_s = -1;
  if (a.status != Status::Failed) {
    if (a.negative()) {
      ttl_s = settings_.negative_ttl_s;
      if (a.negative_ttl_s >= 0) ttl_s = std::min<int64_t>(ttl_s, a.negative_ttl_s);
    } else {
      ttl_s = std::min<int64_t>(a.ttl_s, settings_.max_ttl_s);
    }
  }
  // Kept only with a TTL, and while the table has room (pending entries always have it).
  if (ttl_s > 0 && entries_.size() <= settings_.max_entries) {
    it->second.pending = false;
    it->second.expires_ms = clock_.now_ms() + ttl_s * 1000;
    it->second.answer = a;
  } else {
    entries_.erase(it);
  }
  // A waiter may query again (and so change the table): nothing above is used below.
  for (auto& w : waiters) w(a);
}

void Cache::sweep(int64_t now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (!it->second.pending && it->second.expires_ms <= now)
      it = entries_.erase(it);
    else
      ++it;
  }
}

}  // namespace sb::transport::dns
