// Persistence of the binding table (DESIGN.md "Registrar and location"): the table lives in
// memory; every change is written behind to a Store so a restart loses no registration.
// The table calls save/erase while it holds a shard lock (so a binding's changes reach the
// store in the order they happened): they must never block, do I/O or call back.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "location/binding.h"

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
  // Write everything queued so far and wait until it is committed.
  virtual void flush() = 0;
  // Flush and stop writing. Further changes are dropped. Idempotent.
  virtual void close() = 0;
  virtual StoreStats stats() const = 0;
};

// The location backend settings the app gives us (config "location").
struct StoreConfig {
  std::string backend = "sqlite";                      // "sqlite" | "memory"
  std::string sqlite_path = "var/lib/switchboard/location.db";
  uint32_t batch_ms = 1000;                            // one transaction per batch window
  uint32_t queue_capacity = 65536;                     // changes waiting; past it they drop
};

// The store for `config`: SqliteStore for "sqlite", nullptr (memory only) for "memory".
core::Result<std::unique_ptr<Store>> make_store(const StoreConfig& config);

}  // namespace sb::location
