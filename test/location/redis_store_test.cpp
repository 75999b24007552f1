// RedisStore against a real redis-server (a dependency: the test fails when it is missing),
// started on a free loopback port in a temp directory and stopped by PID.
#include "location/redis_store.h"

#include <doctest/doctest.h>
#include <hiredis/hiredis.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <map>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "location/location_service.h"

using namespace sb;
using location::BindingChange;
using location::LocationService;
using location::RedisStore;

namespace {

uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Polls `ok` every 5 ms for up to `ms`: the waits below observe something another thread or
// process does, there is no clock to inject.
bool eventually(const std::function<bool()>& ok, int ms = 5000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
    if (ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return ok();
}

struct RedisServer {
  uint16_t port = 0;
  pid_t pid = -1;
  std::string dir;

  RedisServer() : port(free_port()) {
    char tmpl[] = "/tmp/sb_redis_test_XXXXXX";
    dir = mkdtemp(tmpl);
    start();
  }
  ~RedisServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  void start() {
    pid = fork();
    if (pid == 0) {
      std::string log = dir + "/redis.log";
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      std::string p = std::to_string(port);
      execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", dir.c_str(), "--loglevel", "warning", static_cast<char*>(nullptr));
      _exit(127);
    }
    REQUIRE(pid > 0);
    bool up = eventually([&] {
      int status = 0;
      REQUIRE_MESSAGE(waitpid(pid, &status, WNOHANG) == 0, "redis-server (a dependency) did not start");
      redisReply* r = command("PING");
      bool ok = r && r->type == REDIS_REPLY_STATUS;
      if (r) freeReplyObject(r);
      return ok;
    });
    REQUIRE_MESSAGE(up, "redis-server did not answer PING");
  }
  void stop() {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    pid = -1;
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
  // One command on a fresh connection (null when Redis does not answer).
  redisReply* command(const char* fmt, ...) {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
      if (c) redisFree(c);
      return nullptr;
    }
    va_list ap;
    va_start(ap, fmt);
    auto* r = static_cast<redisReply*>(redisvCommand(c, fmt, ap));
    va_end(ap);
    redisFree(c);
    return r;
  }
  // HGETALL as field -> value.
  std::map<std::string, std::string> hgetall(const std::string& key) {
    std::map<std::string, std::string> out;
    redisReply* r = command("HGETALL %s", key.c_str());
    if (r && r->type == REDIS_REPLY_ARRAY)
      for (size_t i = 0; i + 1 < r->elements; i += 2)
        out[std::string(r->element[i]->str, r->element[i]->len)] =
            std::string(r->element[i + 1]->str, r->element[i + 1]->len);
    if (r) freeReplyObject(r);
    return out;
  }
  // How many connections Redis has subscribed to `channel` (PUBSUB NUMSUB).
  long long subscribers(const std::string& channel) {
    redisReply* r = command("PUBSUB NUMSUB %s", channel.c_str());
    long long v = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                          r->element[1]->type == REDIS_REPLY_INTEGER
                      ? r->element[1]->integer
                      : -1;
    if (r) freeReplyObject(r);
    return v;
  }
  long long integer(const char* fmt, const std::string& arg) {
    redisReply* r = command(fmt, arg.c_str());
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
    if (r) freeReplyObject(r);
    return v;
  }
};

location::Settings manual() {
  location::Settings s;
  s.sweep_interval_ms = 0;
  return s;
}

// lanes == 0: the store runs its own loop; else workers lend theirs (join_lane).
std::unique_ptr<RedisStore> store_for(const RedisServer& server, const std::string& node, uint32_t lanes = 0,
                                      uint32_t pool_size = 1, uint32_t capacity = 1000) {
  location::RedisSettings rs;
  rs.servers = {server.address()};
  rs.node_id = node;
  rs.reconnect_ms = 50;
  rs.connect_timeout_ms = 500;
  rs.command_timeout_ms = 500;
  rs.lanes = lanes;
  rs.pool_size = pool_size;
  return std::make_unique<RedisStore>(rs, capacity);
}

location::UpdateRequest request(std::string_view call_id, uint32_t cseq) {
  location::UpdateRequest r;
  r.call_id = call_id;
  r.cseq = cseq;
  r.source.endpoint = *core::Endpoint::parse("127.0.0.1", 5070);
  return r;
}

BindingChange contact(std::string_view uri, uint32_t expires) {
  BindingChange c;
  c.contact = uri;
  c.expires = expires;
  return c;
}

// Waits until `loc` (a store of one connection: lanes 0, pool_size 1) has subscribed and
// listed the keys its re-read then does (SCAN, sent on subscribing): a key written after that
// is not read by it, only by a read-through. Shown by one of its own changes coming back by
// pub/sub (its re-read goes over that one connection, after the SCAN); made again until one
// does, as one made before it subscribed never comes back.
void subscribed(LocationService& loc) {
  const uint64_t before = loc.store_stats().refreshes;
  BindingChange c = contact("sip:probe@127.0.0.1:5001", 60);
  uint32_t cseq = 0;
  bool ok = eventually([&] {
    if (loc.store_stats().refreshes > before) return true;
    auto changed = loc.update("sip:probe@example.com", request("probe", ++cseq), {&c, 1});
    (void)changed;
    return false;
  });
  REQUIRE_MESSAGE(ok, "the node never heard its own change back");
}

// Text made of its parts (GCC 12 at -O3 warns, wrongly, on "literal" + std::to_string(n)).
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
}

// The Contact URIs a node's table holds for `aor`, sorted.
std::set<std::string> contacts_of(const LocationService& loc, std::string_view aor) {
  std::set<std::string> out;
  for (const auto& b : loc.lookup(aor)) out.insert(b.contact);
  return out;
}

// The hash fields Redis holds for `aor` (prefix "sb:").
std::set<std::string> fields_of(RedisServer& redis, std::string_view aor) {
  std::set<std::string> out;
  for (const auto& [field, value] : redis.hgetall("sb:aor:" + std::string(aor))) out.insert(field);
  return out;
}

// An AOR named `stem<n>@example.com` that RedisStore writes on lane `lane` of `lanes`, over
// connection `conn` of its pool (hash(AOR) % lanes, then / lanes % pool_size): so a test covers
// every lane and connection. Should the store hash otherwise, the test still holds, it only
// covers less.
std::string aor_on(std::string_view stem, uint32_t lane, uint32_t conn, uint32_t lanes, uint32_t pool) {
  for (int n = 0;; ++n) {
    std::string aor = cat("sip:", stem, std::to_string(n), "@example.com");
    size_t h = std::hash<std::string_view>{}(aor);
    if (h % lanes == lane && (h / lanes) % pool == conn) return aor;
  }
}

// A libuv loop on a thread of its own, as a worker runs one: closures posted to it run on that
// thread. finish() lets go of our own handle; the loop then ends by itself once nothing else
// (the store) holds it, and `ended` says so.
struct LoopThread {
  uv_loop_t loop{};
  uv_async_t wake{};
  std::mutex mu;
  std::vector<std::function<void()>> tasks;
  std::atomic<bool> ended{false};
  int close_rc = -1;  // uv_loop_close once the loop ended: 0 when no handle was left
  std::thread thread;
  std::thread::id id;

  LoopThread() {
    uv_loop_init(&loop);
    wake.data = this;
    uv_async_init(&loop, &wake, [](uv_async_t* a) { static_cast<LoopThread*>(a->data)->run_tasks(); });
    thread = std::thread([this] {
      uv_run(&loop, UV_RUN_DEFAULT);
      close_rc = uv_loop_close(&loop);
      ended = true;
    });
    id = thread.get_id();
  }
  ~LoopThread() { thread.join(); }  // ended (see ends())
  void post(std::function<void()> f) {
    {
      std::lock_guard lock(mu);
      tasks.push_back(std::move(f));
    }
    uv_async_send(&wake);
  }
  // Runs `f` on the loop's thread and returns once it has.
  void run(const std::function<void()>& f) {
    std::promise<void> done;
    post([&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }
  void run_tasks() {
    std::vector<std::function<void()>> now;
    {
      std::lock_guard lock(mu);
      now.swap(tasks);
    }
    for (auto& f : now) f();
  }
  // Nothing may be posted after this.
  void finish() {
    post([this] { uv_close(reinterpret_cast<uv_handle_t*>(&wake), nullptr); });
  }
};

// Lets go of `w`'s loop and waits (bounded) until it ended: true when it did, with no handle
// left behind. When it does not end, something still holds it: the thread is left running and
// its LoopThread leaked, so the test fails instead of hanging.
bool ends(std::unique_ptr<LoopThread>& w) {
  w->finish();
  if (!eventually([&] { return w->ended.load(); })) {
    w.release()->thread.detach();
    return false;
  }
  int rc = w->close_rc;
  w.reset();
  return rc == 0;
}

}  // namespace

TEST_CASE("redis binding encoding round-trips and names fields by contact or flow") {
  location::Binding b;
  b.contact = "sip:alice@192.0.2.1:5062;transport=tcp";
  b.params = "+sip.ice";
  b.q = 700;
  b.expires_at = 1'700'000'123'456;
  b.call_id = "abc@h";
  b.cseq = 42;
  b.source.protocol = core::Protocol::Tcp;
  b.source.endpoint = *core::Endpoint::parse("2001:db8::1", 40000);
  b.source.connection = {1, 17};
  b.path = {"<sip:edge;lr>"};
  b.instance = "\"<urn:uuid:ABC>\"";
  b.reg_id = 1;
  b.user_agent = "Phone \xff";  // invalid UTF-8 is replaced, not thrown on
  b.received_at = 1'700'000'000'000;
  std::string v = location::redis_encode(b, "node-a");
  CHECK(v.find("\"expires_at\":1700000123456") != std::string::npos);

  std::string owner;
  auto mine = location::redis_decode(v, "node-a", &owner);
  REQUIRE(mine);
  CHECK(owner == "node-a");
  CHECK(mine->contact == b.contact);
  CHECK(mine->params == b.params);
  CHECK(mine->q == 700);
  CHECK(mine->expires_at == b.expires_at);
  CHECK(mine->cseq == 42);
  CHECK(mine->source.protocol == core::Protocol::Tcp);
  CHECK(mine->source.endpoint == b.source.endpoint);
  CHECK(mine->source.connection == b.source.connection);
  CHECK(mine->path == b.path);
  CHECK(mine->instance == b.instance);
  CHECK(mine->reg_id == 1);
  // Another node's connection numbers mean nothing here.
  auto theirs = location::redis_decode(v, "node-b");
  REQUIRE(theirs);
  CHECK_FALSE(theirs->source.connection.valid());
  // ... nor does the far end of that node's TCP connection: reached at the Contact instead.
  CHECK_FALSE(theirs->source.endpoint.valid());
  b.source.protocol = core::Protocol::Udp;
  b.instance.clear();
  auto udp = location::redis_decode(location::redis_encode(b, "node-a"), "node-b");
  REQUIRE(udp);
  CHECK(udp->source.endpoint == b.source.endpoint);

  // With the owner's URI, another node reaches a TCP flow through the owner (RFC 3327).
  b.source.protocol = core::Protocol::Tcp;
  std::string routed = location::redis_encode(b, "node-a", "sip:192.0.2.10:5060;transport=udp");
  auto via_owner = location::redis_decode(routed, "node-b", nullptr, "sip:alice@example.com");
  REQUIRE(via_owner);
  REQUIRE(via_owner->path.size() == 2);
  CHECK(via_owner->path[0] == location::owner_route("sip:192.0.2.10:5060;transport=udp", "sip:alice@example.com"));
  CHECK(via_owner->path[0].starts_with("<sip:192.0.2.10:5060;transport=udp;lr;sb-aor="));
  CHECK(via_owner->path[1] == "<sip:edge;lr>");
  auto self_copy = location::redis_decode(routed, "node-a", nullptr, "sip:alice@example.com");
  REQUIRE(self_copy);
  CHECK(self_copy->path.size() == 1);  // the owner itself relays over the connection
  std::string hex = via_owner->path[0].substr(via_owner->path[0].find("sb-aor=") + 7);
  hex.pop_back();
  CHECK(location::owner_route_aor(hex) == std::optional<std::string>("sip:alice@example.com"));
  CHECK_FALSE(location::owner_route_aor("zz"));
  CHECK_FALSE(location::owner_route_aor("abc"));
  CHECK_FALSE(location::owner_route_aor(""));

  CHECK_FALSE(location::redis_decode("not json", "x"));
  CHECK_FALSE(location::redis_decode("{\"contact\":5,\"expires_at\":\"x\"}", "x"));
  CHECK_FALSE(location::redis_decode("[1,2]", "x"));

  CHECK(location::redis_field("sip:a@h", "", 0) == "c:sip:a@h");
  CHECK(location::redis_field("sip:a@h", "\"<urn:uuid:ABC>\"", 2) == "i:<urn:uuid:abc>;2");
  CHECK(location::redis_field("sip:a@h", "\"<urn:uuid:ABC>\"", 0) == "c:sip:a@h");
}

TEST_CASE("bindings are written through to redis with a TTL, and read back on start") {
  RedisServer redis;
  core::SystemClock clock;
  {
    LocationService loc(clock, manual(), store_for(redis, "a"));
    REQUIRE(loc.start());
    BindingChange c[] = {contact("sip:alice@127.0.0.1:5070", 60), contact("sip:alice@127.0.0.1:5071", 120)};
    REQUIRE(loc.update("sip:alice@example.com", request("c1", 1), c));
    loc.stop();  // flushes
    CHECK(loc.store_stats().errors == 0);
  }
  auto h = redis.hgetall("sb:aor:sip:alice@example.com");
  REQUIRE(h.size() == 2);
  CHECK(h.count("c:sip:alice@127.0.0.1:5070"));
  long long pttl = redis.integer("PTTL %s", "sb:aor:sip:alice@example.com");
  CHECK(pttl > 110'000);  // the longest binding's expiry
  CHECK(pttl <= 120'000);

  // Another node starting later reads what is stored.
  LocationService other(clock, manual(), store_for(redis, "b"));
  REQUIRE(other.start());
  auto got = other.lookup("sip:alice@example.com");
  REQUIRE(got.size() == 2);
  CHECK(got[0].contact.starts_with("sip:alice@127.0.0.1:507"));
  other.stop();
}

TEST_CASE("two nodes see each other's registrations and removals through pub/sub") {
  RedisServer redis;
  core::SystemClock clock;
  LocationService a(clock, manual(), store_for(redis, "a"));
  LocationService b(clock, manual(), store_for(redis, "b"));
  REQUIRE(a.start());
  REQUIRE(b.start());
  REQUIRE(eventually([&] { return !a.store_stats().degraded && !b.store_stats().degraded; }));

  BindingChange c = contact("sip:bob@127.0.0.1:5080", 300);
  REQUIRE(a.update("sip:bob@example.com", request("x1", 1), {&c, 1}));
  REQUIRE(eventually([&] { return b.lookup("sip:bob@example.com").size() == 1; }));
  auto seen = b.lookup("sip:bob@example.com");
  CHECK(seen[0].call_id == "x1");
  CHECK(seen[0].cseq == 1);

  // De-registration on b (same Call-ID, higher CSeq, as the UA would send) reaches a.
  BindingChange off = contact("sip:bob@127.0.0.1:5080", 0);
  auto out = b.update("sip:bob@example.com", request("x1", 2), {&off, 1});
  REQUIRE(out);
  CHECK(out->removed == 1);
  REQUIRE(eventually([&] { return a.lookup("sip:bob@example.com").empty(); }));
  REQUIRE(eventually([&] { return redis.hgetall("sb:aor:sip:bob@example.com").empty(); }));
  CHECK(b.store_stats().refreshes > 0);

  // An operator's removal through a's admin API too.
  REQUIRE(b.update("sip:carol@example.com", request("y", 1), {&c, 1}));
  REQUIRE(eventually([&] { return a.lookup("sip:carol@example.com").size() == 1; }));
  CHECK(a.remove_all("sip:carol@example.com") == 1);
  REQUIRE(eventually([&] { return b.lookup("sip:carol@example.com").empty(); }));
  a.stop();
  b.stop();
}

TEST_CASE("an expiry removes the stored binding only when nobody refreshed it") {
  RedisServer redis;
  core::FakeClock clock(0, core::SystemClock().wall_ms());
  LocationService a(clock, manual(), store_for(redis, "a"));
  REQUIRE(a.start());
  REQUIRE(eventually([&] { return !a.store_stats().degraded; }));
  // Connected is not yet subscribed: a change published before Redis has the SUBSCRIBE never
  // comes back (the re-read on subscribing does not count as a refresh).
  REQUIRE(eventually([&] { return redis.subscribers("sb:changes") >= 1; }));
  BindingChange c = contact("sip:dan@127.0.0.1:5090", 30);
  REQUIRE(a.update("sip:dan@example.com", request("d", 1), {&c, 1}));
  // a re-reads its own change once published; after that nothing else re-reads dan.
  REQUIRE(eventually([&] { return a.store_stats().refreshes >= 1; }));
  REQUIRE(eventually([&] { return redis.hgetall("sb:aor:sip:dan@example.com").size() == 1; }));

  // Someone else refreshed it in redis meanwhile (a later expiry): a's sweep must keep it.
  std::string field = "c:sip:dan@127.0.0.1:5090";
  auto v = redis.hgetall("sb:aor:sip:dan@example.com")[field];
  auto b = location::redis_decode(v, "x");
  REQUIRE(b);
  b->expires_at += 3'600'000;
  std::string nv = location::redis_encode(*b, "b");
  redisReply* r = redis.command("HSET %s %s %s", "sb:aor:sip:dan@example.com", field.c_str(), nv.c_str());
  REQUIRE(r);
  freeReplyObject(r);
  clock.advance(31'000);
  CHECK(a.sweep(clock.wall_ms()) == 1);
  // Written in order: an unrelated change after the expiry shows when it has been processed.
  BindingChange e = contact("sip:eve@127.0.0.1:5091", 30);
  REQUIRE(a.update("sip:eve@example.com", request("e", 1), {&e, 1}));
  REQUIRE(eventually([&] { return redis.hgetall("sb:aor:sip:eve@example.com").size() == 1; }));
  REQUIRE(eventually([&] { return a.store_stats().refreshes >= 2; }));
  CHECK(redis.hgetall("sb:aor:sip:dan@example.com").size() == 1);

  // Not refreshed: the expiry removes it.
  clock.advance(31'000);
  CHECK(a.sweep(clock.wall_ms()) == 1);  // eve
  REQUIRE(eventually([&] { return redis.hgetall("sb:aor:sip:eve@example.com").empty(); }));
  a.stop();
}

TEST_CASE("redis down: registrations stay local, degraded is reported, and they are written when it is back") {
  RedisServer redis;
  core::SystemClock clock;
  LocationService a(clock, manual(), store_for(redis, "a"));
  LocationService b(clock, manual(), store_for(redis, "b"));
  REQUIRE(a.start());
  REQUIRE(b.start());
  REQUIRE(eventually([&] { return !a.store_stats().degraded; }));

  redis.stop();
  REQUIRE(eventually([&] { return a.store_stats().degraded; }));
  BindingChange c = contact("sip:frank@127.0.0.1:5095", 300);
  REQUIRE(a.update("sip:frank@example.com", request("f", 1), {&c, 1}));
  CHECK(a.lookup("sip:frank@example.com").size() == 1);  // the local table serves
  CHECK(a.store_stats().disconnects >= 1);

  redis.start();  // same port, empty: nothing persisted
  REQUIRE(eventually([&] { return !a.store_stats().degraded; }));
  REQUIRE(eventually([&] { return redis.hgetall("sb:aor:sip:frank@example.com").size() == 1; }));
  // b catches up too (its resync after reconnecting, or the change's publish).
  REQUIRE(eventually([&] { return b.lookup("sip:frank@example.com").size() == 1; }));
  a.stop();
  b.stop();
}

TEST_CASE("a store whose redis never answers starts degraded and does not block") {
  location::RedisSettings rs;
  rs.servers = {"127.0.0.1:" + std::to_string(free_port())};
  rs.node_id = "lonely";
  rs.reconnect_ms = 50;
  rs.connect_timeout_ms = 100;
  core::SystemClock clock;
  LocationService loc(clock, manual(), std::make_unique<RedisStore>(rs, 2));
  REQUIRE(loc.start());
  CHECK(loc.store_stats().degraded);
  BindingChange c = contact("sip:g@127.0.0.1:5096", 300);
  for (int i = 0; i < 4; ++i) {
    auto req = request("g", static_cast<uint32_t>(i + 1));
    REQUIRE(loc.update("sip:g@example.com", req, {&c, 1}));
  }
  CHECK(loc.store_stats().dropped == 2);  // queue_capacity 2: the rest were counted and dropped
  CHECK(loc.lookup("sip:g@example.com").size() == 1);
  loc.stop();  // returns although nothing could be written
}

TEST_CASE("a lookup that missed reads through; a Redis that does not answer fails it in time") {
  RedisServer redis;
  core::SystemClock clock;
  LocationService b(clock, manual(), store_for(redis, "b"));
  REQUIRE(b.start());
  REQUIRE(eventually([&] { return !b.store_stats().degraded; }));
  subscribed(b);  // else b's first re-read of the keyspace may find hank
  // Written by someone whose PUBLISH b did not see (as if b missed it).
  location::Binding x;
  x.contact = "sip:hank@127.0.0.1:5097";
  x.expires_at = clock.wall_ms() + 60'000;
  std::string v = location::redis_encode(x, "a");
  redisReply* r = redis.command("HSET sb:aor:sip:hank@example.com c:sip:hank@127.0.0.1:5097 %s", v.c_str());
  REQUIRE(r);
  freeReplyObject(r);
  CHECK_FALSE(b.has("sip:hank@example.com"));

  std::atomic<int> answer{-1};
  REQUIRE(b.fetch("sip:hank@example.com", [&](bool ok) { answer = ok ? 1 : 0; }));
  REQUIRE(eventually([&] { return answer != -1; }));
  CHECK(answer == 1);
  CHECK(b.has("sip:hank@example.com"));
  CHECK(b.lookup("sip:hank@example.com").size() == 1);

  // Nothing stored: answered, nothing cached.
  answer = -1;
  REQUIRE(b.fetch("sip:nobody@example.com", [&](bool ok) { answer = ok ? 1 : 0; }));
  REQUIRE(eventually([&] { return answer != -1; }));
  CHECK(answer == 1);
  CHECK_FALSE(b.has("sip:nobody@example.com"));

  // Redis hangs (SIGSTOP): the read fails within the command timeout (500 ms here).
  kill(redis.pid, SIGSTOP);
  answer = -1;
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(b.fetch("sip:ivan@example.com", [&](bool ok) { answer = ok ? 1 : 0; }));
  REQUIRE(eventually([&] { return answer != -1; }, 3000));
  CHECK(answer == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(2000));
  CHECK(b.store_stats().fetch_failures == 1);
  kill(redis.pid, SIGCONT);

  // Gone: a read that finds Redis refusing is answered "go on locally", never failed.
  REQUIRE(eventually([&] {
    std::atomic<int> probe{-1};
    if (!b.fetch("sip:probe@example.com", [&](bool ok) { probe = ok ? 1 : 0; })) return false;
    return eventually([&] { return probe != -1; }) && probe == 1;
  }));
  redis.stop();
  answer = -1;
  if (b.fetch("sip:ivan@example.com", [&](bool ok) { answer = ok ? 1 : 0; })) {
    REQUIRE(eventually([&] { return answer != -1; }));
    CHECK(answer == 1);
  }
  // Down: nothing to wait for, the caller goes on with the local table.
  REQUIRE(eventually([&] { return b.store_stats().degraded; }));
  CHECK_FALSE(b.fetch("sip:ivan@example.com", [](bool) {}));
  b.stop();
}

TEST_CASE("at most 1024 read-throughs wait at a time; past that the caller runs on the local table") {
  RedisServer redis;
  core::SystemClock clock;
  LocationService b(clock, manual(), store_for(redis, "b"));
  REQUIRE(b.start());
  REQUIRE(eventually([&] { return !b.store_stats().degraded; }));
  // Redis hangs: every read waits for it (at most the command timeout, 500 ms here).
  kill(redis.pid, SIGSTOP);
  std::atomic<int> answered{0};
  int accepted = 0;
  for (int i = 0; i < 1025; ++i)
    if (b.fetch(cat("sip:w", std::to_string(i), "@example.com"), [&](bool) { ++answered; })) ++accepted;
  kill(redis.pid, SIGCONT);
  CHECK(accepted == 1024);
  REQUIRE(eventually([&] { return answered == 1024; }));
  // Every one answered: the bound is free again.
  REQUIRE(eventually([&] { return !b.store_stats().degraded; }));
  answered = 0;
  REQUIRE(b.fetch("sip:w0@example.com", [&](bool) { ++answered; }));
  REQUIRE(eventually([&] { return answered == 1; }));
  b.stop();
}

TEST_CASE("the store is replaced live: memory to redis and back, the table kept and merged") {
  RedisServer redis;
  core::SystemClock clock;
  // Something another node stored before we join.
  location::Binding other;
  other.contact = "sip:jo@127.0.0.1:5098";
  other.expires_at = clock.wall_ms() + 60'000;
  std::string v = location::redis_encode(other, "n2");
  redisReply* r = redis.command("HSET sb:aor:sip:jo@example.com c:sip:jo@127.0.0.1:5098 %s", v.c_str());
  REQUIRE(r);
  freeReplyObject(r);

  LocationService loc(clock, manual(), nullptr);  // memory only
  REQUIRE(loc.start());
  BindingChange c = contact("sip:kim@127.0.0.1:5099", 300);
  REQUIRE(loc.update("sip:kim@example.com", request("k", 1), {&c, 1}));
  CHECK_FALSE(loc.shared());

  auto prepared = loc.prepare_store(store_for(redis, "a"));
  REQUIRE(prepared);
  loc.commit_store(std::move(*prepared));
  CHECK(loc.shared());
  CHECK(loc.lookup("sip:kim@example.com").size() == 1);  // kept
  CHECK(loc.lookup("sip:jo@example.com").size() == 1);   // taken from redis
  REQUIRE(eventually([&] { return redis.hgetall("sb:aor:sip:kim@example.com").size() == 1; }));
  // Changes go to the new store from now on.
  BindingChange d = contact("sip:lee@127.0.0.1:5100", 300);
  REQUIRE(loc.update("sip:lee@example.com", request("l", 1), {&d, 1}));
  REQUIRE(eventually([&] { return redis.hgetall("sb:aor:sip:lee@example.com").size() == 1; }));

  // Back to memory: the redis store is closed, the table stays.
  auto back = loc.prepare_store(nullptr);
  REQUIRE(back);
  loc.commit_store(std::move(*back));
  CHECK_FALSE(loc.shared());
  REQUIRE(loc.update("sip:mo@example.com", request("m", 1), {&c, 1}));
  CHECK(loc.size() == 4);
  CHECK(redis.hgetall("sb:aor:sip:mo@example.com").empty());
  loc.stop();
}

TEST_CASE("lanes: two workers' loops share the store; changes keep their order per AOR, reads answer on the asking loop") {
  constexpr uint32_t kLanes = 2, kPool = 2;
  constexpr uint32_t kSteps = 100;
  RedisServer redis;
  core::SystemClock clock;
  LocationService a(clock, manual(), store_for(redis, "a", kLanes, kPool, 65536));
  LocationService b(clock, manual(), store_for(redis, "b"));
  REQUIRE(a.start());
  REQUIRE(b.start());
  CHECK(a.store_stats().degraded);  // no worker lent a loop yet: nothing is connected

  // Two workers: each lends its loop from its own thread, as SipWorker does.
  std::unique_ptr<LoopThread> w[kLanes] = {std::make_unique<LoopThread>(), std::make_unique<LoopThread>()};
  for (uint32_t k = 0; k < kLanes; ++k) w[k]->run([&, k] { a.join_lane(k, &w[k]->loop); });
  REQUIRE(eventually([&] { return !a.store_stats().degraded && !b.store_stats().degraded; }));

  // Each worker churns AORs of every lane and connection, and one AOR both churn at once: every
  // step registers a new Contact and removes the previous one. Any change reaching Redis out of
  // its order would leave a Contact behind (a removal before its own registration) or lose the
  // last one.
  const std::string shared = aor_on("both", 1, 1, kLanes, kPool);
  std::vector<std::string> aors[kLanes];
  for (uint32_t k = 0; k < kLanes; ++k) {
    for (uint32_t lane = 0; lane < kLanes; ++lane)
      for (uint32_t conn = 0; conn < kPool; ++conn)
        aors[k].push_back(aor_on(cat("w", std::to_string(k), "-"), lane, conn, kLanes, kPool));
    aors[k].push_back(shared);
  }
  auto contact_uri = [](uint32_t k, uint32_t step) {
    return cat("sip:u", std::to_string(k), "@127.0.0.1:", std::to_string(10000 + step));
  };
  std::atomic<int> refused{0};
  std::promise<void> churned[kLanes];
  for (uint32_t k = 0; k < kLanes; ++k)
    w[k]->post([&, k] {
      const std::string call_id = cat("churn-", std::to_string(k));
      for (uint32_t step = 1; step <= kSteps; ++step) {
        const std::string now = contact_uri(k, step), before = contact_uri(k, step - 1);
        BindingChange c[] = {contact(now, 300), contact(before, 0)};
        for (const std::string& aor : aors[k])
          if (!a.update(aor, request(call_id, step), std::span(c, step == 1 ? 1 : 2))) ++refused;
      }
      churned[k].set_value();
    });
  for (auto& p : churned) p.get_future().wait();
  CHECK(refused == 0);

  // One Set, then a Set and a Del per step, per worker and AOR.
  const uint64_t changes = uint64_t(kLanes) * aors[0].size() * (2 * kSteps - 1);
  REQUIRE(eventually([&] { return a.store_stats().queued == 0; }, 10000));
  location::StoreStats st = a.store_stats();
  CHECK(st.written == changes);
  CHECK(st.errors == 0);
  CHECK(st.dropped == 0);
  for (uint32_t k = 0; k < kLanes; ++k)
    for (const std::string& aor : aors[k]) {
      CAPTURE(aor);
      std::set<std::string> want = {contact_uri(k, kSteps)};
      if (aor == shared) want = {contact_uri(0, kSteps), contact_uri(1, kSteps)};
      std::set<std::string> fields;
      for (const auto& c : want) fields.insert("c:" + c);
      CHECK(fields_of(redis, aor) == fields);
      // Both tables end where Redis is (a's own re-reads included).
      CHECK(eventually([&] { return contacts_of(a, aor) == want; }));
      CHECK(eventually([&] { return contacts_of(b, aor) == want; }));
    }

  // A read-through issued on a worker's thread is answered on that thread, for an AOR of its
  // own lane or of the other one. Written without PUBLISH: only a read finds them.
  location::Binding x;
  x.expires_at = clock.wall_ms() + 60'000;
  struct Read {
    std::string aor;
    bool issued = false;
    std::atomic<int> ok{-1};
    std::thread::id answered_on;
  };
  Read reads[kLanes][kLanes];
  for (uint32_t k = 0; k < kLanes; ++k)
    for (uint32_t lane = 0; lane < kLanes; ++lane) {
      Read& r = reads[k][lane];
      r.aor = aor_on(cat("read", std::to_string(k), "-"), lane, 0, kLanes, kPool);
      x.contact = cat("sip:r@127.0.0.1:", std::to_string(20000 + k * 10 + lane));
      std::string v = location::redis_encode(x, "elsewhere");
      redisReply* rep = redis.command("HSET sb:aor:%s c:%s %s", r.aor.c_str(), x.contact.c_str(), v.c_str());
      REQUIRE(rep);
      freeReplyObject(rep);
    }
  for (uint32_t k = 0; k < kLanes; ++k)
    w[k]->run([&, k] {
      for (Read& r : reads[k])
        r.issued = a.fetch(r.aor, [&r](bool ok) {
          r.answered_on = std::this_thread::get_id();
          r.ok = ok ? 1 : 0;
        });
    });
  for (uint32_t k = 0; k < kLanes; ++k)
    for (Read& r : reads[k]) {
      CAPTURE(r.aor);
      REQUIRE(r.issued);
      REQUIRE(eventually([&] { return r.ok != -1; }));
      CHECK(r.ok == 1);
      CHECK(r.answered_on == w[k]->id);
      CHECK(a.lookup(r.aor).size() == 1);
    }
  CHECK(a.store_stats().fetch_failures == 0);

  // Each worker takes its loop back before stopping it: the store closes its connections and
  // handles there, and the loops end by themselves, nothing left on them.
  for (uint32_t k = 0; k < kLanes; ++k) w[k]->run([&, k] { a.leave_lane(k); });
  CHECK(a.store_stats().dropped == 0);
  for (auto& loop : w) CHECK(ends(loop));
  a.stop();  // nothing attached: returns at once
  b.stop();
}

TEST_CASE("reconcile: a removal missed while the subscriber was away is dropped once it re-subscribes") {
  RedisServer redis;
  core::SystemClock clock;
  LocationService a(clock, manual(), store_for(redis, "a"));
  LocationService b(clock, manual(), store_for(redis, "b"));
  REQUIRE(a.start());
  REQUIRE(b.start());
  REQUIRE(eventually([&] { return !a.store_stats().degraded && !b.store_stats().degraded; }));
  subscribed(a);
  subscribed(b);  // their first re-reads are not going to see the removals below

  BindingChange gone = contact("sip:nia@127.0.0.1:5101", 300);
  BindingChange one = contact("sip:oto@127.0.0.1:5102", 300), two = contact("sip:oto@127.0.0.1:5103", 300);
  BindingChange mine = contact("sip:pia@127.0.0.1:5104", 300);
  REQUIRE(a.update("sip:nia@example.com", request("n", 1), {&gone, 1}));
  BindingChange both[] = {one, two};
  REQUIRE(a.update("sip:oto@example.com", request("o", 1), both));
  REQUIRE(b.update("sip:pia@example.com", request("p", 1), {&mine, 1}));
  REQUIRE(eventually([&] {
    return b.lookup("sip:nia@example.com").size() == 1 && b.lookup("sip:oto@example.com").size() == 2 &&
           redis.hgetall("sb:aor:sip:pia@example.com").size() == 1;
  }));

  // Removals whose PUBLISH b never got (what a's change script does, without the PUBLISH): a
  // whole AOR, one binding of another, and b's own binding.
  for (const char* cmd : {"DEL sb:aor:sip:nia@example.com", "HDEL sb:aor:sip:oto@example.com c:sip:oto@127.0.0.1:5103",
                          "DEL sb:aor:sip:pia@example.com"}) {
    redisReply* r = redis.command(cmd);
    REQUIRE(r);
    CHECK(r->integer == 1);
    freeReplyObject(r);
  }
  // b goes on hearing later changes, yet still holds what it missed.
  BindingChange later = contact("sip:quy@127.0.0.1:5105", 300);
  REQUIRE(a.update("sip:quy@example.com", request("q", 1), {&later, 1}));
  REQUIRE(eventually([&] { return b.lookup("sip:quy@example.com").size() == 1; }));
  CHECK(b.lookup("sip:nia@example.com").size() == 1);
  CHECK(b.lookup("sip:oto@example.com").size() == 2);

  // Its subscriber loses its connection (every node's does): it reconnects, re-subscribes and
  // re-reads the keyspace.
  const uint64_t lost = b.store_stats().disconnects;
  redisReply* r = redis.command("CLIENT KILL TYPE pubsub");
  REQUIRE(r);
  CHECK(r->integer >= 2);
  freeReplyObject(r);
  REQUIRE(eventually([&] { return b.lookup("sip:nia@example.com").empty(); }));
  CHECK(b.store_stats().disconnects > lost);
  CHECK_FALSE(b.has("sip:nia@example.com"));
  CHECK(contacts_of(b, "sip:oto@example.com") == std::set<std::string>{"sip:oto@127.0.0.1:5102"});
  // Its own binding stays: for those the table is the truth (they may still be on their way to
  // Redis), and they go when they expire. The rest is untouched.
  CHECK(b.lookup("sip:pia@example.com").size() == 1);
  CHECK(b.lookup("sip:quy@example.com").size() == 1);
  a.stop();
  b.stop();
}

TEST_CASE("reconcile: a Redis restarted empty gets every node's bindings from before the outage again") {
  RedisServer redis;
  core::SystemClock clock;
  LocationService a(clock, manual(), store_for(redis, "a"));
  LocationService b(clock, manual(), store_for(redis, "b"));
  REQUIRE(a.start());
  REQUIRE(b.start());
  REQUIRE(eventually([&] { return !a.store_stats().degraded && !b.store_stats().degraded; }));
  BindingChange ra = contact("sip:rui@127.0.0.1:5106", 300);
  BindingChange rb = contact("sip:sam@127.0.0.1:5107", 300);
  // vic: two UAs on a, one of which refreshes during the outage.
  BindingChange v1 = contact("sip:vic@127.0.0.1:5110", 300), v2 = contact("sip:vic@127.0.0.1:5111", 300);
  REQUIRE(a.update("sip:rui@example.com", request("r", 1), {&ra, 1}));
  REQUIRE(b.update("sip:sam@example.com", request("s", 1), {&rb, 1}));
  REQUIRE(a.update("sip:vic@example.com", request("v1", 1), {&v1, 1}));
  REQUIRE(a.update("sip:vic@example.com", request("v2", 1), {&v2, 1}));
  REQUIRE(eventually([&] {
    return b.lookup("sip:rui@example.com").size() == 1 && a.lookup("sip:sam@example.com").size() == 1 &&
           b.lookup("sip:vic@example.com").size() == 2;
  }));
  const std::string field_a = redis.hgetall("sb:aor:sip:rui@example.com").begin()->second;

  // Restarted without persistence: empty, and a new process (a new run_id).
  redis.stop();
  REQUIRE(eventually([&] { return a.store_stats().degraded && b.store_stats().degraded; }));
  REQUIRE(a.update("sip:vic@example.com", request("v2", 2), {&v2, 1}));  // queued meanwhile
  redis.start();
  REQUIRE(eventually([&] { return !a.store_stats().degraded && !b.store_stats().degraded; }));
  // Each node writes its own bindings again, as they were.
  REQUIRE(eventually([&] { return redis.hgetall("sb:aor:sip:rui@example.com").size() == 1; }));
  REQUIRE(eventually([&] { return redis.hgetall("sb:aor:sip:sam@example.com").size() == 1; }));
  auto stored = redis.hgetall("sb:aor:sip:rui@example.com");
  REQUIRE(stored.count("c:sip:rui@127.0.0.1:5106"));
  CHECK(stored.begin()->second == field_a);
  std::string owner;
  REQUIRE(location::redis_decode(redis.hgetall("sb:aor:sip:sam@example.com").begin()->second, "x", &owner));
  CHECK(owner == "b");
  CHECK(redis.integer("PTTL %s", "sb:aor:sip:rui@example.com") > 0);
  // The AOR that changed during the outage comes back whole, not just with what changed.
  const std::set<std::string> vic = {"sip:vic@127.0.0.1:5110", "sip:vic@127.0.0.1:5111"};
  CHECK(eventually([&] {
    return fields_of(redis, "sip:vic@example.com") ==
           std::set<std::string>{"c:sip:vic@127.0.0.1:5110", "c:sip:vic@127.0.0.1:5111"};
  }));

  // A change published after them reaches the other node after its re-read (one connection
  // each, in order): by then each node holds the other's binding again.
  BindingChange t = contact("sip:tia@127.0.0.1:5108", 300), u = contact("sip:uma@127.0.0.1:5109", 300);
  REQUIRE(a.update("sip:tia@example.com", request("t", 1), {&t, 1}));
  REQUIRE(b.update("sip:uma@example.com", request("u", 1), {&u, 1}));
  REQUIRE(eventually([&] {
    return b.lookup("sip:tia@example.com").size() == 1 && a.lookup("sip:uma@example.com").size() == 1;
  }));
  CHECK(b.lookup("sip:rui@example.com").size() == 1);
  CHECK(a.lookup("sip:sam@example.com").size() == 1);
  CHECK(eventually([&] { return contacts_of(a, "sip:vic@example.com") == vic; }));
  CHECK(eventually([&] { return contacts_of(b, "sip:vic@example.com") == vic; }));
  a.stop();
  b.stop();
}

// Figures for docs/cluster.md; measured, never asserted (DESIGN.md "Tests").
TEST_CASE("redis lookups per second and replication delay (report)") {
  RedisServer redis;
  core::SystemClock clock;
  LocationService a(clock, manual(), store_for(redis, "a"));
  LocationService b(clock, manual(), store_for(redis, "b"));
  REQUIRE(a.start());
  REQUIRE(b.start());
  REQUIRE(eventually([&] { return !a.store_stats().degraded && !b.store_stats().degraded; }));
  BindingChange c = contact("sip:perf@127.0.0.1:5070", 600);
  REQUIRE(a.update("sip:perf@example.com", request("p", 1), {&c, 1}));
  REQUIRE(eventually([&] { return b.lookup("sip:perf@example.com").size() == 1; }));
  using Clock = std::chrono::steady_clock;
  auto secs = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };

  // Local (cache hit): what every lookup costs on a node.
  const int kLocal = 200000;
  auto t0 = Clock::now();
  size_t n = 0;
  for (int i = 0; i < kLocal; ++i) n += b.lookup("sip:perf@example.com").size();
  double local = secs(t0);
  CHECK(n == kLocal);

  // One HGETALL round trip with decoding (what a cache miss would add), one at a time and
  // pipelined 100 deep.
  redisContext* ctx = redisConnect("127.0.0.1", redis.port);
  REQUIRE(ctx);
  REQUIRE(ctx->err == 0);
  const int kSeq = 5000;
  t0 = Clock::now();
  for (int i = 0; i < kSeq; ++i) {
    auto* r = static_cast<redisReply*>(redisCommand(ctx, "HGETALL sb:aor:sip:perf@example.com"));
    REQUIRE(r);
    REQUIRE(r->elements == 2);
    CHECK(location::redis_decode({r->element[1]->str, r->element[1]->len}, "b"));
    freeReplyObject(r);
  }
  double seq = secs(t0);
  const int kPipe = 50000;
  t0 = Clock::now();
  for (int i = 0; i < kPipe; i += 100) {
    for (int k = 0; k < 100; ++k) redisAppendCommand(ctx, "HGETALL sb:aor:sip:perf@example.com");
    for (int k = 0; k < 100; ++k) {
      void* v = nullptr;
      REQUIRE(redisGetReply(ctx, &v) == REDIS_OK);
      auto* r = static_cast<redisReply*>(v);
      CHECK(location::redis_decode({r->element[1]->str, r->element[1]->len}, "b"));
      freeReplyObject(r);
    }
  }
  double pipe = secs(t0);
  redisFree(ctx);

  // Replication: a REGISTER on a until b's table shows it (write, PUBLISH, HGETALL, apply).
  const int kRep = 200;
  double rep_total = 0, rep_max = 0;
  for (int i = 0; i < kRep; ++i) {
    std::string cid = "rep" + std::to_string(i);
    auto t = Clock::now();
    REQUIRE(a.update("sip:perf@example.com", request(cid, 1), {&c, 1}));
    // Spin (with yields) rather than poll every 5 ms: the delay is what is measured.
    bool seen = false;
    while (!seen && secs(t) < 5) {
      auto got = b.lookup("sip:perf@example.com");
      seen = got.size() == 1 && got[0].call_id == cid;
      if (!seen) std::this_thread::yield();
    }
    REQUIRE(seen);
    double d = secs(t);
    rep_total += d;
    rep_max = std::max(rep_max, d);
  }
  MESSAGE("local lookup (cache hit): " << kLocal / local << " lookups/s, " << local / kLocal * 1e6 << " us each");
  MESSAGE("redis HGETALL+decode, 1 in flight: " << kSeq / seq << " lookups/s, " << seq / kSeq * 1e6
                                                 << " us each (added latency of a miss)");
  MESSAGE("redis HGETALL+decode, pipelined 100: " << kPipe / pipe << " lookups/s");
  MESSAGE("replication REGISTER on a -> visible on b: mean " << rep_total / kRep * 1e3 << " ms, max "
                                                              << rep_max * 1e3 << " ms");
  a.stop();
  b.stop();
}
