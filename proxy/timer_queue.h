// A per-worker timer service for transactions (STYLE.md 4, reSIProcate style): a timer is a
// small POD naming its owner by id and generation. Nothing is ever cancelled: when a timer
// fires for an owner that is gone or whose generation moved on, the owner ignores it. That
// keeps scheduling O(log n) with no per-timer allocation and no handle to keep in sync.
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

  void schedule(uint64_t owner_id, uint32_t generation, uint8_t kind, int64_t deadline_ms);
  // The earliest deadline, kNever when empty. May belong to a stale timer: waking for it
  // costs one no-op.
  int64_t next_deadline() const { return heap_.empty() ? kNever : heap_.front().deadline_ms; }
  // Remove every timer due at `now` (deadline <= now), earliest first, and call
  // f(const TimerEntry&) for each. `f` may schedule more timers; one it schedules at or
  // before `now` fires within this same call. Returns how many fired.
  template <class F>
  size_t pop_due(int64_t now, F&& f);

  size_t size() const { return heap_.size(); }
  bool empty() const { return heap_.empty(); }
  void reserve(size_t n) { heap_.reserve(n); }

 private:
  TimerEntry pop_front();

  std::vector<TimerEntry> heap_;  // binary min-heap on (deadline, seq)
  uint32_t seq_ = 0;
};

template <class F>
size_t TimerQueue::pop_due(int64_t now, F&& f) {
  size_t fired = 0;
  while (!heap_.empty() && heap_.front().deadline_ms <= now) {
    // Copy out before calling: `f` may push and reallocate the heap.
    TimerEntry e = pop_front();
    f(static_cast<const TimerEntry&>(e));
    ++fired;
  }
  return fired;
}

}  // namespace sb::proxy
