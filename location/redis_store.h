// The cluster Store (docs/cluster.md): bindings shared between nodes through Redis.
//
// Keys: one hash per AOR, <prefix>aor:<canonical AOR>, one field per binding ("c:<contact>",
// or "i:<instance>;<reg-id>" for an RFC 5626 flow), the value a JSON binding with its absolute
// expiry; the key's TTL is its longest binding's expiry. Every change runs one small Lua
// script (update the field, set the TTL, PUBLISH the AOR on <prefix>changes), pipelined.
//
// The node's LocationService stays the fast path: it is a full replica. Other nodes' changes
// arrive by pub/sub and are re-read (HGETALL) into the table through the RemoteSink; after
// every (re)connection of the subscriber the whole keyspace is re-read, which also catches
// up on what was missed (an AOR Redis lacks is kept: it may have come back empty). Workers never talk to Redis: save()/remove() only queue (bounded, never block).
// Two threads of our own do the blocking I/O: the writer (commands, with timeouts) and the
// subscriber.
//
// Redis unreachable: the queue keeps the changes (up to queue_capacity, then they are dropped
// and counted), stats().degraded is set, a warning is logged once, and the writer retries
// every reconnect_ms; when Redis is back the queue is written, then the keyspace re-read.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "location/store.h"

struct redisContext;

namespace sb::location {

// The hash field that names a binding (see above).
std::string redis_field(std::string_view contact, std::string_view instance, uint32_t reg_id);
// A binding as stored (JSON) and back. `owner` is the node that wrote it (`owner_uri` its SIP
// URI); decode() keeps the connection only when `self` wrote it (another node's connection
// means nothing here). Another node's stream or RFC 5626 flow binding of `aor` comes back
// with a Path through its owner (owner_route()), when the owner gave its URI.
std::string redis_encode(const Binding& b, std::string_view owner, std::string_view owner_uri = {});
std::optional<Binding> redis_decode(std::string_view value, std::string_view self,
                                    std::string* owner = nullptr, std::string_view aor = {});
// The Route value through the owning node for a binding of `aor`: <owner_uri;lr;sb-aor=HEX>.
std::string owner_route(std::string_view owner_uri, std::string_view aor);
// Whether a Path/Route value is such a route through an owning node.
bool is_owner_route(std::string_view route);
// The AOR an sb-aor parameter names; nullopt when it is not one of ours.
std::optional<std::string> owner_route_aor(std::string_view hex);

class RedisStore final : public Store {
 public:
  RedisStore(RedisSettings settings, uint32_t queue_capacity = 65536);
  ~RedisStore() override;
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  // Reads every stored AOR (when Redis answers; otherwise starts degraded with an empty
  // table and catches up when it comes) and starts the writer and the subscriber.
  core::Status open(std::vector<StoredBinding>& loaded) override;
  void save(StoredBinding row) override;
  void erase(uint64_t id) override;  // unused: the table removes through remove()
  void remove(const BindingKey& key) override;
  void set_remote_sink(RemoteSink sink) override;
  bool shared() const override { return true; }
  // On a third thread with its own connection, so a read never waits behind queued writes.
  bool fetch(std::string_view aor, std::function<void(bool ok)> done) override;
  void flush() override;
  void close() override;
  StoreStats stats() const override;

 private:
  enum class OpKind : uint8_t { Set, Del, Expire, Refresh };
  struct Op {
    OpKind kind;
    std::string aor;
    std::string field;
    std::string value;  // Expire: the expiry it had
    Binding binding;    // Set: encoded by the writer, not on the worker under its shard lock
  };

  void enqueue(Op op);
  void run_writer();
  void run_subscriber();
  void run_reader();
  redisContext* connect(uint32_t timeout_ms, std::string* where);
  bool write_batch(redisContext* c, std::vector<Op>& ops, size_t& done);
  bool resync(redisContext* c);
  bool read_aor(redisContext* c, const std::string& aor, std::vector<Binding>& out);
  bool load_all(redisContext* c, std::vector<std::pair<std::string, std::vector<Binding>>>& out);
  void set_link(bool writer, bool up);

  const RedisSettings settings_;
  const size_t capacity_;
  const std::string key_prefix_;  // <prefix>aor:
  const std::string channel_;     // <prefix>changes
  RemoteSink sink_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::deque<Op> queue_;
  std::unordered_set<std::string> refresh_pending_;
  bool resync_pending_ = false;
  bool running_ = false;
  bool stopping_ = false;
  uint64_t flush_asked_ = 0;
  uint64_t flush_done_ = 0;
  bool writer_up_ = false;
  bool subscriber_up_ = false;
  bool warned_ = false;  // "unreachable" logged since the last time it was up
  // AORs changed here while a resync scans: the scan's copy of them is older.
  bool tracking_ = false;
  std::unordered_set<std::string> touched_;
  StoreStats stats_;
  std::thread writer_;
  std::thread subscriber_;

  struct Fetch {
    std::string aor;
    std::function<void(bool)> done;
    std::chrono::steady_clock::time_point queued;
  };
  static constexpr size_t kMaxFetches = 1024;
  std::mutex fmu_;  // the reader's queue (never taken together with mu_)
  std::condition_variable fwake_;
  std::deque<Fetch> fetches_;
  bool fstopping_ = false;
  std::thread reader_;
  int wake_pipe_[2] = {-1, -1};  // wakes the subscriber's poll() on close
};

}  // namespace sb::location
