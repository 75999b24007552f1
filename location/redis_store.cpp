#include "location/redis_store.h"

#include "location/redis_uv.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include <algorithm>
#include <cstdarg>
#include <cstring>
#include <deque>
#include <future>
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
  b.remote = node != self;
  if (owner) *owner = std::move(node);
  return b;
}


// ---- the pieces a lane is made of ----

struct RedisStore::Op {
  enum class Kind : uint8_t { Set, Del, Expire, Refresh, Fetch };
  Kind kind = Kind::Set;
  std::string aor;
  std::string field;
  std::string value;                // Expire: the expiry the remover saw
  Binding binding;                  // Set: encoded on the lane, not under the shard lock
  std::function<void(bool)> done;   // Fetch
  bool is_write() const { return kind <= Kind::Expire; }
};

// A command sent, waiting for its reply (replies come back in order, per connection).
struct RedisStore::Pending {
  enum class Kind : uint8_t { Op, RunId, Scan, ScanGet, ScanEnd };
  Kind kind = Kind::Op;
  Op op;                            // Kind::Op; ScanGet: op.aor
  uint64_t sent_ms = 0;             // loop time
};

struct RedisStore::Conn {
  Lane* lane = nullptr;
  bool subscriber = false;
  redisAsyncContext* ac = nullptr;
  bool up = false;
  bool timed_out = false;           // we freed it: a command had no answer in time
  bool subscribed = false;          // subscriber: Redis confirmed the SUBSCRIBE
  uint64_t since = 0;               // connect started (loop ms)
  uint64_t retry_at = 0;
  size_t server = 0;                // the next server to try (round the list)
  size_t requeued = 0;              // unanswered changes put back at the front, in order
  std::deque<Op> waiting;           // changes and re-reads not sent yet (link down)
  std::deque<Pending> inflight;
};

struct RedisStore::Lane {
  RedisStore* store = nullptr;
  uint32_t index = 0;
  std::mutex mu;                    // inbox, refresh_queued, attached, stop_loop
  std::vector<Op> inbox;
  std::unordered_set<std::string> refresh_queued;
  bool attached = false;
  bool detached = false;            // a lane is attached once
  bool stop_loop = false;           // own loop: detach, and the loop ends
  bool closing = false;             // loop thread only
  uv_loop_t* loop = nullptr;
  uv_async_t async{};
  uv_timer_t timer{};
  std::atomic<std::thread::id> thread{};
  std::vector<std::unique_ptr<Conn>> conns;
  std::unique_ptr<Conn> sub;        // lane 0
  size_t next_read = 0;
  // Lane 0: re-reading the whole keyspace after the subscriber (re)subscribed.
  bool resync_wanted = false;
  bool resyncing = false;
  std::string scan_run_id;
  std::vector<std::pair<std::string, std::vector<Binding>>> scanned;

  uint64_t now() const { return uv_now(loop); }
  const RedisSettings& settings() const { return store->settings_; }

  void post(Op op) {
    std::lock_guard lock(mu);
    if (op.kind == Op::Kind::Refresh && !refresh_queued.insert(op.aor).second) return;
    inbox.push_back(std::move(op));
    if (attached) uv_async_send(&async);
  }

  void start(uv_loop_t* l) {
    {
      std::lock_guard lock(mu);
      if (attached || detached) return;
      attached = true;
      loop = l;
      uv_async_init(loop, &async, [](uv_async_t* a) { static_cast<Lane*>(a->data)->on_async(); });
      async.data = this;
    }
    // Store::attach runs on the loop's own thread: a fetch() from it is answered here from
    // the start, not only once a callback has run.
    thread.store(std::this_thread::get_id(), std::memory_order_relaxed);
    uv_timer_init(loop, &timer);
    timer.data = this;
    const RedisSettings& s = settings();
    uint64_t tick = std::min({s.connect_timeout_ms, s.command_timeout_ms, s.reconnect_ms}) / 4;
    tick = std::clamp<uint64_t>(tick, 5, 100);
    uv_timer_start(&timer, [](uv_timer_t* t) { static_cast<Lane*>(t->data)->on_tick(); }, tick, tick);
    store->attached_lanes_.fetch_add(1);
    for (auto& c : conns) connect(*c);
    if (sub) connect(*sub);
    drain();
  }

  void stop() {
    {
      std::lock_guard lock(mu);
      if (!attached) return;
      attached = false;
      detached = true;
    }
    closing = true;
    thread.store(std::thread::id());
    uv_close(reinterpret_cast<uv_handle_t*>(&async), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
    size_t left = 0;
    auto drop = [&](Conn& c) {
      if (c.ac) redisAsyncFree(c.ac);  // unanswered commands come back (null) into waiting
      lost(c);
      for (Op& op : c.waiting) {
        if (!op.is_write()) continue;
        store->acked(op);
        ++left;
      }
      c.waiting.clear();
    };
    for (auto& c : conns) drop(*c);
    if (sub) drop(*sub);
    std::vector<Op> rest;
    {
      std::lock_guard lock(mu);
      rest.swap(inbox);
    }
    for (Op& op : rest)
      if (op.is_write()) {
        store->acked(op);
        ++left;
      } else if (op.kind == Op::Kind::Fetch) {
        store->fetched(op, true, false);
      }
    {
      std::lock_guard lock(store->mu_);
      store->stats_.dropped += left;
    }
    if (left) SB_WARN("location: redis: %zu changes not written when the lane stopped", left);
    store->attached_lanes_.fetch_sub(1);
    store->acked_.notify_all();
  }

  // The loop's thread, as seen by its callbacks (start() records it too).
  void on_loop_thread() {
    const auto me = std::this_thread::get_id();
    if (thread.load(std::memory_order_relaxed) != me) thread.store(me, std::memory_order_relaxed);
  }

  void on_async() {
    on_loop_thread();
    bool stop_now;
    {
      std::lock_guard lock(mu);
      stop_now = stop_loop;
    }
    if (stop_now) stop();
    else drain();
  }

  void drain() {
    std::vector<Op> ops;
    {
      std::lock_guard lock(mu);
      ops.swap(inbox);
      for (const Op& op : ops)
        if (op.kind == Op::Kind::Refresh) refresh_queued.erase(op.aor);
    }
    for (Op& op : ops) dispatch(std::move(op));
  }

  Conn& write_conn(std::string_view aor) {
    size_t h = std::hash<std::string_view>{}(aor) / store->lanes_.size();
    return *conns[h % conns.size()];
  }
  Conn& read_conn() { return *conns[next_read++ % conns.size()]; }

  void dispatch(Op op) {
    if (op.kind == Op::Kind::Fetch) {
      Conn& c = read_conn();
      if (!c.up || !send(c, op)) store->fetched(op, true, false);
      return;
    }
    Conn& c = write_conn(op.aor);
    if (c.up && c.waiting.empty() && send(c, op)) return;
    c.waiting.push_back(std::move(op));
  }

  // Sends `op` on `c` (up); false (op untouched) when hiredis refused it.
  bool send(Conn& c, Op& op) {
    static const std::string script(kChangeScript);
    RedisStore& st = *store;
    const std::string key = st.key_prefix_ + op.aor;
    c.inflight.push_back(Pending{Pending::Kind::Op, std::move(op), now()});
    Op& o = c.inflight.back().op;
    int rc;
    if (!o.is_write()) {
      const char* argv[] = {"HGETALL", key.c_str()};
      size_t lens[] = {7, key.size()};
      rc = redisAsyncCommandArgv(c.ac, on_reply, &c, 2, argv, lens);
    } else {
      const char* name = o.kind == Op::Kind::Set ? "set" : o.kind == Op::Kind::Del ? "del" : "expire";
      std::string encoded;
      if (o.kind == Op::Kind::Set) encoded = redis_encode(o.binding, settings().node_id, settings().node_uri);
      const std::string& value = o.kind == Op::Kind::Set ? encoded : o.value;
      const char* argv[] = {"EVAL", script.c_str(), "1", key.c_str(), name, o.field.c_str(),
                            value.c_str(), st.channel_.c_str(), o.aor.c_str()};
      size_t lens[] = {4, script.size(), 1, key.size(), strlen(name), o.field.size(),
                       value.size(), st.channel_.size(), o.aor.size()};
      rc = redisAsyncCommandArgv(c.ac, on_reply, &c, 9, argv, lens);
    }
    if (rc != REDIS_OK) {
      op = std::move(c.inflight.back().op);
      c.inflight.pop_back();
      return false;
    }
    return true;
  }

  // A command of our own (re-read of the keyspace) on `c`; false when hiredis refused it.
  bool command(Conn& c, Pending::Kind kind, std::string aor, const char* fmt, ...) {
    c.inflight.push_back(Pending{kind, {}, now()});
    c.inflight.back().op.aor = std::move(aor);
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAsyncCommand(c.ac, on_reply, &c, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) c.inflight.pop_back();
    return rc == REDIS_OK;
  }

  void connect(Conn& c) {
    const RedisSettings& s = settings();
    if (c.ac || closing || s.servers.empty()) return;
    const std::string& server = s.servers[c.server % s.servers.size()];
    std::string host;
    int port = 0;
    c.since = now();
    if (!split_host_port(server, host, port)) {
      failed(c);
      return;
    }
    redisAsyncContext* ac = redisAsyncConnect(host.c_str(), port);
    if (!ac || ac->err || !redis_uv_attach(ac, loop)) {
      if (ac) redisAsyncFree(ac);
      failed(c);
      return;
    }
    ac->data = &c;
    c.ac = ac;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
  }

  // A connection attempt failed: the next server, after reconnect_ms.
  void failed(Conn& c) {
    c.ac = nullptr;
    ++c.server;
    c.retry_at = now() + settings().reconnect_ms;
    if (!closing) store->link_changed(0);
  }

  static void on_connect(const redisAsyncContext* ac, int status) {
    auto* c = static_cast<Conn*>(ac->data);
    Lane& l = *c->lane;
    if (status != REDIS_OK) {
      l.failed(*c);  // hiredis frees the context
      return;
    }
    c->up = true;
    c->timed_out = false;
    l.store->link_changed(+1);
    if (c->subscriber) {
      c->since = l.now();  // the confirmation is due within the command timeout
      c->subscribed = false;
      const std::string& ch = l.store->channel_;
      redisAsyncCommand(c->ac, on_message, c, "SUBSCRIBE %b", ch.data(), ch.size());
      return;
    }
    l.send_waiting(*c);
  }

  void send_waiting(Conn& c) {
    while (c.up && !c.waiting.empty()) {
      if (!send(c, c.waiting.front())) break;
      c.waiting.pop_front();
    }
  }

  static void on_disconnect(const redisAsyncContext* ac, int) {
    auto* c = static_cast<Conn*>(ac->data);
    if (c->ac == ac) c->lane->lost(*c);
  }

  // The connection is gone (hiredis frees it): unanswered commands already came back.
  void lost(Conn& c) {
    if (!c.ac) return;
    c.ac = nullptr;
    c.requeued = 0;
    c.retry_at = now() + (c.timed_out ? settings().reconnect_ms : 0);
    if (c.up) {
      c.up = false;
      store->link_changed(-1, closing);
    }
    if (c.subscriber && index == 0) {
      resync_wanted = false;  // asked again once subscribed
      store->caught_up_ = false;
    }
  }

  static void on_reply(redisAsyncContext*, void* r, void* priv) {
    auto* c = static_cast<Conn*>(priv);
    if (c->inflight.empty()) return;
    Pending p = std::move(c->inflight.front());
    c->inflight.pop_front();
    c->lane->answered(*c, p, static_cast<redisReply*>(r));
  }

  void answered(Conn& c, Pending& p, redisReply* r) {
    RedisStore& st = *store;
    const bool refused = r && r->type == REDIS_REPLY_ERROR;
    switch (p.kind) {
      case Pending::Kind::Op: {
        Op& op = p.op;
        if (!r) {
          // The link went: changes and re-reads are sent again, in order, when it is back.
          if (op.kind == Op::Kind::Fetch) st.fetched(op, !c.timed_out, c.timed_out);
          else c.waiting.insert(c.waiting.begin() + static_cast<ptrdiff_t>(c.requeued++), std::move(op));
          return;
        }
        if (refused)
          SB_LOG_RL(Error, {}, "location: redis refused a command for %s: %.*s", op.aor.c_str(),
                    static_cast<int>(std::min<size_t>(r->len, 200)), r->str);
        if (op.is_write()) {
          {
            std::lock_guard lock(st.mu_);
            if (refused) ++st.stats_.errors;
            else ++st.stats_.written;
          }
          st.acked(op);
        } else if (op.kind == Op::Kind::Refresh) {
          if (!refused) {
            st.track(op.aor);
            // Until the node has re-read Redis since it reconnected, Redis may be a restarted
            // one that lacks our bindings, which the re-read writes again: keep them till then.
            if (st.sink_.apply)
              st.sink_.apply(op.aor, decode_hash(r, settings().node_id, op.aor), !st.caught_up_.load());
            std::lock_guard lock(st.mu_);
            ++st.stats_.refreshes;
          }
        } else {
          // Nothing there changes nothing: a REGISTER may have added the AOR locally meanwhile.
          if (!refused && r->type == REDIS_REPLY_ARRAY && r->elements > 0 && st.sink_.apply)
            st.sink_.apply(op.aor, decode_hash(r, settings().node_id, op.aor), false);
          st.fetched(op, true, false);
        }
        return;
      }
      case Pending::Kind::RunId:
        if (r && r->type == REDIS_REPLY_STRING) scan_run_id = run_id_of({r->str, r->len});
        return;
      case Pending::Kind::Scan:
        if (!r || refused || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
          resync_failed();
          return;
        }
        scan_page(c, r);
        return;
      case Pending::Kind::ScanGet:
        if (!r) {
          resync_failed();
          return;
        }
        scanned.emplace_back(p.op.aor, decode_hash(r, settings().node_id, p.op.aor));
        return;
      case Pending::Kind::ScanEnd:
        if (!r || !resyncing) {
          resync_failed();
          return;
        }
        resyncing = false;
        st.finish_resync(*this, true);
        scanned.clear();
        return;
    }
  }

  static std::string run_id_of(std::string_view info) {
    size_t at = info.find("run_id:");
    if (at == std::string_view::npos) return {};
    size_t end = info.find_first_of("\r\n", at);
    return std::string(info.substr(at + 7, end == std::string_view::npos ? end : end - at - 7));
  }

  void begin_resync() {
    Conn& c = *conns[0];
    if (!c.up) return;
    resync_wanted = false;
    resyncing = true;
    scanned.clear();
    scan_run_id.clear();
    store->set_tracking();
    const std::string match = store->key_prefix_ + "*";
    if (!command(c, Pending::Kind::RunId, {}, "INFO server") ||
        !command(c, Pending::Kind::Scan, {}, "SCAN 0 MATCH %b COUNT 500", match.data(), match.size()))
      resync_failed();
  }

  void scan_page(Conn& c, redisReply* r) {
    if (!resyncing) return;
    std::string cursor(r->element[0]->str, r->element[0]->len);
    const size_t skip = store->key_prefix_.size();
    for (size_t i = 0; i < r->element[1]->elements; ++i) {
      const redisReply* k = r->element[1]->element[i];
      if (k->type != REDIS_REPLY_STRING || k->len <= skip) continue;
      if (!command(c, Pending::Kind::ScanGet, std::string(k->str + skip, k->len - skip), "HGETALL %b", k->str,
                   k->len)) {
        resync_failed();
        return;
      }
    }
    const std::string match = store->key_prefix_ + "*";
    bool ok = cursor == "0" ? command(c, Pending::Kind::ScanEnd, {}, "PING")
                            : command(c, Pending::Kind::Scan, {}, "SCAN %s MATCH %b COUNT 500", cursor.c_str(),
                                      match.data(), match.size());
    if (!ok) resync_failed();
  }

  // Tried again from the start on the next tick the connection is up.
  void resync_failed() {
    if (!resyncing) return;
    resyncing = false;
    resync_wanted = true;
    scanned.clear();
    store->finish_resync(*this, false);
  }

  static void on_message(redisAsyncContext*, void* v, void* priv) {
    auto* c = static_cast<Conn*>(priv);
    auto* r = static_cast<redisReply*>(v);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return;
    std::string_view kind(r->element[0]->str ? r->element[0]->str : "", r->element[0]->len);
    Lane& l = *c->lane;
    if (kind == "subscribe") {
      c->subscribed = true;
      l.store->caught_up_ = false;
      // Changes made while we were not listening: re-read everything.
      l.resync_wanted = true;
      l.on_tick();
    } else if (kind == "message" && r->element[2]->type == REDIS_REPLY_STRING) {
      std::string aor(r->element[2]->str, r->element[2]->len);
      Op op;
      op.kind = Op::Kind::Refresh;
      op.aor = std::move(aor);
      l.store->lane_for(op.aor).post(std::move(op));
    }
  }

  // Connects what is down, gives up on what does not answer, starts a wanted re-read.
  void on_tick() {
    on_loop_thread();
    const RedisSettings& s = settings();
    const uint64_t t = now();
    auto check = [&](Conn& c) {
      if (!c.ac) {
        if (t >= c.retry_at) connect(c);
        return;
      }
      if (!c.up) {
        if (t - c.since >= s.connect_timeout_ms) {
          redisAsyncFree(c.ac);  // not connected: no callback
          failed(c);
        }
        return;
      }
      const bool unconfirmed = c.subscriber && !c.subscribed && t - c.since >= s.command_timeout_ms;
      if (unconfirmed || (!c.inflight.empty() && t - c.inflight.front().sent_ms >= s.command_timeout_ms)) {
        SB_LOG_RL(Warn, {}, "location: redis did not answer within %u ms; reconnecting", s.command_timeout_ms);
        c.timed_out = true;
        redisAsyncFree(c.ac);  // unanswered commands come back null, then on_disconnect
        lost(c);
      }
    };
    for (auto& c : conns) check(*c);
    if (sub) check(*sub);
    if (index == 0 && resync_wanted && !resyncing && sub && sub->up) begin_resync();
  }
};

RedisStore::RedisStore(RedisSettings settings, uint32_t queue_capacity)
    : settings_(std::move(settings)),
      capacity_(queue_capacity == 0 ? 1 : queue_capacity),
      key_prefix_(settings_.prefix + "aor:"),
      channel_(settings_.prefix + "changes") {
  stats_.degraded = true;  // until every link is up
  const uint32_t lanes = std::max<uint32_t>(1, settings_.lanes);
  const uint32_t pool = std::clamp<uint32_t>(settings_.pool_size, 1, 64);
  for (uint32_t i = 0; i < lanes; ++i) {
    auto l = std::make_unique<Lane>();
    l->store = this;
    l->index = i;
    for (uint32_t k = 0; k < pool; ++k) {
      l->conns.push_back(std::make_unique<Conn>());
      l->conns.back()->lane = l.get();
    }
    if (i == 0) {
      l->sub = std::make_unique<Conn>();
      l->sub->lane = l.get();
      l->sub->subscriber = true;
    }
    lanes_.push_back(std::move(l));
  }
  links_total_ = static_cast<int>(lanes * pool + 1);
}

RedisStore::~RedisStore() { close(); }

namespace {

// open()'s one synchronous read, on the caller's thread (never a worker's).
redisContext* connect_sync(const RedisSettings& s, std::string* where) {
  for (const std::string& server : s.servers) {
    std::string host;
    int port = 0;
    if (!split_host_port(server, host, port)) continue;
    redisContext* c = redisConnectWithTimeout(host.c_str(), port, tv_of(s.connect_timeout_ms));
    if (c && !c->err) {
      redisSetTimeout(c, tv_of(s.command_timeout_ms));
      if (where) *where = server;
      return c;
    }
    if (c) redisFree(c);
  }
  return nullptr;
}

bool load_all(redisContext* c, const std::string& prefix, std::string_view self,
              std::vector<std::pair<std::string, std::vector<Binding>>>& out) {
  std::string cursor = "0";
  std::string match = prefix + "*";
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
      std::string aor = k.substr(prefix.size());
      std::vector<Binding> bindings = decode_hash(h, self, aor);
      freeReplyObject(h);
      out.emplace_back(std::move(aor), std::move(bindings));
    }
  } while (cursor != "0");
  return true;
}

}  // namespace

core::Status RedisStore::open(std::vector<StoredBinding>& loaded) {
  if (running_) return {};
  if (settings_.servers.empty()) return core::Error{"location.redis.servers is empty"};
  std::string where;
  if (redisContext* c = connect_sync(settings_, &where)) {
    std::vector<std::pair<std::string, std::vector<Binding>>> aors;
    bool ok = load_all(c, key_prefix_, settings_.node_id, aors);
    if (auto* r = static_cast<redisReply*>(redisCommand(c, "INFO server"))) {
      if (r->type == REDIS_REPLY_STRING) run_id_ = Lane::run_id_of({r->str, r->len});
      freeReplyObject(r);
    }
    redisFree(c);
    uint64_t id = 1;
    for (auto& [aor, bindings] : aors)
      for (Binding& b : bindings) loaded.push_back(StoredBinding{id++, aor, std::move(b)});
    if (ok) SB_INFO("location: redis %s: read %zu AORs", where.c_str(), aors.size());
    else SB_WARN("location: redis %s: reading the stored bindings failed; catching up later", where.c_str());
  } else {
    link_changed(0);
  }
  stopping_ = false;
  running_ = true;
  if (settings_.lanes == 0) {
    std::promise<void> started;
    auto ready = started.get_future();
    own_thread_ = std::thread([this, &started] { run_own_loop(started); });
    ready.wait();  // attached before the first change can come
  }
  return {};
}

void RedisStore::run_own_loop(std::promise<void>& started) {
  core::log::set_thread_name("redis");
  uv_loop_t loop;
  uv_loop_init(&loop);
  lanes_[0]->start(&loop);
  started.set_value();
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
}

void RedisStore::attach(uint32_t lane, uv_loop_s* loop) {
  if (settings_.lanes == 0 || lane >= lanes_.size() || !running_) return;
  lanes_[lane]->start(loop);
}

void RedisStore::detach(uint32_t lane) {
  if (settings_.lanes == 0 || lane >= lanes_.size()) return;
  lanes_[lane]->stop();
}

void RedisStore::set_remote_sink(RemoteSink sink) { sink_ = std::move(sink); }

RedisStore::Lane& RedisStore::lane_for(std::string_view aor) {
  return *lanes_[std::hash<std::string_view>{}(aor) % lanes_.size()];
}

RedisStore::Lane* RedisStore::current_lane() {
  const auto me = std::this_thread::get_id();
  for (auto& l : lanes_)
    if (l->thread.load(std::memory_order_relaxed) == me) return l.get();
  return nullptr;
}

void RedisStore::enqueue(Op op) {
  if (!running_ || stopping_) return;
  {
    std::lock_guard lock(mu_);
    if (unacked_total_ >= capacity_) {
      ++stats_.dropped;
      SB_LOG_RL(Warn, {}, "location: redis queue full (%zu changes); change for %s dropped", capacity_,
                op.aor.c_str());
      return;
    }
    ++unacked_[op.aor];
    ++unacked_total_;
    if (tracking_) touched_.insert(op.aor);
  }
  lane_for(op.aor).post(std::move(op));
}

void RedisStore::acked(const Op& op) {
  std::lock_guard lock(mu_);
  auto it = unacked_.find(op.aor);
  if (it != unacked_.end() && --it->second == 0) unacked_.erase(it);
  if (unacked_total_ > 0) --unacked_total_;
  if (tracking_) touched_.insert(op.aor);
  if (unacked_total_ == 0) acked_.notify_all();
}

void RedisStore::track(std::string_view aor) {
  std::lock_guard lock(mu_);
  if (tracking_) touched_.emplace(aor);
}

void RedisStore::set_tracking() {
  std::lock_guard lock(mu_);
  touched_.clear();
  tracking_ = true;
}

void RedisStore::fetched(Op& op, bool ok, bool timed_out) {
  fetches_waiting_.fetch_sub(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(mu_);
    ++stats_.fetches;
    if (timed_out) ++stats_.fetch_failures;
  }
  if (op.done) op.done(ok);
}

void RedisStore::link_changed(int delta, bool quiet) {
  std::lock_guard lock(mu_);
  links_up_ += delta;
  if (delta < 0 && !quiet) ++stats_.disconnects;
  const bool degraded = links_up_ < links_total_;
  if (degraded && delta <= 0 && !warned_ && !stopping_ && !quiet) {
    // Logged once per outage: registrations go on in the local table meanwhile.
    SB_WARN("location: redis %s unreachable; degraded (bindings stay local and are written when it is back)",
            settings_.servers.empty() ? "" : settings_.servers.front().c_str());
    warned_ = true;
  } else if (!degraded && warned_) {
    SB_INFO("location: redis reachable again; writing %zu queued changes", unacked_total_);
    warned_ = false;
  }
  stats_.degraded = degraded;
  acked_.notify_all();
}

void RedisStore::finish_resync(Lane& l, bool ok) {
  std::unordered_set<std::string> skip;
  bool restarted = false;
  {
    std::lock_guard lock(mu_);
    tracking_ = false;
    skip.swap(touched_);
    if (!ok) return;
    // Changes made here since the scan began, or still on their way, are newer than what it read.
    for (const auto& [aor, n] : unacked_) skip.insert(aor);
    restarted = !run_id_.empty() && !l.scan_run_id.empty() && l.scan_run_id != run_id_;
    if (!l.scan_run_id.empty()) run_id_ = l.scan_run_id;
  }
  // What Redis holds: the fields of every AOR read.
  std::unordered_map<std::string, std::unordered_set<std::string>> present;
  for (const auto& [aor, bindings] : l.scanned) {
    auto& fields = present[aor];
    for (const Binding& b : bindings) fields.insert(redis_field(b.contact, b.instance, b.reg_id));
  }
  // First the bindings Redis lacks, while the table still holds them all: a restarted Redis
  // may have come back with part of an AOR (one of its bindings changed during the outage).
  if (sink_.reconcile)
    sink_.reconcile(
        [&](const BindingKey& k) {
          std::string aor(k.aor);
          auto it = present.find(aor);
          if (it != present.end() && it->second.count(redis_field(k.contact, k.instance, k.reg_id)))
            return Stored::Yes;
          return skip.count(aor) ? Stored::Unknown : Stored::No;
        },
        restarted);
  if (restarted) SB_WARN("location: redis restarted; this node's bindings it lacked are written again");
  // Then what Redis holds, except over changes on their way (the ones just written again
  // included: their PUBLISH brings the whole AOR back).
  {
    std::lock_guard lock(mu_);
    for (const auto& [aor, n] : unacked_) skip.insert(aor);
  }
  for (auto& [aor, bindings] : l.scanned)
    if (!skip.count(aor) && sink_.apply) sink_.apply(aor, std::move(bindings), false);
  // Caught up, unless the subscriber re-subscribed meanwhile: then the next re-read is.
  if (!l.resync_wanted) caught_up_ = true;
  SB_DEBUG("location: redis resync: %zu AORs", l.scanned.size());
}

void RedisStore::save(StoredBinding row) {
  Op op;
  op.kind = Op::Kind::Set;
  op.field = redis_field(row.binding.contact, row.binding.instance, row.binding.reg_id);
  op.aor = std::move(row.aor);
  op.binding = std::move(row.binding);
  enqueue(std::move(op));
}

void RedisStore::erase(uint64_t) {}

void RedisStore::remove(const BindingKey& key) {
  if (key.aor.empty()) return;
  Op op;
  op.kind = key.expired ? Op::Kind::Expire : Op::Kind::Del;
  op.aor = std::string(key.aor);
  op.field = redis_field(key.contact, key.instance, key.reg_id);
  if (key.expired) op.value = std::to_string(key.expires_at);
  enqueue(std::move(op));
}

bool RedisStore::fetch(std::string_view aor, std::function<void(bool ok)> done) {
  if (!running_ || stopping_) return false;
  {
    std::lock_guard lock(mu_);
    // Degraded: answer from the local table at once rather than wait for a timeout.
    if (stats_.degraded) return false;
  }
  // STYLE.md 10: the reads waiting are bounded; past it a request runs on the local table.
  if (fetches_waiting_.fetch_add(1, std::memory_order_relaxed) >= kMaxWaitingFetches) {
    fetches_waiting_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  Op op;
  op.kind = Op::Kind::Fetch;
  op.aor = std::string(aor);
  op.done = std::move(done);
  if (Lane* l = current_lane()) {
    // The asking worker's own connection: no hand-off.
    Conn& c = l->read_conn();
    if (c.up && l->send(c, op)) return true;
    fetches_waiting_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  lane_for(aor).post(std::move(op));
  return true;
}

void RedisStore::flush() {
  if (!running_) return;
  for (auto& l : lanes_) {
    std::lock_guard lock(l->mu);
    if (l->attached) uv_async_send(&l->async);
  }
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(settings_.connect_timeout_ms + settings_.command_timeout_ms + 100);
  std::unique_lock lock(mu_);
  acked_.wait_until(lock, deadline, [&] {
    return unacked_total_ == 0 || attached_lanes_.load() == 0 || (stats_.degraded && warned_);
  });
}

void RedisStore::close() {
  if (!running_) return;
  flush();
  stopping_ = true;
  if (own_thread_.joinable()) {
    Lane& l = *lanes_[0];
    {
      std::lock_guard lock(l.mu);
      l.stop_loop = true;
      if (l.attached) uv_async_send(&l.async);
    }
    own_thread_.join();
  }
  running_ = false;
}

StoreStats RedisStore::stats() const {
  std::lock_guard lock(mu_);
  StoreStats s = stats_;
  s.queued = unacked_total_;
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
