#include "location/sqlite_store.h"

#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <system_error>

#include "core/log.h"
#include "core/sip_headers.h"

namespace sb::location {

namespace {

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS bindings ("
    " id INTEGER PRIMARY KEY,"
    " aor TEXT NOT NULL,"
    " contact TEXT NOT NULL,"
    " params TEXT NOT NULL,"
    " q INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL,"
    " call_id TEXT NOT NULL,"
    " cseq INTEGER NOT NULL,"
    " protocol INTEGER NOT NULL,"
    " address TEXT NOT NULL,"   // IP literal, "" when none
    " port INTEGER NOT NULL,"
    " path TEXT NOT NULL,"      // Path values joined with ','
    " instance TEXT NOT NULL,"
    " reg_id INTEGER NOT NULL,"
    " user_agent TEXT NOT NULL,"
    " received_at INTEGER NOT NULL);"
    // Rows are read all at once at start and written by id: an index on aor (older
    // databases have one) only doubled the cost of every write.
    "DROP INDEX IF EXISTS bindings_aor;";

constexpr const char* kUpsert =
    "INSERT OR REPLACE INTO bindings (id, aor, contact, params, q, expires_at, call_id, cseq,"
    " protocol, address, port, path, instance, reg_id, user_agent, received_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";
constexpr const char* kDelete = "DELETE FROM bindings WHERE id = ?1";
constexpr const char* kSelect =
    "SELECT id, aor, contact, params, q, expires_at, call_id, cseq, protocol, address, port,"
    " path, instance, reg_id, user_agent, received_at FROM bindings";

std::string column_text(sqlite3_stmt* st, int col) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, col));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(st, col))) : std::string();
}

// SQLITE_STATIC: every text bound lives until the statement has run and its bindings are
// cleared (write_batch), so SQLite need not copy it.
void bind_text(sqlite3_stmt* st, int col, std::string_view s) {
  sqlite3_bind_text(st, col, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
}

}  // namespace

core::Result<std::unique_ptr<Store>> make_store(const StoreConfig& config) {
  if (config.backend == "memory") return std::unique_ptr<Store>();
  if (config.backend == "sqlite") {
    if (config.sqlite_path.empty()) return core::Error{"location.sqlite path is empty"};
    return std::unique_ptr<Store>(
        std::make_unique<SqliteStore>(config.sqlite_path, config.batch_ms, config.queue_capacity));
  }
  return core::Error{"unknown location backend (expected \"sqlite\" or \"memory\")"};
}

SqliteStore::SqliteStore(std::string path, uint32_t batch_ms, uint32_t queue_capacity)
    : path_(std::move(path)),
      batch_ms_(batch_ms == 0 ? 1 : batch_ms),
      capacity_(queue_capacity == 0 ? 1 : queue_capacity) {}

SqliteStore::~SqliteStore() { close(); }

bool SqliteStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    SB_ERROR("location store %s: %s: %s", path_.c_str(), sql, err ? err : "error");
    sqlite3_free(err);
    return false;
  }
  return true;
}

void SqliteStore::close_db() {
  sqlite3_finalize(upsert_);
  sqlite3_finalize(delete_);
  upsert_ = delete_ = nullptr;
  if (db_) sqlite3_close(db_);
  db_ = nullptr;
}

core::Status SqliteStore::open(std::vector<StoredBinding>& loaded) {
  if (db_) return core::Error{"location store opened twice"};
  std::filesystem::path dir = std::filesystem::path(path_).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      SB_ERROR("location store: cannot create directory %s: %s", dir.c_str(),
               ec.message().c_str());
      return core::Error{"cannot create the location database directory", 500};
    }
  }
  if (sqlite3_open_v2(path_.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    SB_ERROR("location store: cannot open %s: %s", path_.c_str(),
             db_ ? sqlite3_errmsg(db_) : "out of memory");
    close_db();
    return core::Error{"cannot open the location database", 500};
  }
  sqlite3_busy_timeout(db_, 5000);
  // WAL: the writer never blocks readers (an operator's sqlite3 shell) and a crash keeps
  // every committed batch; NORMAL sync is durable across a process kill in WAL mode.
  if (!exec("PRAGMA journal_mode=WAL;") || !exec("PRAGMA synchronous=NORMAL;") ||
      !exec(kSchema)) {
    close_db();
    return core::Error{"cannot initialise the location database", 500};
  }
  if (sqlite3_prepare_v2(db_, kUpsert, -1, &upsert_, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db_, kDelete, -1, &delete_, nullptr) != SQLITE_OK) {
    SB_ERROR("location store %s: %s", path_.c_str(), sqlite3_errmsg(db_));
    close_db();
    return core::Error{"cannot prepare the location database statements", 500};
  }

  sqlite3_stmt* sel = nullptr;
  if (sqlite3_prepare_v2(db_, kSelect, -1, &sel, nullptr) != SQLITE_OK) {
    SB_ERROR("location store %s: %s", path_.c_str(), sqlite3_errmsg(db_));
    close_db();
    return core::Error{"cannot read the location database", 500};
  }
  int rc;
  while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
    StoredBinding row;
    row.id = static_cast<uint64_t>(sqlite3_column_int64(sel, 0));
    row.aor = column_text(sel, 1);
    Binding& b = row.binding;
    b.contact = column_text(sel, 2);
    b.params = column_text(sel, 3);
    b.q = static_cast<uint16_t>(sqlite3_column_int(sel, 4));
    b.expires_at = sqlite3_column_int64(sel, 5);
    b.call_id = column_text(sel, 6);
    b.cseq = static_cast<uint32_t>(sqlite3_column_int64(sel, 7));
    b.source.protocol = static_cast<core::Protocol>(sqlite3_column_int(sel, 8));
    std::string addr = column_text(sel, 9);
    auto port = static_cast<uint16_t>(sqlite3_column_int(sel, 10));
    if (!addr.empty())
      if (auto ep = core::Endpoint::parse(addr, port)) b.source.endpoint = *ep;
    core::for_each_list_element(column_text(sel, 11), [&](std::string_view v) {
      if (!v.empty()) b.path.emplace_back(v);
      return true;
    });
    b.instance = column_text(sel, 12);
    b.reg_id = static_cast<uint32_t>(sqlite3_column_int64(sel, 13));
    b.user_agent = column_text(sel, 14);
    b.received_at = sqlite3_column_int64(sel, 15);
    loaded.push_back(std::move(row));
  }
  sqlite3_finalize(sel);
  if (rc != SQLITE_DONE) {
    SB_ERROR("location store %s: %s", path_.c_str(), sqlite3_errmsg(db_));
    close_db();
    loaded.clear();
    return core::Error{"cannot read the location database", 500};
  }

  {
    std::lock_guard lock(mu_);
    running_ = true;
    stopping_ = false;
  }
  writer_ = std::thread([this] { run(); });
  return {};
}

void SqliteStore::enqueue(Op op) {
  bool dropped = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= capacity_) {
      ++stats_.dropped;
      dropped = true;
    } else {
      queue_.push_back(std::move(op));
    }
  }
  // Never block the worker: a full queue costs this change, counted and logged.
  if (dropped) SB_LOG_RL(Warn, {}, "location store: queue full or closed, change dropped");
}

void SqliteStore::save(StoredBinding row) { enqueue(Op{std::move(row)}); }
void SqliteStore::erase(uint64_t id) { enqueue(Op{Erase{id}}); }

void SqliteStore::flush() {
  std::unique_lock lock(mu_);
  if (!running_) return;
  uint64_t gen = ++flush_asked_;
  wake_.notify_one();
  done_.wait(lock, [&] { return flush_done_ >= gen || !running_; });
}

void SqliteStore::close() {
  {
    std::lock_guard lock(mu_);
    if (!running_ && !writer_.joinable()) {
      stopping_ = true;
      return;
    }
    stopping_ = true;
  }
  wake_.notify_one();
  if (writer_.joinable()) writer_.join();
  close_db();
}

StoreStats SqliteStore::stats() const {
  std::lock_guard lock(mu_);
  StoreStats s = stats_;
  s.queued = queue_.size();
  return s;
}

void SqliteStore::run() {
  core::log::set_thread_name("location-db");
  std::vector<Op> batch;
  auto next = std::chrono::steady_clock::now() + std::chrono::milliseconds(batch_ms_);
  std::unique_lock lock(mu_);
  while (true) {
    wake_.wait_until(lock, next, [&] { return stopping_ || flush_asked_ > flush_done_; });
    next = std::chrono::steady_clock::now() + std::chrono::milliseconds(batch_ms_);
    batch.swap(queue_);
    const uint64_t gen = flush_asked_;
    const bool stop = stopping_;
    lock.unlock();
    size_t n = batch.size();
    bool ok = batch.empty() || write_batch(batch);
    batch.clear();
    lock.lock();
    if (n) {
      if (ok) {
        stats_.written += n;
        ++stats_.batches;
      } else {
        ++stats_.errors;
      }
    }
    flush_done_ = gen;
    done_.notify_all();
    // stopping_ is set before the last changes could be queued, so this batch was the last.
    if (stop) break;
  }
  running_ = false;
  done_.notify_all();
}

bool SqliteStore::write_batch(std::vector<Op>& ops) {
  if (!exec("BEGIN")) return false;
  for (Op& op : ops) {
    int rc;
    if (auto* e = std::get_if<Erase>(&op)) {
      sqlite3_bind_int64(delete_, 1, static_cast<sqlite3_int64>(e->id));
      rc = sqlite3_step(delete_);
      sqlite3_reset(delete_);
    } else {
      const StoredBinding& row = std::get<StoredBinding>(op);
      const Binding& b = row.binding;
      sqlite3_stmt* st = upsert_;
      sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(row.id));
      bind_text(st, 2, row.aor);
      bind_text(st, 3, b.contact);
      bind_text(st, 4, b.params);
      sqlite3_bind_int(st, 5, b.q);
      sqlite3_bind_int64(st, 6, b.expires_at);
      bind_text(st, 7, b.call_id);
      sqlite3_bind_int64(st, 8, b.cseq);
      sqlite3_bind_int(st, 9, static_cast<int>(b.source.protocol));
      std::string addr = b.source.endpoint.valid() ? b.source.endpoint.ip() : std::string();
      bind_text(st, 10, addr);
      sqlite3_bind_int(st, 11, b.source.endpoint.valid() ? b.source.endpoint.port() : 0);
      std::string path;
      for (const auto& p : b.path) {
        if (!path.empty()) path += ',';
        path += p;
      }
      bind_text(st, 12, path);
      bind_text(st, 13, b.instance);
      sqlite3_bind_int64(st, 14, b.reg_id);
      bind_text(st, 15, b.user_agent);
      sqlite3_bind_int64(st, 16, b.received_at);
      rc = sqlite3_step(st);
      sqlite3_reset(st);
      sqlite3_clear_bindings(st);
    }
    if (rc != SQLITE_DONE) {
      SB_ERROR("location store %s: write failed: %s", path_.c_str(), sqlite3_errmsg(db_));
      exec("ROLLBACK");
      return false;
    }
  }
  return exec("COMMIT");
}

}  // namespace sb::location
