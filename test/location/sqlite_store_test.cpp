#include "location/sqlite_store.h"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "location/location_service.h"

using namespace sb;
using location::BindingChange;
using location::LocationService;
using location::SqliteStore;

namespace {

// A fresh directory for one test, removed with everything in it at the end.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sb_location_test_XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

location::Settings manual() {
  location::Settings s;
  s.sweep_interval_ms = 0;
  return s;
}

int64_t count_rows(const std::string& db_path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM bindings", -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

location::UpdateRequest request(std::string_view call_id, uint32_t cseq) {
  location::UpdateRequest r;
  r.call_id = call_id;
  r.cseq = cseq;
  return r;
}

}  // namespace

TEST_CASE("bindings are written behind and reloaded; expired ones are dropped") {
  TempDir tmp;
  // The directory of the database is created when missing.
  const std::string db = tmp.path + "/var/lib/location.db";
  core::FakeClock clock;
  {
    LocationService loc(clock, manual(), std::make_unique<SqliteStore>(db, 20, 1000));
    REQUIRE(loc.start());
    BindingChange shortlived;
    shortlived.contact = "sip:short@192.0.2.1";
    shortlived.expires = 60;
    REQUIRE(loc.update("sip:alice@example.com", request("c1", 1), {&shortlived, 1}));

    BindingChange keep;
    keep.contact = "sip:keep@[2001:db8::5]:5062;transport=tcp";
    keep.params = "unknownparam";
    keep.expires = 3600;
    keep.q = 800;
    keep.instance = "\"<urn:uuid:abc>\"";
    keep.reg_id = 2;
    std::string_view path[] = {"<sip:edge.example.com;lr;ob>"};
    location::UpdateRequest req = request("c2@host", 77);
    req.path = path;
    req.user_agent = "Phone/2.0";
    req.source.protocol = core::Protocol::Tcp;
    req.source.endpoint = *core::Endpoint::parse("2001:db8::5", 50000);
    req.source.connection = {0, 12};
    REQUIRE(loc.update("sip:bob@example.com", req, {&keep, 1}));

    BindingChange gone;
    gone.contact = "sip:gone@192.0.2.9";
    gone.expires = 3600;
    REQUIRE(loc.update("sip:carol@example.com", request("c3", 1), {&gone, 1}));
    REQUIRE(loc.remove_all("sip:carol@example.com") == 1);

    BindingChange desk;
    desk.contact = "sip:desk@192.0.2.50";
    REQUIRE(loc.add_static("sip:dave@example.com", desk));
    loc.stop();
    CHECK(loc.store_stats().dropped == 0);
    CHECK(loc.store_stats().errors == 0);
  }
  CHECK(count_rows(db) == 3);

  clock.advance(120'000);  // the 60 s binding expired while we were down
  {
    LocationService loc(clock, manual(), std::make_unique<SqliteStore>(db, 20, 1000));
    REQUIRE(loc.start());
    CHECK(loc.lookup("sip:alice@example.com").empty());
    CHECK(loc.lookup("sip:carol@example.com").empty());
    CHECK(loc.size() == 2);
    CHECK(loc.aor_count() == 2);
    auto bs = loc.lookup("sip:bob@example.com");
    REQUIRE(bs.size() == 1);
    const auto& b = bs[0];
    CHECK(b.contact == "sip:keep@[2001:db8::5]:5062;transport=tcp");
    CHECK(b.params == "unknownparam");
    CHECK(b.q == 800);
    CHECK(b.instance == "\"<urn:uuid:abc>\"");
    CHECK(b.reg_id == 2);
    CHECK(b.call_id == "c2@host");
    CHECK(b.cseq == 77);
    CHECK(b.path == std::vector<std::string>{"<sip:edge.example.com;lr;ob>"});
    CHECK(b.user_agent == "Phone/2.0");
    CHECK(b.source.protocol == core::Protocol::Tcp);
    CHECK(b.source.endpoint.to_string() == "[2001:db8::5]:50000");
    // The connection belonged to the previous process.
    CHECK(!b.source.connection.valid());
    CHECK(b.expires_in(clock.wall_ms()) == 3600 - 120);
    auto st = loc.lookup("sip:dave@example.com");
    REQUIRE(st.size() == 1);
    CHECK(st[0].is_static());

    // The reload keeps Call-ID/CSeq ordering: an old CSeq is still refused.
    BindingChange again;
    again.contact = "sip:keep@[2001:db8::5]:5062;transport=tcp";
    again.expires = 60;
    again.instance = "\"<urn:uuid:abc>\"";
    again.reg_id = 2;
    CHECK(!loc.update("sip:bob@example.com", request("c2@host", 77), {&again, 1}));
    // New bindings get ids after the stored ones (no row is overwritten).
    BindingChange fresh;
    fresh.contact = "sip:fresh@192.0.2.1";
    fresh.expires = 600;
    REQUIRE(loc.update("sip:erin@example.com", request("c9", 1), {&fresh, 1}));
    loc.stop();
  }
  // The expired row was erased from the file as well; erin's was added.
  CHECK(count_rows(db) == 3);
}

TEST_CASE("stop() flushes what the batch window still holds") {
  TempDir tmp;
  const std::string db = tmp.path + "/location.db";
  core::FakeClock clock;
  {
    // A batch window far longer than the test: only stop() can have written the rows.
    LocationService loc(clock, manual(), std::make_unique<SqliteStore>(db, 600'000, 1000));
    REQUIRE(loc.start());
    for (int i = 0; i < 50; ++i) {
      std::string contact = "sip:ua" + std::to_string(i) + "@192.0.2.1";
      BindingChange c;
      c.contact = contact;
      c.expires = 600;
      REQUIRE(loc.update("sip:u" + std::to_string(i) + "@example.com", request("c", 1), {&c, 1}));
    }
    CHECK(loc.store_stats().queued == 50);
    loc.stop();
    CHECK(loc.store_stats().written == 50);
  }
  CHECK(count_rows(db) == 50);
  LocationService again(clock, manual(), std::make_unique<SqliteStore>(db));
  REQUIRE(again.start());
  CHECK(again.size() == 50);
}

TEST_CASE("the store's queue is bounded: past it changes are dropped and counted") {
  TempDir tmp;
  SqliteStore store(tmp.path + "/location.db", 600'000, 3);
  location::StoredBinding row;
  row.aor = "sip:a@example.com";
  row.binding.contact = "sip:a@192.0.2.1";
  row.binding.expires_at = 1;
  for (uint64_t id = 1; id <= 5; ++id) {
    row.id = id;
    store.save(row);
  }
  CHECK(store.stats().queued == 3);
  CHECK(store.stats().dropped == 2);

  std::vector<location::StoredBinding> loaded;
  REQUIRE(store.open(loaded));
  CHECK(loaded.empty());
  store.flush();
  CHECK(store.stats().written == 3);
  CHECK(store.stats().queued == 0);
  store.erase(2);
  store.flush();
  CHECK(count_rows(store.path()) == 2);
  store.close();
  store.save(row);  // after close: dropped, not blocking
  CHECK(store.stats().dropped == 3);
}

TEST_CASE("make_store picks the backend") {
  location::StoreConfig memory;
  memory.backend = "memory";
  auto m = location::make_store(memory);
  REQUIRE(m);
  CHECK(*m == nullptr);
  location::StoreConfig sqlite;
  auto s = location::make_store(sqlite);
  REQUIRE(s);
  CHECK(*s != nullptr);
  location::StoreConfig redis;
  redis.backend = "redis";
  CHECK(!location::make_store(redis));
}

TEST_CASE("an unopenable database fails start() with a clear error") {
  TempDir tmp;
  // A directory where the file should be.
  std::filesystem::create_directories(tmp.path + "/db");
  core::FakeClock clock;
  LocationService loc(clock, manual(), std::make_unique<SqliteStore>(tmp.path + "/db"));
  auto st = loc.start();
  REQUIRE(!st);
  CHECK(std::string(st.error().reason).find("location database") != std::string::npos);
}
