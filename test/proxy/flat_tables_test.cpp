// proxy/flat_tables.h: the transaction layer's open-addressing tables, against
// std::unordered_map under random inserts and erasures.
#include "proxy/flat_tables.h"

#include <doctest/doctest.h>

#include <memory>
#include <random>
#include <unordered_map>
#include <vector>

using sb::proxy::HashIndex;
using sb::proxy::IdTable;

namespace {

struct Item {
  uint64_t id_ = 0;
  uint64_t key = 0;
  uint64_t id() const { return id_; }
};

}  // namespace

TEST_CASE("IdTable: find, take and growth follow a reference map, ids consecutive or not") {
  for (bool spread : {false, true}) {
    IdTable<Item> t;
    std::unordered_map<uint64_t, Item*> ref;
    std::mt19937_64 rng(spread ? 3 : 4);
    uint64_t next = 1;
    for (int step = 0; step < 200000; ++step) {
      if (ref.empty() || rng() % 3 != 0) {
        // Consecutive ids as the layer makes them, or spread ones that collide in the slots.
        uint64_t id = spread ? (rng() % 100000) * 1024 + 1 : next++;
        if (ref.count(id)) continue;
        auto p = std::make_unique<Item>();
        p->id_ = id;
        ref[id] = p.get();
        t.insert(std::move(p));
      } else {
        auto it = ref.begin();
        std::advance(it, static_cast<long>(rng() % std::min<size_t>(ref.size(), 8)));
        auto taken = t.take(it->first);
        REQUIRE(taken.get() == it->second);
        ref.erase(it);
      }
      if (step % 20000 == 0)
        for (auto& [id, p] : ref) REQUIRE(t.find(id) == p);
    }
    CHECK(t.size() == ref.size());
    for (auto& [id, p] : ref) CHECK(t.find(id) == p);
    CHECK(t.find(0) == nullptr);
    CHECK(t.take(999999999) == nullptr);
  }
}

TEST_CASE("HashIndex: colliding hashes are told apart by the match, equal keys found oldest first") {
  HashIndex<Item> idx;
  std::vector<std::unique_ptr<Item>> items;
  // Three hashes that share a home slot, several items per hash.
  for (uint64_t i = 0; i < 30; ++i) {
    items.push_back(std::make_unique<Item>(Item{i + 1, i % 10}));
    idx.insert(1024 * (i % 3) + 7, items.back().get());
  }
  auto by_key = [](uint64_t key) { return [key](Item* p) { return p->key == key; }; };
  // (i % 3, i % 10) is unique for i < 30: each lookup finds exactly its item.
  for (uint64_t i = 0; i < 30; ++i) CHECK(idx.find(1024 * (i % 3) + 7, by_key(i % 10)) == items[i].get());
  // Equal key and hash: the oldest first; after erasing it, the next.
  HashIndex<Item> dup;
  Item a{1, 5}, b{2, 5};
  dup.insert(42, &a);
  dup.insert(42, &b);
  CHECK(dup.find(42, by_key(5)) == &a);
  CHECK(dup.erase(42, &a));
  CHECK(dup.find(42, by_key(5)) == &b);
  CHECK_FALSE(dup.erase(42, &a));
  CHECK(dup.erase(42, &b));
  CHECK(dup.find(42, by_key(5)) == nullptr);
  CHECK(dup.size() == 0);
}

TEST_CASE("HashIndex: random inserts and erasures with clustered hashes match a reference") {
  HashIndex<Item> idx;
  std::unordered_map<Item*, uint64_t> ref;  // item -> hash
  std::vector<std::unique_ptr<Item>> owner;
  std::mt19937_64 rng(11);
  for (int step = 0; step < 100000; ++step) {
    if (ref.empty() || rng() % 2) {
      owner.push_back(std::make_unique<Item>(Item{static_cast<uint64_t>(step + 1), static_cast<uint64_t>(step)}));
      uint64_t h = (rng() % 64) * 4096 + rng() % 4;  // few homes: long clusters, wrap-around
      idx.insert(h, owner.back().get());
      ref[owner.back().get()] = h;
    } else {
      auto it = ref.begin();
      REQUIRE(idx.erase(it->second, it->first));
      ref.erase(it);
    }
    if (step % 5000 == 0)
      for (auto& [p, h] : ref) REQUIRE(idx.find(h, [p](Item* q) { return q == p; }) == p);
  }
  CHECK(idx.size() == ref.size());
}
