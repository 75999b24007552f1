// The transaction layer's tables (private to proxy/): open addressing with linear probing
// and backward-shift deletion, the slots a flat array of (hash or id, pointer). A lookup
// reads one or two adjacent slots and then the one object it found, where a node-based
// std::unordered_map with ~10^5 transactions takes a bucket, a node and the key's own
// buffer, each a likely cache miss (docs/performance.md: the maps were ~8 % of a call).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace sb::proxy {

namespace detail {

// The slots both tables share: `tag` is the id or the hash, `ptr` null for an empty slot.
template <class T>
class ProbedSlots {
 public:
  struct Slot {
    uint64_t tag = 0;
    T* ptr = nullptr;
  };

  size_t size() const { return size_; }

  // The first slot holding `tag` for which ok(ptr) holds; nullptr when none.
  template <class Ok>
  Slot* find(uint64_t tag, Ok&& ok) {
    if (slots_.empty()) return nullptr;
    for (size_t i = tag & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (!s.ptr) return nullptr;
      if (s.tag == tag && ok(s.ptr)) return &s;
    }
  }

  // Start loading the slot where a probe for `tag` begins (a lookup soon after hits it).
  void prefetch(uint64_t tag) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[tag & mask_]);
  }

  void insert(uint64_t tag, T* ptr) {
    if ((size_ + 1) * 2 > slots_.size()) grow();  // at most half full: probes stay short
    place(tag, ptr);
    ++size_;
  }

  // Empties `s` (a slot find() returned) and closes the gap behind it, so a probe never
  // stops early at a hole (no tombstones).
  void erase(Slot* s) {
    size_t hole = static_cast<size_t>(s - slots_.data());
    *s = Slot{};
    --size_;
    for (size_t k = (hole + 1) & mask_; slots_[k].ptr; k = (k + 1) & mask_) {
      const size_t home = slots_[k].tag & mask_;
      // The entry at k may move back to the hole when its home is not in (hole, k].
      if (((k - home) & mask_) >= ((k - hole) & mask_)) {
        slots_[hole] = slots_[k];
        slots_[k] = Slot{};
        hole = k;
      }
    }
  }

  template <class F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_)
      if (s.ptr) f(s.ptr);
  }

 private:
  void place(uint64_t tag, T* ptr) {
    size_t i = tag & mask_;
    while (slots_[i].ptr) i = (i + 1) & mask_;
    slots_[i] = Slot{tag, ptr};
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 1024 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old)
      if (s.ptr) place(s.tag, s.ptr);
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace detail

// Objects owned by id (unique, from a counter). T has `uint64_t id() const`.
template <class T>
class IdTable {
 public:
  IdTable() = default;
  IdTable(const IdTable&) = delete;
  IdTable& operator=(const IdTable&) = delete;
  ~IdTable() { clear(); }

  T* find(uint64_t id) {
    auto* s = slots_.find(tag(id), [](T*) { return true; });
    return s ? s->ptr : nullptr;
  }
  void prefetch(uint64_t id) const { slots_.prefetch(tag(id)); }
  void insert(std::unique_ptr<T> p) {
    const uint64_t id = p->id();
    slots_.insert(tag(id), p.release());
  }
  // Removes and returns the object (nullptr when absent).
  std::unique_ptr<T> take(uint64_t id) {
    auto* s = slots_.find(tag(id), [](T*) { return true; });
    if (!s) return nullptr;
    std::unique_ptr<T> p(s->ptr);
    slots_.erase(s);
    return p;
  }
  size_t size() const { return slots_.size(); }
  void clear() {
    slots_.for_each([](T* p) { delete p; });
    slots_ = {};
  }

 private:
  // Consecutive ids in consecutive slots would make the live ones one long run, and an
  // erasure scans its run to the end: multiplying by an odd constant is a bijection on the
  // low bits, so the ids still never collide but are scattered over the table.
  static uint64_t tag(uint64_t id) { return id * 0x9E3779B97F4A7C15ull; }
  detail::ProbedSlots<T> slots_;
};

// A non-owning index by a 64-bit hash of a key the objects hold; `same(T*)` tells a real
// match from a hash collision. Entries with equal keys are found oldest first.
template <class T>
class HashIndex {
 public:
  template <class Same>
  T* find(uint64_t hash, Same&& same) {
    auto* s = slots_.find(hash, std::forward<Same>(same));
    return s ? s->ptr : nullptr;
  }
  void prefetch(uint64_t hash) const { slots_.prefetch(hash); }
  void insert(uint64_t hash, T* p) { slots_.insert(hash, p); }
  // Removes the entry of `p` under `hash`; false when there is none.
  bool erase(uint64_t hash, T* p) {
    auto* s = slots_.find(hash, [p](T* q) { return q == p; });
    if (!s) return false;
    slots_.erase(s);
    return true;
  }
  size_t size() const { return slots_.size(); }
  void clear() { slots_ = {}; }

 private:
  detail::ProbedSlots<T> slots_;
};

}  // namespace sb::proxy
