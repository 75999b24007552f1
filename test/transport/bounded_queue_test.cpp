#include "transport/bounded_queue.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

using sb::transport::BoundedQueue;

TEST_CASE("bounded queue: capacity is rounded up to a power of two") {
  CHECK(BoundedQueue<int>(1).capacity() == 2);
  CHECK(BoundedQueue<int>(5).capacity() == 8);
  CHECK(BoundedQueue<int>(65536).capacity() == 65536);
}

TEST_CASE("bounded queue: fill to capacity, full refuses, FIFO order, room again after a pop") {
  BoundedQueue<int> q(8);
  for (int i = 0; i < 8; ++i) {
    int v = i;
    CHECK(q.try_push(std::move(v)));
  }
  int extra = 99;
  CHECK_FALSE(q.try_push(std::move(extra)));
  CHECK(extra == 99);  // a refused item is left with the caller
  CHECK(q.size_approx() == 8);
  int out = -1;
  CHECK(q.try_pop(out));
  CHECK(out == 0);
  CHECK(q.try_push(std::move(extra)));
  for (int want = 1; want < 8; ++want) {
    REQUIRE(q.try_pop(out));
    CHECK(out == want);
  }
  REQUIRE(q.try_pop(out));
  CHECK(out == 99);
  CHECK_FALSE(q.try_pop(out));
  CHECK(q.empty_approx());
}

TEST_CASE("bounded queue: wraps around many laps") {
  BoundedQueue<int> q(4);
  int out = 0;
  for (int i = 0; i < 1000; ++i) {
    int v = i;
    REQUIRE(q.try_push(std::move(v)));
    REQUIRE(q.try_pop(out));
    CHECK(out == i);
  }
}

TEST_CASE("bounded queue: move-only items; leftovers destroyed with the queue") {
  auto alive = std::make_shared<int>(0);
  {
    BoundedQueue<std::unique_ptr<std::shared_ptr<int>>> q(4);
    for (int i = 0; i < 3; ++i) {
      auto p = std::make_unique<std::shared_ptr<int>>(alive);
      REQUIRE(q.try_push(std::move(p)));
      CHECK(p == nullptr);
    }
    std::unique_ptr<std::shared_ptr<int>> out;
    REQUIRE(q.try_pop(out));
    CHECK(alive.use_count() == 4);
  }
  CHECK(alive.use_count() == 1);
}

TEST_CASE("bounded queue: two producers, one consumer, every item exactly once") {
  constexpr int kPerProducer = 200000;
  BoundedQueue<uint64_t> q(1024);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::atomic<bool> timed_out{false};
  auto produce = [&](uint64_t tag) {
    for (int i = 0; i < kPerProducer; ++i) {
      uint64_t v = (tag << 32) | static_cast<uint64_t>(i);
      while (!q.try_push(std::move(v))) {
        if (std::chrono::steady_clock::now() > deadline) {
          timed_out = true;
          return;
        }
        std::this_thread::yield();
      }
    }
  };
  std::thread a(produce, 1), b(produce, 2);
  std::vector<int> next(3, 0);  // per producer, the next index expected (FIFO per producer)
  int got = 0;
  bool in_order = true;
  while (got < 2 * kPerProducer && !timed_out && std::chrono::steady_clock::now() < deadline) {
    uint64_t v;
    if (!q.try_pop(v)) {
      std::this_thread::yield();
      continue;
    }
    auto tag = static_cast<size_t>(v >> 32);
    int idx = static_cast<int>(v & 0xffffffffu);
    if (tag < 1 || tag > 2 || idx != next[tag]) in_order = false;
    else ++next[tag];
    ++got;
  }
  a.join();
  b.join();
  CHECK_FALSE(timed_out);
  CHECK(in_order);
  CHECK(got == 2 * kPerProducer);
  uint64_t v;
  CHECK_FALSE(q.try_pop(v));
}
