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
// up on what was missed (RemoteSink::reconcile for the bindings Redis lacks).
//
// I/O: hiredis's async API on the workers' own libuv loops (Store::attach). Worker i is
// "lane" i: it holds pool_size command connections; an AOR's changes (and the re-reads
// pub/sub asks for) go over connection hash(AOR) of lane hash(AOR), so they reach Redis in
// the order they were made; a read-through (fetch) goes over the asking worker's own
// connections. save()/remove() may be called on any thread: they hand the change to its lane
// (a short lock and a uv_async wake-up, never I/O). Lane 0 also holds the subscriber and does
// the re-reads. Command and connect timeouts are enforced by a timer per lane. Nothing
// blocks a loop. open() alone reads synchronously, on the caller's thread (start-up, a
// reload's preparation: the main thread).
//
// Redis unreachable: each connection keeps its changes (all together up to queue_capacity,
// then they are dropped and counted), stats().degraded is set, a warning is logged once, and
// connections are retried every reconnect_ms; when Redis is back the changes are written in
// order, then the keyspace re-read.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "location/store.h"

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
  // table and catches up when it comes). With settings.lanes == 0, starts its own loop.
  core::Status open(std::vector<StoredBinding>& loaded) override;
  void save(StoredBinding row) override;
  void erase(uint64_t id) override;  // unused: the table removes through remove()
  void remove(const BindingKey& key) override;
  void set_remote_sink(RemoteSink sink) override;
  void attach(uint32_t lane, uv_loop_s* loop) override;
  void detach(uint32_t lane) override;
  bool shared() const override { return true; }
  bool fetch(std::string_view aor, std::function<void(bool ok)> done) override;
  // Waits until every change queued so far is answered, Redis is unreachable, no lane is
  // attached, or connect + command timeout passed.
  void flush() override;
  void close() override;
  StoreStats stats() const override;

  struct Op;
  struct Pending;
  struct Conn;
  struct Lane;

 private:
  friend struct Lane;
  friend struct Conn;
  void enqueue(Op op);
  Lane& lane_for(std::string_view aor);
  Lane* current_lane();
  // A link came up (+1), went down (-1) or could not be made (0); quiet: the lane is stopping.
  void link_changed(int delta, bool quiet = false);
  void acked(const Op& op);           // a change answered (or given up): no longer on its way
  void track(std::string_view aor);   // an AOR re-read while the keyspace is re-read
  void set_tracking();
  void fetched(Op& op, bool ok, bool timed_out);
  void finish_resync(Lane& l, bool ok);
  void run_own_loop(std::promise<void>& started);

  const RedisSettings settings_;
  const size_t capacity_;
  const std::string key_prefix_;  // <prefix>aor:
  const std::string channel_;     // <prefix>changes
  RemoteSink sink_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  int links_total_ = 0;                 // command connections of every lane + the subscriber

  std::atomic<bool> running_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<int> attached_lanes_{0};
  // The keyspace was re-read since the subscriber last (re)subscribed: a re-read AOR that lacks
  // one of our bindings lost it for good (RemoteSink::apply's keep_own until then).
  std::atomic<bool> caught_up_{false};
  static constexpr int kMaxWaitingFetches = 1024;
  std::atomic<int> fetches_waiting_{0};  // fetch() accepted, done not called yet

  mutable std::mutex mu_;               // stats_, links_up_, warned_, the pending writes
  std::condition_variable acked_;
  StoreStats stats_;
  int links_up_ = 0;
  bool warned_ = false;
  // Changes not yet answered by Redis, by AOR: a re-read must not overwrite what is on its way.
  std::unordered_map<std::string, uint32_t> unacked_;
  size_t unacked_total_ = 0;
  // AORs changed or acknowledged while a re-read of the keyspace runs.
  bool tracking_ = false;
  std::unordered_set<std::string> touched_;
  std::string run_id_;                  // the Redis process last read (INFO server)

  // settings.lanes == 0: lane 0 on a loop of our own.
  std::thread own_thread_;
};

}  // namespace sb::location
