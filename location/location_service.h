// The location service (RFC 3261 §10): the binding table shared by every worker.
//
// In memory, sharded by the canonical AOR (core::canonical_aor); each shard has one mutex,
// a hash map (lookup in O(1)) and an expiry wheel (sweep without scanning the table). A
// shard lock is never held across I/O, a callback or a script call. Every change is
// written behind to the Store, when there is one.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/result.h"
#include "core/uri.h"
#include "location/binding.h"
#include "location/store.h"

namespace sb::location {

struct Settings {
  uint32_t shards = 16;
  Limits limits;                       // used when an UpdateRequest brings none
  // A background thread calls sweep() this often; 0 = none (the owner calls sweep()).
  uint32_t sweep_interval_ms = 1000;
};

// The faults update() reports, with the response RFC 3261 asks for (status) and a reason
// naming the fault. Compare with same_fault().
namespace faults {
// RFC 3261 §10.3 step 7: same Call-ID, CSeq not higher than the stored one.
inline constexpr core::Error kOutOfOrder{"out-of-order CSeq for this binding", 500};
// The AOR would hold more than max_bindings_per_aor: a policy refusal, retrying won't help.
inline constexpr core::Error kTooManyBindings{"too many bindings for this address-of-record", 403};
// A new AOR while max_aors are held: the table is full for now.
inline constexpr core::Error kTableFull{"location table full", 503};
inline constexpr core::Error kBadContact{"unparsable URI", 400, "Contact"};
inline constexpr core::Error kTooLong{"binding field longer than 65535 bytes", 400};
inline constexpr core::Error kBadAor{"empty address-of-record", 400};
}  // namespace faults
inline bool same_fault(const core::Error& a, const core::Error& b) { return a.reason == b.reason; }

class LocationService {
 public:
  // `store` may be null: memory only.
  LocationService(const core::Clock& clock, Settings settings, std::unique_ptr<Store> store);
  ~LocationService();
  LocationService(const LocationService&) = delete;
  LocationService& operator=(const LocationService&) = delete;

  // Load the stored table (dropping what expired meanwhile) and start the sweeper. Call
  // before the first update. Fails when the store cannot be opened.
  core::Status start();
  // Stop the sweeper, flush and close the store (later changes stay in memory only).
  // Idempotent; the destructor calls it.
  void stop();

  // Apply every Contact of one REGISTER to `aor` atomically (RFC 3261 §10.3 steps 6-7): all
  // or nothing. A Contact matches a binding by (+sip.instance, reg-id) when it has both
  // (RFC 5626 §6), else by URI (§19.1.4) among bindings without a reg-id; static
  // bindings belong to the operator and are never touched by a REGISTER.
  core::Result<UpdateOutcome> update(std::string_view aor, const UpdateRequest& request,
                                     std::span<const BindingChange> changes);

  // Unexpired bindings of `aor` (a canonical AOR), by q descending, then most recent first.
  // A binding is invisible from its expiry instant on, swept or not.
  std::vector<Binding> lookup(std::string_view aor) const;
  // The same for a SIP/SIPS URI (e.g. a Request-URI), canonicalised first (§10.3 step 5).
  std::vector<Binding> lookup(const core::Uri& uri) const {
    return lookup(std::string_view(core::canonical_aor(uri)));
  }

  // Remove every binding of `aor` / those whose URI equals `contact` (§19.1.4), static
  // ones included. Return how many went.
  size_t remove_all(std::string_view aor);
  size_t remove(std::string_view aor, std::string_view contact);

  // An operator's binding (admin API): expires == 0 means it never expires. It replaces an
  // operator binding with an equal URI. The service's limits apply.
  core::Status add_static(std::string_view aor, const BindingChange& binding);

  // Every unexpired binding, one shard at a time: the shard is copied under its lock and
  // `f(aor, binding)` runs after the lock is released.
  void for_each(const std::function<void(std::string_view aor, const Binding&)>& f) const;

  // Replace what the table holds for `aor` with `bindings` (expired ones skipped), as read from
  // a shared store after another node changed them: nothing is written back to the store, and
  // the limits are the writing node's business. With `keep_own`, this node's own bindings
  // that `bindings` lacks stay (the store may have lost them: RemoteSink::apply).
  void apply_remote(std::string_view aor, std::vector<Binding> bindings, bool keep_own = false);
  // Does the table hold `aor` (a canonical AOR)? Cheaper than lookup() when that is all.
  bool has(std::string_view aor) const;
  // Shared backends (Redis): read `aor` into the table, then `done(ok)` on the store's thread
  // within its command timeout. False (done not called) when there is nothing to wait for.
  bool shared() const {
    Store* st = store();
    return st && st->shared();
  }
  bool fetch(std::string_view aor, std::function<void(bool ok)> done) {
    Store* st = store();
    return st && st->fetch(aor, std::move(done));
  }

  // Worker `lane` lends its loop to the store (on its own thread, with its loop: at start and
  // after every reload): the current store attaches to it, stores replaced since detach.
  // leave_lane() before the loop stops. Redis talks to the shared store from these loops.
  void join_lane(uint32_t lane, uv_loop_s* loop);
  void leave_lane(uint32_t lane);
  // Write what the store has queued and wait for it (bounded by the store's timeouts).
  void flush();

  // A reload that changes config "location" (docs/cluster.md): prepare() opens the new store
  // (null: memory only) and reads what it holds; it may fail, and then nothing changed.
  // commit() makes it the store: AORs it holds that the table does not are added, every
  // binding of the table is written to it, and the old store is flushed and closed. Call
  // both from one thread (the runtime's), after start().
  struct PreparedStore {
    std::unique_ptr<Store> store;
    std::vector<StoredBinding> rows;
  };
  core::Result<PreparedStore> prepare_store(std::unique_ptr<Store> next);
  void commit_store(PreparedStore next);

  // Remove what expired by `now_ms` (wall ms). Returns how many bindings went.
  size_t sweep(int64_t now_ms);

  // Bindings / AORs held, expired ones included until swept.
  size_t size() const { return bindings_.load(std::memory_order_relaxed); }
  size_t aor_count() const { return aors_.load(std::memory_order_relaxed); }
  // The store's counters (zero when memory only).
  StoreStats store_stats() const;

  struct Shard;
  struct Record;

 private:
  // The shard of `aor`; `hash` is set to the AOR's hash (the shard's index takes it too).
  Shard& shard_for(std::string_view aor, size_t& hash) const;
  void release(Shard& s, Record* r, bool erase_stored, bool expired = false);
  void sweeper();

  const core::Clock& clock_;
  const Settings settings_;
  Store* store() const { return store_.load(std::memory_order_acquire); }
  // A stored row the table lacks, linked in; false when its fields do not fit. A row from a
  // `previous_process` (start-up) loses its connection id.
  bool insert_loaded(const StoredBinding& row, bool previous_process);
  // Other nodes' changes, from a shared store's loops, into apply_remote() / reconcile().
  RemoteSink remote_sink();
  void reconcile(const std::function<Stored(const BindingKey&)>& in_store, bool restarted);
  // The current store. A replaced one is closed but kept until the service dies: a worker
  // may still be asking it shared() or fetch().
  std::atomic<Store*> store_{nullptr};
  std::vector<std::unique_ptr<Store>> stores_;  // appended under stores_mu_
  std::mutex stores_mu_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<size_t> bindings_{0};
  std::atomic<size_t> aors_{0};
  std::atomic<uint64_t> next_id_{1};

  std::mutex sweep_mu_;
  std::condition_variable sweep_cv_;
  bool stopping_ = false;
  bool started_ = false;
  bool store_opened_ = false;  // the store is read once, by the first start()
  std::thread sweeper_;
};

}  // namespace sb::location
