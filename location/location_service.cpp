#include "location/location_service.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <memory_resource>
#include <new>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/log.h"
#include "core/scratch.h"
#include "core/sip_headers.h"
#include "core/text.h"
#include "core/uri.h"

namespace sb::location {

namespace {

// One slot per second; a binding further out than this stays in its slot across rounds
// and is looked at once per round, which is cheap.
constexpr uint32_t kWheelSlots = 1024;

enum Field : int { kContact = 0, kParams, kCallId, kInstance, kUserAgent, kPath, kFieldCount };
using Fields = std::array<std::string_view, kFieldCount>;
// The source address (4 or 16 bytes, none without one) is kept after the text fields.
constexpr int kAddress = kFieldCount;

struct AorHash {
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// +sip.instance values compare without their quotes and case-insensitively: the URN
// carries a UUID, whose hex digits RFC 4122 §3 compares without case (RFC 5626 §4.1).
std::string_view unquote(std::string_view s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') return s.substr(1, s.size() - 2);
  return s;
}
bool same_instance(std::string_view a, std::string_view b) {
  return core::iequals(unquote(a), unquote(b));
}

// Path values as one field: the table stores them comma-joined (see Record::to_binding).
template <class Strings>
std::string join_path(const Strings& path) {
  std::string out;
  for (std::string_view p : path) {
    if (!out.empty()) out += ',';
    out.append(p);
  }
  return out;
}

}  // namespace

struct AorEntry;

// A binding as the table keeps it: one allocation holding the fixed fields and, right
// after them, the text fields and the source address back to back. The memory budget is
// ~400 bytes a binding, the AOR's share included (docs/performance.md "Memory").
struct LocationService::Record {
  // Expiry wheel links: intrusive, so removal is O(1) and no wheel entry can dangle.
  Record* wprev = nullptr;
  Record* wnext = nullptr;
  Record* next = nullptr;      // the AOR's next binding, in order
  AorEntry* aor = nullptr;     // the AOR this binding belongs to
  uint64_t id = 0;             // the store's row id
  int64_t expires_at = 0;
  int64_t received_at = 0;
  uint32_t cseq = 0;
  uint32_t reg_id = 0;
  uint32_t conn_worker = 0;
  uint32_t conn_id = 0;
  uint16_t port = 0;
  uint16_t q = 1000;
  uint8_t protocol = 0;
  bool remote = false;         // another cluster node's binding (Binding::remote)
  uint16_t len[kFieldCount + 1] = {};  // the text fields', then the address's (0, 4, 16)

  const char* text() const { return reinterpret_cast<const char*>(this + 1); }
  std::string_view field(int f) const {
    size_t off = 0;
    for (int i = 0; i < f; ++i) off += len[i];
    return {text() + off, len[f]};
  }
  bool is_static() const { return expires_at == kNeverExpires; }

  // Every field must be at most 65535 bytes (checked by the callers). The source's address
  // is stored with the text (4 bytes for IPv4 instead of a fixed 16), its port, transport and
  // connection in the fixed fields.
  static Record* make(const Fields& f, const core::Peer& source) {
    uint8_t addr[16];
    size_t addr_len = 0;
    const sockaddr* sa = source.endpoint.sa();
    if (sa->sa_family == AF_INET) {
      std::memcpy(addr, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
      addr_len = 4;
    } else if (sa->sa_family == AF_INET6) {
      std::memcpy(addr, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, 16);
      addr_len = 16;
    }
    size_t n = addr_len;
    for (auto s : f) n += s.size();
    void* mem = ::operator new(sizeof(Record) + n);
    auto* r = new (mem) Record{};
    char* out = reinterpret_cast<char*>(r + 1);
    for (int i = 0; i < kFieldCount; ++i) {
      r->len[i] = static_cast<uint16_t>(f[i].size());
      if (!f[i].empty()) std::memcpy(out, f[i].data(), f[i].size());
      out += f[i].size();
    }
    r->len[kAddress] = static_cast<uint16_t>(addr_len);
    if (addr_len) std::memcpy(out, addr, addr_len);
    r->protocol = static_cast<uint8_t>(source.protocol);
    r->conn_worker = source.connection.worker;
    r->conn_id = source.connection.id;
    if (sa->sa_family == AF_INET)
      r->port = ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
    else if (sa->sa_family == AF_INET6)
      r->port = ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
    return r;
  }
  static void destroy(Record* r) {
    r->~Record();
    ::operator delete(r);
  }

  core::Peer source() const {
    core::Peer p;
    p.protocol = static_cast<core::Protocol>(protocol);
    p.connection = {conn_worker, conn_id};
    const std::string_view addr = field(kAddress);
    if (addr.size() == 4) {
      sockaddr_in in{};
      in.sin_family = AF_INET;
      in.sin_port = htons(port);
      std::memcpy(&in.sin_addr, addr.data(), 4);
      if (auto e = core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&in)))
        p.endpoint = *e;
    } else if (addr.size() == 16) {
      sockaddr_in6 in6{};
      in6.sin6_family = AF_INET6;
      in6.sin6_port = htons(port);
      std::memcpy(&in6.sin6_addr, addr.data(), 16);
      if (auto e = core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&in6)))
        p.endpoint = *e;
    }
    return p;
  }

  Binding to_binding() const {
    Binding b;
    b.contact = field(kContact);
    b.params = field(kParams);
    b.q = q;
    b.expires_at = expires_at;
    b.call_id = field(kCallId);
    b.cseq = cseq;
    b.source = source();
    core::for_each_list_element(field(kPath), [&](std::string_view v) {
      if (!v.empty()) b.path.emplace_back(v);
      return true;
    });
    b.instance = field(kInstance);
    b.reg_id = reg_id;
    b.user_agent = field(kUserAgent);
    b.received_at = received_at;
    b.remote = remote;
    return b;
  }
};

// An address-of-record: its bindings and, right after it in the same allocation, its
// canonical AOR (one allocation per AOR: no map node, no separate key string; 16 bytes and
// the key, so a typical AOR takes 48). An entry without bindings leaves the table.
struct AorEntry {
  LocationService::Record* head = nullptr;  // bindings by q, then most recent first
  uint32_t hash = 0;                        // AorTable's hash of the key
  uint32_t key_len = 0;

  bool empty() const { return head == nullptr; }
  // How many bindings (a walk: an AOR has a few, and counting them is rarely needed).
  size_t count() const {
    size_t n = 0;
    for (const LocationService::Record* r = head; r; r = r->next) ++n;
    return n;
  }

  std::string_view key() const { return {reinterpret_cast<const char*>(this + 1), key_len}; }
  static AorEntry* make(std::string_view key, uint32_t hash) {
    void* mem = ::operator new(sizeof(AorEntry) + key.size());
    auto* e = new (mem) AorEntry{};
    e->hash = hash;
    e->key_len = static_cast<uint32_t>(key.size());
    if (!key.empty()) std::memcpy(e + 1, key.data(), key.size());
    return e;
  }
  static void destroy(AorEntry* e) {
    e->~AorEntry();
    ::operator delete(e);
  }
};

// A shard's AORs: open addressing with linear probing and backward-shift deletion over
// pointers to the entries (8 bytes a slot, at most 3/4 full). It owns the entries.
class AorTable {
 public:
  AorTable() = default;
  AorTable(const AorTable&) = delete;
  AorTable& operator=(const AorTable&) = delete;
  ~AorTable() {
    for (AorEntry* e : slots_)
      if (e) AorEntry::destroy(e);
  }

  // `hash` is AorHash{}(key). The table uses its high half: the low bits pick the shard
  // (LocationService::shard_for), so in one shard they are alike.
  static uint32_t slot_hash(size_t hash) { return static_cast<uint32_t>(hash >> 32); }

  AorEntry* find(std::string_view key, size_t hash) const {
    if (size_ == 0) return nullptr;
    const uint32_t h = slot_hash(hash);
    for (size_t i = h & mask(); slots_[i]; i = (i + 1) & mask()) {
      const AorEntry* e = slots_[i];
      if (e->hash == h && e->key() == key) return slots_[i];
    }
    return nullptr;
  }
  // A new, empty entry for `key` (hashed as for find), which must not be in the table.
  AorEntry* insert(std::string_view key, size_t hash) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    AorEntry* e = AorEntry::make(key, slot_hash(hash));
    place(e);
    ++size_;
    return e;
  }
  // Remove and free `e` (an entry of this table).
  void erase(AorEntry* e) {
    size_t i = e->hash & mask();
    while (slots_[i] != e) i = (i + 1) & mask();
    // Backward shift: move later entries of the run into the hole when their home slot
    // allows it, so lookups never need tombstones.
    for (size_t j = (i + 1) & mask(); slots_[j]; j = (j + 1) & mask()) {
      const size_t home = slots_[j]->hash & mask();
      // slots_[j] may move to i when its home is not cyclically in (i, j].
      const bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (stays) continue;
      slots_[i] = slots_[j];
      i = j;
    }
    slots_[i] = nullptr;
    --size_;
    AorEntry::destroy(e);
  }
  // Every entry: f(AorEntry&). `f` must not change the table.
  template <class F>
  void for_each(F&& f) const {
    for (AorEntry* e : slots_)
      if (e) f(*e);
  }
  size_t size() const { return size_; }

 private:
  size_t mask() const { return slots_.size() - 1; }
  void place(AorEntry* e) {
    size_t i = e->hash & mask();
    while (slots_[i]) i = (i + 1) & mask();
    slots_[i] = e;
  }
  void grow() {
    std::vector<AorEntry*> old(slots_.empty() ? 16 : slots_.size() * 2, nullptr);
    old.swap(slots_);
    for (AorEntry* e : old)
      if (e) place(e);
  }

  std::vector<AorEntry*> slots_;  // a power of two in size, null when free
  size_t size_ = 0;
};

struct alignas(64) LocationService::Shard {
  mutable std::mutex mu;
  AorTable map;
  std::array<Record*, kWheelSlots> wheel{};
  int64_t cursor_sec = 0;  // sweeps start from this second

  static size_t slot(const Record* r) {
    return static_cast<size_t>(static_cast<uint64_t>(r->expires_at / 1000) % kWheelSlots);
  }
  void wheel_link(Record* r) {
    if (r->is_static()) return;
    Record*& head = wheel[slot(r)];
    r->wprev = nullptr;
    r->wnext = head;
    if (head) head->wprev = r;
    head = r;
  }
  void wheel_unlink(Record* r) {
    if (r->is_static()) return;
    if (r->wprev) r->wprev->wnext = r->wnext;
    else wheel[slot(r)] = r->wnext;
    if (r->wnext) r->wnext->wprev = r->wprev;
    r->wprev = r->wnext = nullptr;
  }
};

namespace {

using Record = LocationService::Record;

// Order of an AOR's bindings: q descending, then most recent first.
bool before(const Record* a, const Record* b) {
  if (a->q != b->q) return a->q > b->q;
  return a->received_at > b->received_at;
}

// Insert `r` into the AOR's list at its place (ahead of bindings it ties with).
void insert_sorted(AorEntry& e, Record* r) {
  Record** p = &e.head;
  while (*p && before(*p, r)) p = &(*p)->next;
  r->next = *p;
  *p = r;
  r->aor = &e;
}

void unlink_from_aor(AorEntry& e, Record* r) {
  for (Record** p = &e.head; *p; p = &(*p)->next) {
    if (*p == r) {
      *p = r->next;
      r->next = nullptr;
      return;
    }
  }
}

Settings normalized(Settings s) {
  if (s.shards == 0) s.shards = 1;
  return s;
}

bool fields_fit(const Fields& f) {
  for (auto s : f)
    if (s.size() > 0xffff) return false;
  return true;
}

// A stored or shared binding as a Record under `id`; null when its fields do not fit. Without
// `keep_connection` the connection id is dropped (it was the previous process's).
Record* record_of(const Binding& b, uint64_t id, bool keep_connection) {
  const std::string path = join_path(b.path);
  const Fields f{b.contact, b.params, b.call_id, b.instance, b.user_agent, path};
  if (!fields_fit(f)) return nullptr;
  core::Peer src = b.source;
  if (!keep_connection) src.connection = {};
  Record* r = Record::make(f, src);
  r->id = id;
  r->q = b.q;
  r->expires_at = b.expires_at;
  r->received_at = b.received_at;
  r->cseq = b.cseq;
  r->reg_id = b.instance.empty() ? 0 : b.reg_id;
  r->remote = b.remote;
  return r;
}

}  // namespace

LocationService::LocationService(const core::Clock& clock, Settings settings,
                                 std::unique_ptr<Store> store)
    : clock_(clock), settings_(normalized(settings)) {
  store_.store(store.get());
  if (store) stores_.push_back(std::move(store));
  shards_ = std::make_unique<Shard[]>(settings_.shards);
  int64_t now_sec = clock_.wall_ms() / 1000;
  for (uint32_t i = 0; i < settings_.shards; ++i) shards_[i].cursor_sec = now_sec;
}

LocationService::~LocationService() {
  stop();
  for (uint32_t i = 0; i < settings_.shards; ++i) {
    shards_[i].map.for_each([](AorEntry& entry) {
      for (Record* r = entry.head; r;) {
        Record* next = r->next;
        Record::destroy(r);
        r = next;
      }
    });
  }
}

LocationService::Shard& LocationService::shard_for(std::string_view aor, size_t& hash) const {
  hash = AorHash{}(aor);  // hashed once: the shard's AorTable takes it too
  return shards_[hash % settings_.shards];
}

void LocationService::release(Shard& s, Record* r, bool erase_stored, bool expired) {
  s.wheel_unlink(r);
  if (Store* st = store(); erase_stored && st) {
    BindingKey k;
    k.id = r->id;
    k.aor = r->aor ? r->aor->key() : std::string_view();
    k.contact = r->field(kContact);
    k.instance = r->field(kInstance);
    k.reg_id = r->reg_id;
    k.expires_at = r->expires_at;
    k.expired = expired;
    st->remove(k);
  }
  Record::destroy(r);
  bindings_.fetch_sub(1, std::memory_order_relaxed);
}

core::Status LocationService::start() {
  if (started_) return {};
  if (Store* st = store(); st && !store_opened_) {
    st->set_remote_sink(remote_sink());
    std::vector<StoredBinding> rows;
    if (auto opened = st->open(rows); !opened) return opened;
    store_opened_ = true;
    const int64_t now = clock_.wall_ms();
    uint64_t max_id = 0;
    size_t loaded = 0, dropped = 0;
    for (StoredBinding& row : rows) {
      max_id = std::max(max_id, row.id);
      // Expired while we were down (or unusable): gone from the table and from the store.
      if (row.binding.expires_at <= now || row.aor.empty() || !insert_loaded(row, true)) {
        st->erase(row.id);
        ++dropped;
        continue;
      }
      ++loaded;
    }
    uint64_t want = max_id + 1;
    uint64_t cur = next_id_.load();
    while (cur < want && !next_id_.compare_exchange_weak(cur, want)) {
    }
    SB_INFO("location: loaded %zu bindings (%zu AORs), dropped %zu expired", loaded,
            aor_count(), dropped);
  }
  {
    std::lock_guard lock(sweep_mu_);
    stopping_ = false;
  }
  if (settings_.sweep_interval_ms > 0) sweeper_ = std::thread([this] { sweeper(); });
  started_ = true;
  return {};
}

void LocationService::stop() {
  {
    std::lock_guard lock(sweep_mu_);
    stopping_ = true;
  }
  sweep_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
  if (Store* st = store()) st->close();
  started_ = false;
}

void LocationService::sweeper() {
  core::log::set_thread_name("location");
  std::unique_lock lock(sweep_mu_);
  while (!stopping_) {
    sweep_cv_.wait_for(lock, std::chrono::milliseconds(settings_.sweep_interval_ms),
                       [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    sweep(clock_.wall_ms());
    lock.lock();
  }
}

RemoteSink LocationService::remote_sink() {
  RemoteSink sink;
  sink.apply = [this](std::string_view aor, std::vector<Binding> b, bool keep_own) {
    apply_remote(aor, std::move(b), keep_own);
  };
  sink.reconcile = [this](const std::function<Stored(const BindingKey&)>& in_store, bool restarted) {
    reconcile(in_store, restarted);
  };
  return sink;
}

void LocationService::reconcile(const std::function<Stored(const BindingKey&)>& in_store, bool restarted) {
  size_t dropped = 0, rewritten = 0;
  const int64_t now = clock_.wall_ms();
  for (uint32_t i = 0; i < settings_.shards; ++i) {
    Shard& s = shards_[i];
    std::lock_guard lock(s.mu);
    Store* st = store();
    std::vector<AorEntry*> emptied;  // erased after the walk: erasing moves entries
    s.map.for_each([&](AorEntry& entry) {
      Record** link = &entry.head;
      while (Record* r = *link) {
        BindingKey k;
        k.id = r->id;
        k.aor = entry.key();
        k.contact = r->field(kContact);
        k.instance = r->field(kInstance);
        k.reg_id = r->reg_id;
        k.expires_at = r->expires_at;
        const Stored has = in_store(k);
        if (has == Stored::Yes || (has == Stored::Unknown && r->remote)) {
          link = &r->next;
          continue;
        }
        // Another node's binding the shared store no longer has was removed there; ours stay
        // (they may still be on their way to it), and go to it again after a restart.
        if (r->remote) {
          *link = r->next;
          release(s, r, false);
          ++dropped;
          continue;
        }
        if (restarted && st && r->expires_at > now) {
          st->save(StoredBinding{r->id, std::string(entry.key()), r->to_binding()});
          ++rewritten;
        }
        link = &r->next;
      }
      if (!entry.head) emptied.push_back(&entry);
    });
    for (AorEntry* e : emptied) {
      s.map.erase(e);
      aors_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  if (dropped || rewritten)
    SB_INFO("location: shared store re-read: %zu bindings removed elsewhere dropped, %zu of ours written again",
            dropped, rewritten);
}

void LocationService::join_lane(uint32_t lane, uv_loop_s* loop) {
  std::lock_guard lock(stores_mu_);
  Store* cur = store();
  for (const auto& st : stores_)
    if (st.get() != cur) st->detach(lane);
  if (cur) cur->attach(lane, loop);
}

void LocationService::leave_lane(uint32_t lane) {
  std::lock_guard lock(stores_mu_);
  for (const auto& st : stores_) st->detach(lane);
}

void LocationService::flush() {
  if (Store* st = store()) st->flush();
}

core::Result<LocationService::PreparedStore> LocationService::prepare_store(std::unique_ptr<Store> next) {
  PreparedStore p;
  if (next) {
    next->set_remote_sink(remote_sink());
    if (auto opened = next->open(p.rows); !opened) return opened.error();
  }
  p.store = std::move(next);
  return p;
}

void LocationService::commit_store(PreparedStore next) {
  Store* nst = next.store.get();
  const int64_t now = clock_.wall_ms();
  // The new store's rows carry its own ids, which may be the table's ids for other bindings:
  // they are erased there, and re-written below under the table's ids.
  uint64_t max_id = 0;
  for (const StoredBinding& row : next.rows) max_id = std::max(max_id, row.id);
  uint64_t cur = next_id_.load();
  while (cur < max_id + 1 && !next_id_.compare_exchange_weak(cur, max_id + 1)) {
  }
  if (nst)
    for (const StoredBinding& row : next.rows) nst->erase(row.id);
  // AORs the table does not hold are taken from the store; for the others the table wins.
  std::unordered_map<std::string, bool> take;
  size_t merged = 0;
  for (StoredBinding& row : next.rows) {
    if (row.aor.empty() || row.binding.expires_at <= now) continue;
    auto [it, fresh] = take.try_emplace(row.aor, false);
    if (fresh) it->second = !has(row.aor);
    if (!it->second) continue;
    row.id = next_id_.fetch_add(1, std::memory_order_relaxed);
    insert_loaded(row, false);
    ++merged;
  }
  // Swap with every shard locked, so no change is half in the old store and half in the new.
  Store* old = store();
  {
    std::vector<std::unique_lock<std::mutex>> locks;
    locks.reserve(settings_.shards);
    for (uint32_t i = 0; i < settings_.shards; ++i) locks.emplace_back(shards_[i].mu);
    store_.store(nst, std::memory_order_release);
  }
  if (next.store) {
    std::lock_guard lock(stores_mu_);
    stores_.push_back(std::move(next.store));
  }
  // What the old store still had queued lands before the copy below (same file or keys).
  if (old) old->flush();
  // Then the whole table, one shard at a time: a change made meanwhile already went to the
  // new store and is written again here, which is harmless.
  size_t written = 0;
  if (nst) {
    for (uint32_t i = 0; i < settings_.shards; ++i) {
      Shard& s = shards_[i];
      {
        std::lock_guard lock(s.mu);
        s.map.for_each([&](const AorEntry& entry) {
          for (const Record* r = entry.head; r; r = r->next) {
            nst->save(StoredBinding{r->id, std::string(entry.key()), r->to_binding()});
            ++written;
          }
        });
      }
      nst->flush();  // keeps the queue within its bound for a big table
    }
  }
  if (old) old->close();
  SB_INFO("location: store replaced: %zu bindings written, %zu taken from it", written, merged);
}

bool LocationService::insert_loaded(const StoredBinding& row, bool previous_process) {
  Record* r = record_of(row.binding, row.id, !previous_process);
  if (!r) return false;
  size_t aor_hash = 0;
  Shard& s = shard_for(row.aor, aor_hash);
  std::lock_guard lock(s.mu);
  AorEntry* e = s.map.find(row.aor, aor_hash);
  if (!e) {
    e = s.map.insert(row.aor, aor_hash);
    aors_.fetch_add(1, std::memory_order_relaxed);
  }
  insert_sorted(*e, r);
  s.wheel_link(r);
  bindings_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

StoreStats LocationService::store_stats() const {
  Store* st = store();
  return st ? st->stats() : StoreStats{};
}

core::Result<UpdateOutcome> LocationService::update(std::string_view aor,
                                                    const UpdateRequest& req,
                                                    std::span<const BindingChange> changes) {
  if (aor.empty()) return faults::kBadAor;
  const Limits limits = req.limits.value_or(settings_.limits);
  const std::string path = join_path(req.path);
  // The temporaries below live on the stack for the usual REGISTER of a few Contacts.
  core::Scratch<4096> scratch;
  // Parse and check what the request brings before taking the lock.
  std::pmr::vector<core::Uri> uris(scratch.resource());
  uris.reserve(changes.size());
  for (const BindingChange& c : changes) {
    auto u = core::parse_uri(c.contact);
    if (!u) return faults::kBadContact;
    uris.push_back(*u);
    if (!fields_fit({c.contact, c.params, req.call_id, c.instance, req.user_agent, path}))
      return faults::kTooLong;
  }
  auto flow_of = [](const BindingChange& c) { return c.instance.empty() ? 0u : c.reg_id; };

  // The AOR's bindings as this request will leave them; nothing is changed in the table
  // until every check has passed (§10.3: a REGISTER is processed completely or not at all).
  struct Item {
    Record* old = nullptr;                  // the stored binding (null: new in this request)
    const BindingChange* change = nullptr;  // set when this request creates or refreshes it
    size_t order = 0;                       // its Contact's index in the request
    bool removed = false;
    std::optional<core::Uri> old_uri;       // old's URI, parsed on first comparison
  };
  std::pmr::vector<Item> items(scratch.resource());
  UpdateOutcome out;

  const int64_t now = clock_.wall_ms();
  size_t aor_hash = 0;
  Shard& s = shard_for(aor, aor_hash);
  std::lock_guard lock(s.mu);
  AorEntry* entry = s.map.find(aor, aor_hash);
  items.reserve((entry ? entry->count() : 0) + changes.size());
  if (entry) {
    // Expired but not yet swept: already gone as far as anyone can see.
    for (Record** p = &entry->head; *p;) {
      Record* r = *p;
      if (r->expires_at <= now) {
        *p = r->next;
        release(s, r, true, true);
      } else {
        Item item;
        item.old = r;
        items.push_back(std::move(item));
        p = &r->next;
      }
    }
  }
  if (entry && entry->empty()) {
    s.map.erase(entry);
    aors_.fetch_sub(1, std::memory_order_relaxed);
    entry = nullptr;
  }
  const size_t old_count = items.size();

  auto matches = [&](Item& item, const BindingChange& c, const core::Uri& u) {
    if (item.removed) return false;
    std::string_view instance;
    uint32_t reg_id;
    if (item.change) {
      instance = item.change->instance;
      reg_id = flow_of(*item.change);
    } else {
      if (item.old->is_static()) return false;
      instance = item.old->field(kInstance);
      reg_id = item.old->reg_id;
    }
    uint32_t want = flow_of(c);
    // RFC 5626 §6: with +sip.instance and reg-id, the pair names the flow, whatever the URI.
    if (want) return reg_id == want && same_instance(instance, c.instance);
    if (reg_id) return false;
    if (item.change) return core::uri_equal(uris[item.order], u);
    // A refresh usually repeats the stored Contact byte for byte: no parse needed.
    if (item.old->field(kContact) == c.contact) return true;
    if (!item.old_uri) {
      auto ou = core::parse_uri(item.old->field(kContact));
      if (!ou) return false;
      item.old_uri = *ou;
    }
    return core::uri_equal(*item.old_uri, u);
  };
  // §10.3 step 7: a stored binding with the request's Call-ID changes only for a higher CSeq.
  auto in_order = [&](const Item& item) {
    return item.change || item.old->field(kCallId) != req.call_id || req.cseq > item.old->cseq;
  };

  for (size_t i = 0; i < changes.size(); ++i) {
    const BindingChange& c = changes[i];
    Item* hit = nullptr;
    for (Item& item : items)
      if (matches(item, c, uris[i])) {
        hit = &item;
        break;
      }
    if (hit) {
      if (!in_order(*hit)) return faults::kOutOfOrder;
      if (c.expires == 0) {
        hit->removed = true;
      } else {
        hit->change = &c;
        hit->order = i;
      }
    } else if (c.expires > 0) {
      Item item;
      item.change = &c;
      item.order = i;
      items.push_back(std::move(item));
    }
  }
  if (req.remove_all) {
    for (Item& item : items) {
      if (item.removed || (item.old && item.old->is_static() && !item.change)) continue;
      if (!in_order(item)) return faults::kOutOfOrder;
      item.removed = true;
    }
  }

  size_t new_count = 0;
  for (const Item& item : items) new_count += item.removed ? 0 : 1;
  if (new_count > limits.max_bindings_per_aor && new_count > old_count)
    return faults::kTooManyBindings;
  if (!entry && new_count > 0) {
    // Reserve the AOR; the counter is shared by every shard.
    if (aors_.fetch_add(1, std::memory_order_relaxed) >= limits.max_aors) {
      aors_.fetch_sub(1, std::memory_order_relaxed);
      return faults::kTableFull;
    }
    entry = s.map.insert(aor, aor_hash);
  }

  if (!entry) return out;  // nothing stored, nothing to store

  // Every check passed: apply.
  std::pmr::vector<Record*> next(scratch.resource());
  next.reserve(new_count);
  // The bindings this request wrote, with their Contact's index.
  std::pmr::vector<std::pair<Record*, size_t>> touched(scratch.resource());
  touched.reserve(changes.size());
  for (Item& item : items) {
    if (item.removed) {
      if (item.old) {
        release(s, item.old, true);
        ++out.removed;
      }
      continue;
    }
    if (!item.change) {
      next.push_back(item.old);
      continue;
    }
    const BindingChange& c = *item.change;
    Record* r = Record::make({c.contact, c.params, req.call_id, c.instance, req.user_agent, path}, req.source);
    r->q = c.q;
    r->expires_at = now + static_cast<int64_t>(c.expires) * 1000;
    r->received_at = now;
    r->cseq = req.cseq;
    r->reg_id = flow_of(c);
    bindings_.fetch_add(1, std::memory_order_relaxed);
    if (item.old) {
      r->id = item.old->id;  // the same row in the store
      release(s, item.old, false);
      ++out.refreshed;
    } else {
      r->id = next_id_.fetch_add(1, std::memory_order_relaxed);
      ++out.added;
    }
    s.wheel_link(r);
    next.push_back(r);
    touched.emplace_back(r, item.order);
  }
  // Order: q descending, then most recent first; the bindings of this request tie on
  // recency and keep the order of their Contacts.
  auto order_of = [&](const Record* r) -> size_t {
    for (auto& [t, o] : touched)
      if (t == r) return o;
    return SIZE_MAX;
  };
  auto before = [&](const Record* a, const Record* b) {
    if (a->q != b->q) return a->q > b->q;
    if (a->received_at != b->received_at) return a->received_at > b->received_at;
    return order_of(a) < order_of(b);
  };
  // A stable insertion sort: an AOR has a few bindings, and std::stable_sort would take a
  // buffer from the heap for them.
  for (auto it = next.begin(); it != next.end(); ++it)
    std::rotate(std::upper_bound(next.begin(), it, *it, before), it, it + 1);
  entry->head = nullptr;
  Record** tail = &entry->head;
  for (Record* r : next) {
    r->aor = entry;
    r->next = nullptr;
    *tail = r;
    tail = &r->next;
  }
  for (auto& [r, o] : touched)
    if (Store* st = store()) st->save(StoredBinding{r->id, std::string(entry->key()), r->to_binding()});
  out.bindings.reserve(next.size());
  for (Record* r : next) out.bindings.push_back(r->to_binding());
  if (entry->empty()) {
    s.map.erase(entry);
    aors_.fetch_sub(1, std::memory_order_relaxed);
  }
  return out;
}

std::vector<Binding> LocationService::lookup(std::string_view aor) const {
  std::vector<Binding> out;
  const int64_t now = clock_.wall_ms();
  size_t aor_hash = 0;
  Shard& s = shard_for(aor, aor_hash);
  std::lock_guard lock(s.mu);
  const AorEntry* e = s.map.find(aor, aor_hash);
  if (!e) return out;
  out.reserve(e->count());
  for (const Record* r = e->head; r; r = r->next)
    if (r->expires_at > now) out.push_back(r->to_binding());
  return out;
}

size_t LocationService::remove_all(std::string_view aor) {
  size_t aor_hash = 0;
  Shard& s = shard_for(aor, aor_hash);
  std::lock_guard lock(s.mu);
  AorEntry* e = s.map.find(aor, aor_hash);
  if (!e) return 0;
  size_t n = 0;
  for (Record* r = e->head; r;) {
    Record* next = r->next;
    release(s, r, true);
    r = next;
    ++n;
  }
  s.map.erase(e);
  aors_.fetch_sub(1, std::memory_order_relaxed);
  return n;
}

size_t LocationService::remove(std::string_view aor, std::string_view contact) {
  auto u = core::parse_uri(contact);
  if (!u) return 0;
  size_t aor_hash = 0;
  Shard& s = shard_for(aor, aor_hash);
  std::lock_guard lock(s.mu);
  AorEntry* found = s.map.find(aor, aor_hash);
  if (!found) return 0;
  AorEntry& e = *found;
  size_t n = 0;
  for (Record** p = &e.head; *p;) {
    Record* r = *p;
    auto ru = core::parse_uri(r->field(kContact));
    if (ru && core::uri_equal(*ru, *u)) {
      *p = r->next;
      release(s, r, true);
      ++n;
    } else {
      p = &r->next;
    }
  }
  if (e.empty()) {
    s.map.erase(&e);
    aors_.fetch_sub(1, std::memory_order_relaxed);
  }
  return n;
}

core::Status LocationService::add_static(std::string_view aor, const BindingChange& b) {
  if (aor.empty()) return faults::kBadAor;
  auto u = core::parse_uri(b.contact);
  if (!u) return faults::kBadContact;
  Fields f{b.contact, b.params, {}, b.instance, {}, {}};
  if (!fields_fit(f)) return faults::kTooLong;
  const int64_t now = clock_.wall_ms();
  size_t aor_hash = 0;
  Shard& s = shard_for(aor, aor_hash);
  std::lock_guard lock(s.mu);
  AorEntry* e = s.map.find(aor, aor_hash);
  Record* old = nullptr;
  if (e) {
    for (Record* r = e->head; r; r = r->next) {
      if (!r->is_static()) continue;
      auto ru = core::parse_uri(r->field(kContact));
      if (ru && core::uri_equal(*ru, *u)) {
        old = r;
        break;
      }
    }
    if (!old && e->count() >= settings_.limits.max_bindings_per_aor)
      return faults::kTooManyBindings;
  } else {
    if (aors_.fetch_add(1, std::memory_order_relaxed) >= settings_.limits.max_aors) {
      aors_.fetch_sub(1, std::memory_order_relaxed);
      return faults::kTableFull;
    }
    e = s.map.insert(aor, aor_hash);
  }
  Record* r = Record::make(f, core::Peer{});  // no source: the operator added it
  r->q = b.q;
  r->expires_at = b.expires == 0 ? kNeverExpires : now + static_cast<int64_t>(b.expires) * 1000;
  r->received_at = now;
  r->reg_id = b.instance.empty() ? 0 : b.reg_id;
  bindings_.fetch_add(1, std::memory_order_relaxed);
  if (old) {
    r->id = old->id;
    unlink_from_aor(*e, old);
    release(s, old, false);
  } else {
    r->id = next_id_.fetch_add(1, std::memory_order_relaxed);
  }
  insert_sorted(*e, r);
  s.wheel_link(r);
  if (Store* st = store()) st->save(StoredBinding{r->id, std::string(e->key()), r->to_binding()});
  return {};
}

void LocationService::apply_remote(std::string_view aor, std::vector<Binding> bindings, bool keep_own) {
  if (aor.empty()) return;
  const int64_t now = clock_.wall_ms();
  // Built before the lock; expired and unusable bindings are skipped.
  std::vector<Record*> records;
  records.reserve(bindings.size());
  for (const Binding& b : bindings)
    if (b.expires_at > now)
      if (Record* r = record_of(b, next_id_.fetch_add(1, std::memory_order_relaxed), true))
        records.push_back(r);
  size_t aor_hash = 0;
  Shard& s = shard_for(aor, aor_hash);
  std::lock_guard lock(s.mu);
  AorEntry* e = s.map.find(aor, aor_hash);
  // A binding named as in the store: an RFC 5626 flow by (+sip.instance, reg-id), else by URI.
  auto listed = [&](const Record* r) {
    for (const Binding& b : bindings)
      if (!b.instance.empty() && b.reg_id != 0 ? r->reg_id == b.reg_id && r->field(kInstance) == b.instance
                                               : r->field(kContact) == b.contact)
        return true;
    return false;
  };
  std::vector<Record*> kept;
  if (e) {
    // The shared store is the truth: what this node cached goes, without writing anything.
    for (Record* r = e->head; r;) {
      Record* next = r->next;
      if (keep_own && !r->remote && !listed(r)) kept.push_back(r);
      else release(s, r, false);
      r = next;
    }
    e->head = nullptr;
    for (Record* r : kept) insert_sorted(*e, r);  // still on the expiry wheel
  }
  if (records.empty() && kept.empty()) {
    if (e) {
      s.map.erase(e);
      aors_.fetch_sub(1, std::memory_order_relaxed);
    }
    return;
  }
  if (!e) {
    e = s.map.insert(aor, aor_hash);
    aors_.fetch_add(1, std::memory_order_relaxed);
  }
  for (Record* r : records) {
    insert_sorted(*e, r);
    s.wheel_link(r);
    bindings_.fetch_add(1, std::memory_order_relaxed);
  }
}

bool LocationService::has(std::string_view aor) const {
  size_t aor_hash = 0;
  Shard& s = shard_for(aor, aor_hash);
  std::lock_guard lock(s.mu);
  return s.map.find(aor, aor_hash) != nullptr;
}

void LocationService::for_each(
    const std::function<void(std::string_view aor, const Binding&)>& f) const {
  std::vector<std::pair<std::string, Binding>> copy;
  for (uint32_t i = 0; i < settings_.shards; ++i) {
    copy.clear();
    const int64_t now = clock_.wall_ms();
    {
      Shard& s = shards_[i];
      std::lock_guard lock(s.mu);
      s.map.for_each([&](const AorEntry& entry) {
        for (const Record* r = entry.head; r; r = r->next)
          if (r->expires_at > now) copy.emplace_back(std::string(entry.key()), r->to_binding());
      });
    }
    for (const auto& [aor, b] : copy) f(aor, b);
  }
}

size_t LocationService::sweep(int64_t now_ms) {
  size_t removed = 0;
  const int64_t now_sec = now_ms / 1000;
  for (uint32_t i = 0; i < settings_.shards; ++i) {
    Shard& s = shards_[i];
    std::lock_guard lock(s.mu);
    int64_t from = std::min(s.cursor_sec, now_sec);
    int64_t n = std::min<int64_t>(now_sec - from + 1, kWheelSlots);
    for (int64_t k = 0; k < n; ++k) {
      size_t slot = static_cast<size_t>(static_cast<uint64_t>(from + k) % kWheelSlots);
      for (Record* r = s.wheel[slot]; r;) {
        Record* next = r->wnext;
        if (r->expires_at <= now_ms) {
          AorEntry* e = r->aor;
          unlink_from_aor(*e, r);
          release(s, r, true, true);
          ++removed;
          if (e->empty()) {
            s.map.erase(e);
            aors_.fetch_sub(1, std::memory_order_relaxed);
          }
        }
        r = next;
      }
    }
    // The current second is looked at again next time: more of it may expire by then.
    s.cursor_sec = now_sec;
  }
  return removed;
}

}  // namespace sb::location
