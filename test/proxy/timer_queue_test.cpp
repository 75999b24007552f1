#include "proxy/timer_queue.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <vector>

using sb::proxy::TimerEntry;
using sb::proxy::TimerQueue;

static_assert(sizeof(TimerEntry) <= 32, "timers stay small PODs: 300k of them are pending");

TEST_CASE("TimerQueue: empty queue has no deadline and fires nothing") {
  TimerQueue q;
  CHECK(q.next_deadline() == TimerQueue::kNever);
  CHECK(q.pop_due(1'000'000, [](const TimerEntry&) { FAIL("nothing to fire"); }) == 0);
}

TEST_CASE("TimerQueue: fires only what is due, earliest first, with its owner data") {
  TimerQueue q;
  q.schedule(3, 30, 2, 300);
  q.schedule(1, 10, 0, 100);
  q.schedule(2, 20, 1, 200);
  CHECK(q.next_deadline() == 100);
  std::vector<TimerEntry> fired;
  CHECK(q.pop_due(99, [&](const TimerEntry& e) { fired.push_back(e); }) == 0);
  CHECK(q.pop_due(200, [&](const TimerEntry& e) { fired.push_back(e); }) == 2);
  REQUIRE(fired.size() == 2);
  CHECK(fired[0].owner_id == 1);
  CHECK(fired[0].generation == 10);
  CHECK(fired[0].kind == 0);
  CHECK(fired[0].deadline_ms == 100);
  CHECK(fired[1].owner_id == 2);
  CHECK(q.next_deadline() == 300);
  CHECK(q.size() == 1);
}

TEST_CASE("TimerQueue: pop_due into a batch takes at most max due timers, earliest first") {
  TimerQueue q;
  for (uint64_t i = 0; i < 5; ++i) q.schedule(10 + i, 0, 0, int64_t(100 * (5 - i)));  // 500..100
  q.schedule(99, 0, 0, 1000);
  TimerEntry out[3];
  CHECK(q.pop_due(50, out, 3) == 0);
  REQUIRE(q.pop_due(500, out, 3) == 3);
  CHECK(out[0].owner_id == 14);  // deadline 100
  CHECK(out[1].owner_id == 13);
  CHECK(out[2].owner_id == 12);
  // What is scheduled between two batches takes its place among the rest.
  q.schedule(7, 0, 0, 350);
  REQUIRE(q.pop_due(500, out, 3) == 3);
  CHECK(out[0].owner_id == 7);
  CHECK(out[1].owner_id == 11);
  CHECK(out[2].owner_id == 10);
  CHECK(q.pop_due(500, out, 3) == 0);
  CHECK(q.size() == 1);
  CHECK(q.next_deadline() == 1000);
}

TEST_CASE("TimerQueue: timers with one deadline fire in scheduling order") {
  TimerQueue q;
  for (uint64_t i = 0; i < 50; ++i) q.schedule(i, 0, 0, 500);
  std::vector<uint64_t> order;
  q.pop_due(500, [&](const TimerEntry& e) { order.push_back(e.owner_id); });
  REQUIRE(order.size() == 50);
  for (uint64_t i = 0; i < 50; ++i) CHECK(order[i] == i);
}

TEST_CASE("TimerQueue: a callback may schedule; due ones fire in the same call") {
  TimerQueue q;
  q.schedule(1, 0, 0, 100);
  std::vector<uint64_t> order;
  size_t n = q.pop_due(150, [&](const TimerEntry& e) {
    order.push_back(e.owner_id);
    if (e.owner_id == 1) {
      q.schedule(2, 0, 0, 150);  // due now: fires in this call
      q.schedule(3, 0, 0, 151);  // not yet
    }
  });
  CHECK(n == 2);
  CHECK(order == std::vector<uint64_t>{1, 2});
  CHECK(q.next_deadline() == 151);
}

TEST_CASE("TimerQueue: 300k pending timers pop in deadline order") {
  TimerQueue q;
  q.reserve(300'000);
  std::mt19937_64 rng(42);
  for (uint64_t i = 0; i < 300'000; ++i)
    q.schedule(i, static_cast<uint32_t>(i), 0, static_cast<int64_t>(rng() % 64'000));
  CHECK(q.size() == 300'000);
  int64_t last = -1;
  size_t n = 0;
  bool ordered = true;
  q.pop_due(TimerQueue::kNever - 1, [&](const TimerEntry& e) {
    ordered = ordered && e.deadline_ms >= last;
    last = e.deadline_ms;
    ++n;
  });
  CHECK(ordered);
  CHECK(n == 300'000);
  CHECK(q.empty());
}

TEST_CASE("TimerQueue: the durations a transaction layer arms keep a few sorted runs, fired exactly in order") {
  // Calls arriving every ms arm T1 retransmits (500, 1000, 2000 ms), Timer B/F/J (32 s) and
  // Timer K (5 s) at their own "now": each duration stays a FIFO of its own.
  TimerQueue q;
  const int64_t durations[] = {500, 32000, 1000, 5000, 2000, 32000};
  std::vector<TimerEntry> expected;
  uint64_t id = 0;
  for (int64_t now = 0; now < 20000; ++now)
    for (int64_t d : durations) q.schedule(++id, 0, 0, now + d);
  CHECK(q.runs() <= 6);
  CHECK(q.size() == 20000 * 6);
  int64_t last = -1;
  uint32_t last_seq = 0;
  bool ordered = true;
  size_t n = q.pop_due(TimerQueue::kNever - 1, [&](const TimerEntry& e) {
    // Deadline order, and scheduling order among equal deadlines.
    ordered = ordered && (e.deadline_ms > last || (e.deadline_ms == last && e.seq > last_seq));
    last = e.deadline_ms;
    last_seq = e.seq;
  });
  CHECK(ordered);
  CHECK(n == 20000 * 6);
  CHECK(q.next_deadline() == TimerQueue::kNever);
}

TEST_CASE("TimerQueue: interleaved scheduling and firing, as a worker does") {
  TimerQueue q;
  std::mt19937_64 rng(7);
  const int64_t durations[] = {0, 500, 1000, 2000, 4000, 5000, 32000, 185000};
  std::vector<int64_t> fired;
  int64_t now = 0;
  for (int step = 0; step < 200000; ++step) {
    now += static_cast<int64_t>(rng() % 3);
    q.schedule(static_cast<uint64_t>(step), 0, 0, now + durations[rng() % 8]);
    q.pop_due(now, [&](const TimerEntry& e) {
      CHECK(e.deadline_ms <= now);
      fired.push_back(e.deadline_ms);
    });
    REQUIRE((q.empty() || q.next_deadline() > now));
  }
  CHECK(std::is_sorted(fired.begin(), fired.end()));
  CHECK(q.runs() <= 8);
}
