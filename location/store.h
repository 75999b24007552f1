// Persistence of the binding table (DESIGN.md "Registrar and location"): the table lives in
// memory; every change is written behind to a Store so a restart loses no registration.
// The table calls save/erase while it holds a shard lock (so a binding's changes reach the
// store in the order they happened): they must never block, do I/O or call back.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "location/binding.h"

struct uv_loop_s;

namespace sb::location {

// One row: the binding, its AOR and the id that names it in the store.
struct StoredBinding {
  uint64_t id = 0;
  std::string aor;
  Binding binding;
};

struct StoreStats {
  uint64_t queued = 0;    // changes waiting for the next batch
  uint64_t written = 0;   // changes committed
  uint64_t dropped = 0;   // changes lost because the queue was full
  uint64_t batches = 0;   // transactions committed
  uint64_t errors = 0;    // failed batches
  // Cluster backends (Redis): the shared store cannot be reached; changes wait in the queue.
  bool degraded = false;
  uint64_t disconnects = 0;   // times the connection was lost (or could not be made)
  uint64_t refreshes = 0;     // AORs re-read after another node's change
  uint64_t fetches = 0;       // read-through reads (a lookup that missed locally)
  uint64_t fetch_failures = 0;  // of those: not answered within the command timeout
};

// What names a binding in a store keyed by AOR and contact / flow rather than by row id.
struct BindingKey {
  uint64_t id = 0;
  std::string_view aor;
  std::string_view contact;
  std::string_view instance;  // "" when none
  uint32_t reg_id = 0;
  int64_t expires_at = 0;     // of the copy being removed
  bool expired = false;       // removed because it expired (not by a REGISTER or an operator)
};

// What a re-read of the shared store found of one binding the table holds.
enum class Stored : uint8_t {
  Yes,      // the shared store holds it
  No,       // it does not
  Unknown,  // it did not, but its AOR changed while the store was read: the read may be older
};

// How a cluster store keeps the table a replica of the shared store. Called on the store's
// loops (the workers'), never under a shard lock.
struct RemoteSink {
  // The AOR's bindings as the shared store now holds them (empty: none left). `keep_own`: the
  // shared store may have lost data this node has not written again yet (it reconnected and
  // has not re-read it all since): this node's own bindings it lacks are kept, for reconcile.
  std::function<void(std::string_view aor, std::vector<Binding> bindings, bool keep_own)> apply;
  // After the whole shared store was re-read (a reconnection), before what was read is applied,
  // for every binding the table holds that the shared store lacks (`in_store(key)`): another
  // node's is dropped when the answer is No (removed while we were not listening); this node's
  // own stays (it may still be on its way) and, when `restarted` (the shared store is a new
  // process that may have lost data), is written to the shared store again.
  std::function<void(const std::function<Stored(const BindingKey& key)>& in_store, bool restarted)> reconcile;
};

class Store {
 public:
  virtual ~Store() = default;
  // Open (creating when missing), read every stored row into `loaded` and begin writing
  // behind. Called once, by LocationService::start().
  virtual core::Status open(std::vector<StoredBinding>& loaded) = 0;
  // Insert or replace the row `row.id`. Never blocks: when the queue is full the change is
  // counted as dropped and logged.
  virtual void save(StoredBinding row) = 0;
  virtual void erase(uint64_t id) = 0;
  // The table removes a binding through this; stores keyed by row id just erase it.
  virtual void remove(const BindingKey& key) { erase(key.id); }
  // Shared stores only: where to report other nodes' changes (set by LocationService::start
  // before open()). The others ignore it.
  virtual void set_remote_sink(RemoteSink sink) { (void)sink; }
  // Stores that do their I/O on the workers' loops (Redis): worker `lane` lends its loop,
  // called on that worker's thread; detach() before the loop stops (same thread). A store
  // attaches each lane once; both are no-ops for the others.
  virtual void attach(uint32_t lane, uv_loop_s* loop) {
    (void)lane;
    (void)loop;
  }
  virtual void detach(uint32_t lane) { (void)lane; }
  // Is this a store other nodes share (Redis)? Only those answer fetch().
  virtual bool shared() const { return false; }
  // Shared stores only: read `aor` from the shared store into the table (through the sink),
  // then call `done(ok)` on the store's loop (the caller's, when it is a worker that lent its
  // loop), within the store's command timeout; ok is
  // false only when the store did not answer in time (unreachable counts as answered: the
  // table is all there is). False
  // (and `done` is not called) when there is nothing to wait for: not a shared store, the
  // store is degraded, or too many reads are waiting.
  virtual bool fetch(std::string_view aor, std::function<void(bool ok)> done) {
    (void)aor;
    (void)done;
    return false;
  }
  // Write everything queued so far and wait until it is committed.
  virtual void flush() = 0;
  // Flush and stop writing. Further changes are dropped. Idempotent.
  virtual void close() = 0;
  virtual StoreStats stats() const = 0;
};

// The location backend settings the app gives us (config "location").
struct RedisSettings {
  std::vector<std::string> servers{"127.0.0.1:6379"};  // "host:port"; tried in order
  std::string prefix = "sb:";                          // keys <prefix>aor:<aor>, channel <prefix>changes
  uint32_t connect_timeout_ms = 1000;
  uint32_t command_timeout_ms = 1000;
  uint32_t reconnect_ms = 1000;                        // retry period while Redis is unreachable
  std::string node_id;                                 // this node's name in the stored bindings
  // This node's SIP URI ("sip:192.0.2.10:5060;transport=udp"): other nodes route a call for a
  // flow this node holds through it (RFC 3327 / RFC 5626). "" = they do not.
  std::string node_uri;
  // Workers lending their loops (attach()): an AOR's changes go over the connections of
  // worker hash(AOR) % lanes, in order. 0: the store runs one loop on a thread of its own
  // (tools and tests without workers).
  uint32_t lanes = 0;
  uint32_t pool_size = 1;  // command connections per lane
};

struct StoreConfig {
  std::string backend = "sqlite";                      // "sqlite" | "memory" | "redis"
  std::string sqlite_path = "var/lib/switchboard/location.db";
  uint32_t batch_ms = 1000;                            // one transaction per batch window
  uint32_t queue_capacity = 65536;                     // changes waiting; past it they drop
  RedisSettings redis;
};

// The store for `config`: SqliteStore for "sqlite", nullptr (memory only) for "memory".
core::Result<std::unique_ptr<Store>> make_store(const StoreConfig& config);
// make_store, plus RedisStore for "redis" (location/redis_store.h).
core::Result<std::unique_ptr<Store>> open_store(const StoreConfig& config);

}  // namespace sb::location
