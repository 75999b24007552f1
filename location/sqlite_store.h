// The default Store: SQLite in WAL mode, written by one background thread in batched
// transactions (every batch_ms) from a bounded queue. A kill -9 loses at most the changes
// of the last batch window; a clean close() loses nothing.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "location/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace sb::location {

class SqliteStore final : public Store {
 public:
  // `path`'s directory is created when missing.
  SqliteStore(std::string path, uint32_t batch_ms = 1000, uint32_t queue_capacity = 65536);
  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  core::Status open(std::vector<StoredBinding>& loaded) override;
  void save(StoredBinding row) override;
  void erase(uint64_t id) override;
  void flush() override;
  void close() override;
  StoreStats stats() const override;

  const std::string& path() const { return path_; }

 private:
  struct Erase {
    uint64_t id;
  };
  using Op = std::variant<StoredBinding, Erase>;

  void enqueue(Op op);
  void run();
  bool write_batch(std::vector<Op>& ops);
  bool exec(const char* sql);
  void close_db();

  const std::string path_;
  const uint32_t batch_ms_;
  const size_t capacity_;

  sqlite3* db_ = nullptr;
  sqlite3_stmt* upsert_ = nullptr;
  sqlite3_stmt* delete_ = nullptr;

  mutable std::mutex mu_;
  std::condition_variable wake_;   // the writer: flush asked, or stopping
  std::condition_variable done_;   // flush() callers: a batch was committed
  std::vector<Op> queue_;
  bool running_ = false;           // the writer thread accepts work
  bool stopping_ = false;
  uint64_t flush_asked_ = 0;       // generation asked by flush()
  uint64_t flush_done_ = 0;        // generation whose changes are committed
  StoreStats stats_;
  std::thread writer_;
};

}  // namespace sb::location
