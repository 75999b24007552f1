// A per-worker timer service for transactions (STYLE.md 4, reSIProcate style): a timer is a
// small POD naming its owner by id and generation. Nothing is ever cancelled: when a timer
// fires for an owner that is gone or whose generation moved on, the owner ignores it. That
// keeps scheduling cheap, with no handle to keep in sync.
//
// Transactions arm a handful of durations (T1·2^n, T4, 64·T1, Timer C), so the timers of one
// duration are scheduled in deadline order. The queue keeps them as sorted runs: a timer
// goes to the end of the run whose last deadline is the latest one not after its own
// (patience sorting), so each run is a FIFO, and the next timer is the earliest run head.
// Scheduling and firing cost O(runs) with a few runs in use, touching memory in order,
// instead of O(log n) scattered moves in a heap of some 10^5 timers. Beyond kMaxRuns the
// rest goes to a binary heap (any order of deadlines stays correct, only slower).
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace sb::proxy {

struct TimerEntry {
  int64_t deadline_ms = 0;  // on the worker's monotonic clock (core::Clock::now_ms)
  uint64_t owner_id = 0;
  uint32_t generation = 0;
  uint32_t seq = 0;         // scheduling order: timers with one deadline fire first-in first-out
  uint8_t kind = 0;         // the owner's timer name (e.g. proxy::TimerKind)
};

class TimerQueue {
 public:
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  static constexpr size_t kMaxRuns = 32;

  void schedule(uint64_t owner_id, uint32_t generation, uint8_t kind, int64_t deadline_ms);
  // The earliest deadline, kNever when empty. May belong to a stale timer: waking for it
  // costs one no-op.
  int64_t next_deadline() const { return next_deadline_; }
  // Remove every timer due at `now` (deadline <= now), earliest first, and call
  // f(const TimerEntry&) for each. `f` may schedule more timers; one it schedules at or
  // before `now` fires within this same call. Returns how many fired.
  template <class F>
  size_t pop_due(int64_t now, F&& f);
  // Remove up to `max` timers due at `now`, earliest first, into `out`; returns how many.
  // For a caller that looks its owners up together before acting on any (prefetching).
  size_t pop_due(int64_t now, TimerEntry* out, size_t max);

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void reserve(size_t n) { heap_.reserve(n); }
  // How many sorted runs are in use (for tests).
  size_t runs() const { return runs_.size(); }

 private:
  // A FIFO of timers in (deadline, seq) order: a ring buffer that grows by doubling.
  struct Run {
    std::vector<TimerEntry> ring;
    size_t head = 0;
    size_t count = 0;
    const TimerEntry& front() const { return ring[head]; }
    const TimerEntry& back() const { return ring[(head + count - 1) & (ring.size() - 1)]; }
    void push(const TimerEntry& e);
    TimerEntry pop();
  };

  TimerEntry pop_front();
  void find_next();  // recomputes next_ / next_deadline_

  std::vector<Run> runs_;
  std::vector<TimerEntry> heap_;  // binary min-heap on (deadline, seq): the overflow
  size_t size_ = 0;
  uint32_t seq_ = 0;
  // Where the earliest timer is: a run index, runs_.size() for the heap.
  size_t next_ = 0;
  int64_t next_deadline_ = kNever;
};

template <class F>
size_t TimerQueue::pop_due(int64_t now, F&& f) {
  size_t fired = 0;
  while (size_ != 0 && next_deadline_ <= now) {
    // Copy out before calling: `f` may schedule and reallocate.
    TimerEntry e = pop_front();
    f(static_cast<const TimerEntry&>(e));
    ++fired;
  }
  return fired;
}

}  // namespace sb::proxy
