#include "location/redis_store.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/log.h"
#include "core/text.h"

namespace sb::location {

namespace {

using Json = nlohmann::json;

// One change, atomically: KEYS[1] the AOR's hash; ARGV op ("set" | "del" | "expire"), field,
// value (set) or the expiry the remover saw (expire), channel, AOR. An "expire" deletes only
// a field still holding that expiry: another node may have refreshed the binding meanwhile.
// The key's TTL follows its longest binding (PERSIST for an operator's static one); the AOR
// is published when something changed.
constexpr const char* kChangeScript = R"lua(
local op = ARGV[1]
if op == 'set' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
elseif op == 'del' then
  if redis.call('HDEL', KEYS[1], ARGV[2]) == 0 then return 0 end
else
  local v = redis.call('HGET', KEYS[1], ARGV[2])
  if not v then return 0 end
  local e = string.match(v, '"expires_at":(%d+)')
  if e ~= ARGV[3] then return 0 end
  redis.call('HDEL', KEYS[1], ARGV[2])
end
local top, tops = -1, nil
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  local e = string.match(v, '"expires_at":(%d+)')
  if e and tonumber(e) > top then top = tonumber(e); tops = e end
end
if tops == '9223372036854775807' then
  redis.call('PERSIST', KEYS[1])
elseif tops then
  redis.call('PEXPIREAT', KEYS[1], tops)
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
)lua";

constexpr size_t kBatch = 256;

std::string unquote_lower(std::string_view s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  std::string out(s);
  for (char& c : out) c = core::ascii_lower(c);
  return out;
}

// Members of a decoded binding, checked for type (a bad value is skipped, never thrown on).
std::string str_of(const Json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
int64_t int_of(const Json& j, const char* k) {
  auto it = j.find(k);
  if (it == j.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_unsigned()) {
    uint64_t u = it->get<uint64_t>();
    return u > uint64_t(INT64_MAX) ? INT64_MAX : int64_t(u);
  }
  return 0;
}

bool split_host_port(std::string_view s, std::string& host, int& port) {
  size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || colon + 1 >= s.size()) return false;
  std::string_view h = s.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  std::string_view p = s.substr(colon + 1);
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
  if (ec != std::errc() || ptr != p.data() + p.size() || port <= 0 || port > 65535 || h.empty())
    return false;
  host.assign(h);
  return true;
}

// An HGETALL reply (field, value, ...) of `aor`'s hash: its bindings, undecodable ones skipped.
std::vector<Binding> decode_hash(const redisReply* r, std::string_view self, std::string_view aor) {
  std::vector<Binding> out;
  if (r->type == REDIS_REPLY_ARRAY)
    for (size_t i = 1; i < r->elements; i += 2)
      if (auto b = redis_decode({r->element[i]->str, r->element[i]->len}, self, nullptr, aor))
        out.push_back(std::move(*b));
  return out;
}

timeval tv_of(uint32_t ms) {
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  return tv;
}

}  // namespace

std::string redis_field(std::string_view contact, std::string_view instance, uint32_t reg_id) {
  // RFC 5626 §6: a flow is named by (+sip.instance, reg-id), whatever its Contact URI.
  if (!instance.empty() && reg_id != 0) return "i:" + unquote_lower(instance) + ";" + std::to_string(reg_id);
  return "c:" + std::string(contact);
}

std::string owner_route(std::string_view owner_uri, std::string_view aor) {
  static const char* kHex = "0123456789abcdef";
  std::string out = "<";
  out.append(owner_uri);
  out += ";lr;sb-aor=";
  for (unsigned char ch : aor) {
    out += kHex[ch >> 4];
    out += kHex[ch & 15];
  }
  out += '>';
  return out;
}

bool is_owner_route(std::string_view route) { return route.find(";sb-aor=") != std::string_view::npos; }

std::optional<std::string> owner_route_aor(std::string_view hex) {
  if (hex.empty() || hex.size() % 2 != 0 || hex.size() > 2048) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    if (!core::is_hex(hex[i]) || !core::is_hex(hex[i + 1])) return std::nullopt;
    out += static_cast<char>(core::hex_value(hex[i]) * 16 + core::hex_value(hex[i + 1]));
  }
  return out;
}

std::string redis_encode(const Binding& b, std::string_view owner, std::string_view owner_uri) {
  Json j;
  j["expires_at"] = b.expires_at;
  j["contact"] = b.contact;
  if (!b.params.empty()) j["params"] = b.params;
  j["q"] = b.q;
  j["call_id"] = b.call_id;
  j["cseq"] = b.cseq;
  j["transport"] = std::string(core::protocol_name(b.source.protocol));
  if (b.source.endpoint.valid()) {
    j["ip"] = b.source.endpoint.ip();
    j["port"] = b.source.endpoint.port();
  }
  if (b.source.connection.valid()) j["conn"] = {b.source.connection.worker, b.source.connection.id};
  if (!b.path.empty()) j["path"] = b.path;
  if (!b.instance.empty()) j["instance"] = b.instance;
  if (b.reg_id) j["reg_id"] = b.reg_id;
  if (!b.user_agent.empty()) j["user_agent"] = b.user_agent;
  j["received_at"] = b.received_at;
  j["node"] = owner;
  if (!owner_uri.empty()) j["node_uri"] = owner_uri;
  // Invalid UTF-8 from a UA is replaced rather than thrown on.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::optional<Binding> redis_decode(std::string_view value, std::string_view self, std::string* owner,
                                    std::string_view aor) {
  Json j = Json::parse(value, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  Binding b;
  b.contact = str_of(j, "contact");
  b.expires_at = int_of(j, "expires_at");
  if (b.contact.empty() || b.expires_at <= 0) return std::nullopt;
  b.params = str_of(j, "params");
  b.q = static_cast<uint16_t>(std::clamp<int64_t>(int_of(j, "q"), 0, 1000));
  b.call_id = str_of(j, "call_id");
  b.cseq = static_cast<uint32_t>(std::clamp<int64_t>(int_of(j, "cseq"), 0, UINT32_MAX));
  if (auto p = core::protocol_from_name(str_of(j, "transport"))) b.source.protocol = *p;
  int64_t port = int_of(j, "port");
  if (port > 0 && port <= 65535)
    if (auto ep = core::Endpoint::parse(str_of(j, "ip"), static_cast<uint16_t>(port))) b.source.endpoint = *ep;
  std::string node = str_of(j, "node");
  auto conn = j.find("conn");
  if (node == self && conn != j.end() && conn->is_array() && conn->size() == 2 &&
      (*conn)[0].is_number_unsigned() && (*conn)[1].is_number_unsigned())
    b.source.connection = {(*conn)[0].get<uint32_t>(), (*conn)[1].get<uint32_t>()};
  auto path = j.find("path");
  if (path != j.end() && path->is_array())
    for (const auto& p : *path)
      if (p.is_string()) b.path.push_back(p.get<std::string>());
  b.instance = str_of(j, "instance");
  b.reg_id = static_cast<uint32_t>(std::clamp<int64_t>(int_of(j, "reg_id"), 0, UINT32_MAX));
  // Another node's stream or RFC 5626 flow: the connection is that node's, so the source
  // address is no way in from here. The call goes through the owner, which relays it over
  // the flow (RFC 3327 Path, RFC 5626 §5.3); without the owner's URI, to the Contact.
  if (node != self && (core::is_reliable(b.source.protocol) || (!b.instance.empty() && b.reg_id != 0))) {
    b.source.endpoint = {};
    std::string uri = str_of(j, "node_uri");
    if (!uri.empty() && !aor.empty()) b.path.insert(b.path.begin(), owner_route(uri, aor));
  }
  b.user_agent = str_of(j, "user_agent");
  b.received_at = int_of(j, "received_at");
  if (owner) *owner = std::move(node);
  return b;
}

RedisStore::RedisStore(RedisSettings settings, uint32_t queue_capacity)
    : settings_(std::move(settings)),
      capacity_(queue_capacity == 0 ? 1 : queue_capacity),
      key_prefix_(settings_.prefix + "aor:"),
      channel_(settings_.prefix + "changes") {
  stats_.degraded = true;  // until both links are up
}

RedisStore::~RedisStore() { close(); }

redisContext* RedisStore::connect(uint32_t timeout_ms, std::string* where) {
  for (const std::string& server : settings_.servers) {
    std::string host;
    int port = 0;
    if (!split_host_port(server, host, port)) continue;
    redisContext* c = redisConnectWithTimeout(host.c_str(), port, tv_of(timeout_ms));
    if (c && !c->err) {
      redisSetTimeout(c, tv_of(settings_.command_timeout_ms));
      if (where) *where = server;
      return c;
    }
    if (c) redisFree(c);
  }
  return nullptr;
}

void RedisStore::set_link(bool writer, bool up) {
  // Called with mu_ held.
  bool& link = writer ? writer_up_ : subscriber_up_;
  if (link && !up) ++stats_.disconnects;
  link = up;
  bool degraded = !(writer_up_ && subscriber_up_);
  if (degraded && !warned_ && !stopping_) {
    // Logged once per outage: registrations go on in the local table meanwhile.
    SB_WARN("location: redis %s unreachable; degraded (bindings stay local and are written when it is back)",
            settings_.servers.empty() ? "" : settings_.servers.front().c_str());
    warned_ = true;
  } else if (!degraded && warned_) {
    SB_INFO("location: redis reachable again; writing %zu queued changes", queue_.size());
    warned_ = false;
  }
  stats_.degraded = degraded;
}

bool RedisStore::read_aor(redisContext* c, const std::string& aor, std::vector<Binding>& out) {
  std::string key = key_prefix_ + aor;
  auto* r = static_cast<redisReply*>(redisCommand(c, "HGETALL %b", key.data(), key.size()));
  if (!r) return false;
  out = decode_hash(r, settings_.node_id, aor);
  freeReplyObject(r);
  return true;
}

bool RedisStore::load_all(redisContext* c, std::vector<std::pair<std::string, std::vector<Binding>>>& out) {
  std::string cursor = "0";
  std::string match = key_prefix_ + "*";
  do {
    auto* r = static_cast<redisReply*>(redisCommand(c, "SCAN %s MATCH %b COUNT 500", cursor.c_str(),
                                                    match.data(), match.size()));
    if (!r) return false;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[1]->type != REDIS_REPLY_ARRAY) {
      freeReplyObject(r);
      return false;
    }
    cursor.assign(r->element[0]->str, r->element[0]->len);
    std::vector<std::string> keys;
    for (size_t i = 0; i < r->element[1]->elements; ++i)
      keys.emplace_back(r->element[1]->element[i]->str, r->element[1]->element[i]->len);
    freeReplyObject(r);
    // Pipelined: one round trip for the whole page.
    for (const std::string& k : keys) redisAppendCommand(c, "HGETALL %b", k.data(), k.size());
    for (const std::string& k : keys) {
      void* v = nullptr;
      if (redisGetReply(c, &v) != REDIS_OK) return false;
      auto* h = static_cast<redisReply*>(v);
      std::string aor = k.substr(key_prefix_.size());
      std::vector<Binding> bindings = decode_hash(h, settings_.node_id, aor);
      freeReplyObject(h);
      out.emplace_back(std::move(aor), std::move(bindings));
    }
  } while (cursor != "0");
  return true;
}

core::Status RedisStore::open(std::vector<StoredBinding>& loaded) {
  if (running_) return {};
  if (settings_.servers.empty()) return core::Error{"location.redis.servers is empty"};
  if (pipe(wake_pipe_) != 0) return core::Error{"cannot create a pipe for the redis subscriber"};
  std::string where;
  if (redisContext* c = connect(settings_.connect_timeout_ms, &where)) {
    std::vector<std::pair<std::string, std::vector<Binding>>> aors;
    bool ok = load_all(c, aors);
    redisFree(c);
    uint64_t id = 1;
    for (auto& [aor, bindings] : aors)
      for (Binding& b : bindings) loaded.push_back(StoredBinding{id++, aor, std::move(b)});
    if (ok) SB_INFO("location: redis %s: read %zu AORs", where.c_str(), aors.size());
    else SB_WARN("location: redis %s: reading the stored bindings failed; catching up later", where.c_str());
  } else {
    std::lock_guard lock(mu_);
    set_link(true, false);
  }
  {
    std::lock_guard lock(mu_);
    running_ = true;
    stopping_ = false;
  }
  {
    std::lock_guard lock(fmu_);
    fstopping_ = false;
  }
  writer_ = std::thread([this] { run_writer(); });
  reader_ = std::thread([this] { run_reader(); });
  subscriber_ = std::thread([this] { run_subscriber(); });
  return {};
}

void RedisStore::set_remote_sink(RemoteSink sink) { sink_ = std::move(sink); }

void RedisStore::enqueue(Op op) {
  std::lock_guard lock(mu_);
  if (!running_ || stopping_) return;
  if (queue_.size() >= capacity_) {
    ++stats_.dropped;
    SB_LOG_RL(Warn, {}, "location: redis queue full (%zu changes); change for %s dropped", capacity_,
              op.aor.c_str());
    return;
  }
  if (tracking_) touched_.insert(op.aor);
  queue_.push_back(std::move(op));
  wake_.notify_one();
}

void RedisStore::save(StoredBinding row) {
  std::string field = redis_field(row.binding.contact, row.binding.instance, row.binding.reg_id);
  enqueue(Op{OpKind::Set, std::move(row.aor), std::move(field), {}, std::move(row.binding)});
}

void RedisStore::erase(uint64_t) {}

void RedisStore::remove(const BindingKey& key) {
  if (key.aor.empty()) return;
  Op op{key.expired ? OpKind::Expire : OpKind::Del, std::string(key.aor),
        redis_field(key.contact, key.instance, key.reg_id),
        key.expired ? std::to_string(key.expires_at) : std::string(), {}};
  enqueue(std::move(op));
}

bool RedisStore::write_batch(redisContext* c, std::vector<Op>& ops, size_t& done) {
  static const std::string script(kChangeScript);
  for (const Op& op : ops) {
    std::string key = key_prefix_ + op.aor;
    if (op.kind == OpKind::Refresh) {
      redisAppendCommand(c, "HGETALL %b", key.data(), key.size());
      continue;
    }
    const char* name = op.kind == OpKind::Set ? "set" : op.kind == OpKind::Del ? "del" : "expire";
    std::string encoded;
    if (op.kind == OpKind::Set) encoded = redis_encode(op.binding, settings_.node_id, settings_.node_uri);
    const std::string& value = op.kind == OpKind::Set ? encoded : op.value;
    const char* argv[] = {"EVAL", script.c_str(), "1", key.c_str(), name, op.field.c_str(),
                          value.c_str(), channel_.c_str(), op.aor.c_str()};
    size_t lens[] = {4, script.size(), 1, key.size(), strlen(name), op.field.size(),
                     value.size(), channel_.size(), op.aor.size()};
    redisAppendCommandArgv(c, 9, argv, lens);
  }
  for (; done < ops.size(); ++done) {
    void* v = nullptr;
    if (redisGetReply(c, &v) != REDIS_OK) return false;
    auto* r = static_cast<redisReply*>(v);
    const Op& op = ops[done];
    if (r->type == REDIS_REPLY_ERROR) {
      std::lock_guard lock(mu_);
      ++stats_.errors;
      SB_LOG_RL(Error, {}, "location: redis refused a change for %s: %.*s", op.aor.c_str(),
                static_cast<int>(std::min<size_t>(r->len, 200)), r->str);
    } else if (op.kind == OpKind::Refresh) {
      if (sink_.apply) sink_.apply(op.aor, decode_hash(r, settings_.node_id, op.aor));
      std::lock_guard lock(mu_);
      ++stats_.refreshes;
    }
    freeReplyObject(r);
  }
  return true;
}

bool RedisStore::resync(redisContext* c) {
  {
    std::lock_guard lock(mu_);
    touched_.clear();
    tracking_ = true;
  }
  std::vector<std::pair<std::string, std::vector<Binding>>> aors;
  bool ok = load_all(c, aors);
  std::unordered_set<std::string> touched;
  {
    std::lock_guard lock(mu_);
    tracking_ = false;
    touched.swap(touched_);
  }
  if (!ok) return false;
  if (!sink_.apply) return true;
  // A change made here since the scan began is newer than what the scan read. An AOR the
  // table holds and Redis does not is kept (cluster.md "Redis unavailable"): Redis may have
  // come back empty, and the bindings expire on their own.
  for (auto& [aor, bindings] : aors)
    if (!touched.count(aor)) sink_.apply(aor, std::move(bindings));
  SB_DEBUG("location: redis resync: %zu AORs", aors.size());
  return true;
}

void RedisStore::run_writer() {
  core::log::set_thread_name("redis-writer");
  redisContext* c = nullptr;
  std::unique_lock lock(mu_);
  for (;;) {
    if (stopping_ && queue_.empty()) break;
    if (!c) {
      lock.unlock();
      c = connect(settings_.connect_timeout_ms, nullptr);
      lock.lock();
      if (!c) {
        set_link(true, false);
        if (stopping_) break;  // one last try to write what is queued, then give up
        // Nobody waits for a write that cannot happen now.
        flush_done_ = flush_asked_;
        done_.notify_all();
        wake_.wait_for(lock, std::chrono::milliseconds(settings_.reconnect_ms), [this] { return stopping_; });
        continue;
      }
      set_link(true, true);
    }
    if (queue_.empty() && !resync_pending_) {
      if (flush_done_ < flush_asked_) {
        flush_done_ = flush_asked_;
        done_.notify_all();
      }
      wake_.wait(lock, [this] {
        return stopping_ || !queue_.empty() || resync_pending_ || flush_done_ < flush_asked_;
      });
      continue;
    }
    const uint64_t asked = flush_asked_;
    std::vector<Op> batch;
    while (!queue_.empty() && batch.size() < kBatch) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
      if (batch.back().kind == OpKind::Refresh) refresh_pending_.erase(batch.back().aor);
    }
    const bool resyncing = batch.empty();
    if (resyncing) resync_pending_ = false;
    lock.unlock();
    size_t done = 0;
    bool ok = resyncing ? resync(c) : write_batch(c, batch, done);
    lock.lock();
    if (!ok) {
      // Lost the connection: what was not answered goes back to the front, in order (a change
      // applied twice is harmless); re-reads are covered by the resync that follows.
      for (size_t i = batch.size(); i-- > done;)
        if (batch[i].kind != OpKind::Refresh) queue_.push_front(std::move(batch[i]));
      redisFree(c);
      c = nullptr;
      ++stats_.errors;
      resync_pending_ = true;
      set_link(true, false);
      if (stopping_) break;  // a hung Redis must not hold the shutdown forever
      continue;
    }
    for (const Op& op : batch) stats_.written += op.kind == OpKind::Refresh ? 0 : 1;
    ++stats_.batches;
    if (queue_.empty() && flush_done_ < asked) {
      flush_done_ = asked;
      done_.notify_all();
    }
  }
  if (c) redisFree(c);
  flush_done_ = flush_asked_;
  done_.notify_all();
}

void RedisStore::run_subscriber() {
  core::log::set_thread_name("redis-sub");
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    redisContext* c = connect(settings_.connect_timeout_ms, nullptr);
    bool subscribed = false;
    if (c) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "SUBSCRIBE %b", channel_.data(), channel_.size()));
      subscribed = r && r->type == REDIS_REPLY_ARRAY;
      if (r) freeReplyObject(r);
    }
    if (subscribed) {
      std::lock_guard lock(mu_);
      set_link(false, true);
      // Changes made while we were not listening: re-read everything.
      resync_pending_ = true;
      wake_.notify_one();
    }
    while (subscribed) {
      pollfd fds[2] = {{c->fd, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
      int n = poll(fds, 2, -1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 || (fds[1].revents & POLLIN)) break;
      if (!(fds[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (redisBufferRead(c) != REDIS_OK) break;
      void* v = nullptr;
      bool bad = false;
      while (!bad) {
        if (redisReaderGetReply(c->reader, &v) != REDIS_OK) {
          bad = true;
          break;
        }
        if (!v) break;
        auto* r = static_cast<redisReply*>(v);
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING &&
            std::string_view(r->element[0]->str, r->element[0]->len) == "message") {
          std::string aor(r->element[2]->str, r->element[2]->len);
          std::lock_guard lock(mu_);
          if (refresh_pending_.insert(aor).second) {
            if (queue_.size() < capacity_) {
              queue_.push_back(Op{OpKind::Refresh, std::move(aor), {}, {}, {}});
            } else {
              refresh_pending_.erase(aor);
              resync_pending_ = true;  // cheaper than losing the change
            }
            wake_.notify_one();
          }
        }
        freeReplyObject(r);
      }
      if (bad) break;
    }
    if (c) redisFree(c);
    std::unique_lock lock(mu_);
    set_link(false, false);
    if (stopping_) return;
    wake_.wait_for(lock, std::chrono::milliseconds(subscribed ? 0 : settings_.reconnect_ms),
                   [this] { return stopping_; });
  }
}

bool RedisStore::fetch(std::string_view aor, std::function<void(bool ok)> done) {
  {
    std::lock_guard lock(mu_);
    // Degraded: answer from the local table at once rather than wait for a timeout.
    if (!running_ || stopping_ || stats_.degraded) return false;
  }
  std::lock_guard lock(fmu_);
  if (fetches_.size() >= kMaxFetches) return false;
  fetches_.push_back(Fetch{std::string(aor), std::move(done), std::chrono::steady_clock::now()});
  fwake_.notify_one();
  return true;
}

void RedisStore::run_reader() {
  core::log::set_thread_name("redis-reader");
  redisContext* c = nullptr;
  const auto timeout = std::chrono::milliseconds(settings_.command_timeout_ms);
  for (;;) {
    Fetch f;
    {
      std::unique_lock lock(fmu_);
      fwake_.wait(lock, [this] { return fstopping_ || !fetches_.empty(); });
      if (fetches_.empty()) break;  // stopping
      f = std::move(fetches_.front());
      fetches_.pop_front();
    }
    bool ok = false;
    bool timed_out = true;  // a read that waited its whole timeout in the queue: unread
    std::vector<Binding> bindings;
    bool stopping;
    {
      std::lock_guard lock(fmu_);
      stopping = fstopping_;
    }
    if (!stopping && std::chrono::steady_clock::now() - f.queued < timeout) {
      timed_out = false;
      if (!c) c = connect(settings_.connect_timeout_ms, nullptr);
      if (c) {
        ok = read_aor(c, f.aor, bindings);
        if (!ok) {
          // No answer within command_timeout_ms (the socket timed out) vs Redis gone (refused,
          // closed): only the first fails the request; without Redis it goes on locally.
          int err = errno;
          timed_out = c->err == REDIS_ERR_IO && (err == EAGAIN || err == EWOULDBLOCK);
          redisFree(c);
          c = nullptr;
        }
      }
    }
    // Nothing there changes nothing: a REGISTER may have added the AOR locally meanwhile.
    if (ok && !bindings.empty() && sink_.apply) sink_.apply(f.aor, std::move(bindings));
    {
      std::lock_guard lock(mu_);
      ++stats_.fetches;
      if (timed_out) ++stats_.fetch_failures;
    }
    f.done(!timed_out);
  }
  if (c) redisFree(c);
}

void RedisStore::flush() {
  std::unique_lock lock(mu_);
  if (!running_) return;
  uint64_t asked = ++flush_asked_;
  wake_.notify_all();
  done_.wait(lock, [&] { return flush_done_ >= asked || !running_; });
}

void RedisStore::close() {
  {
    std::lock_guard lock(mu_);
    if (!running_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (wake_pipe_[1] >= 0) {
    char b = 1;
    ssize_t w = ::write(wake_pipe_[1], &b, 1);
    (void)w;
  }
  {
    std::lock_guard lock(fmu_);
    fstopping_ = true;
  }
  fwake_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (subscriber_.joinable()) subscriber_.join();
  if (reader_.joinable()) reader_.join();
  for (int& fd : wake_pipe_)
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
  std::lock_guard lock(mu_);
  running_ = false;
}

StoreStats RedisStore::stats() const {
  std::lock_guard lock(mu_);
  StoreStats s = stats_;
  s.queued = queue_.size();
  return s;
}

core::Result<std::unique_ptr<Store>> open_store(const StoreConfig& config) {
  if (config.backend == "redis") {
    if (config.redis.servers.empty()) return core::Error{"location.redis.servers is empty"};
    return std::unique_ptr<Store>(std::make_unique<RedisStore>(config.redis, config.queue_capacity));
  }
  return make_store(config);
}

}  // namespace sb::location
