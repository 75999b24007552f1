#include "proxy/timer_queue.h"

#include <algorithm>

namespace sb::proxy {

namespace {

// (deadline, seq) order; the sequence number compares modulo 2^32 so FIFO order survives
// its wrap-around.
bool before(const TimerEntry& a, const TimerEntry& b) {
  if (a.deadline_ms != b.deadline_ms) return a.deadline_ms < b.deadline_ms;
  return static_cast<int32_t>(a.seq - b.seq) < 0;
}

// std heap algorithms build a max-heap; "later" as the ordering puts the earliest on top.
struct Later {
  bool operator()(const TimerEntry& a, const TimerEntry& b) const { return before(b, a); }
};

}  // namespace

void TimerQueue::Run::push(const TimerEntry& e) {
  if (count == ring.size()) {
    // Grow by doubling (a power of two, for the mask), unrolling the ring in order.
    std::vector<TimerEntry> bigger(ring.empty() ? 64 : ring.size() * 2);
    for (size_t i = 0; i < count; ++i) bigger[i] = ring[(head + i) & (ring.size() - 1)];
    ring.swap(bigger);
    head = 0;
  }
  ring[(head + count) & (ring.size() - 1)] = e;
  ++count;
}

TimerEntry TimerQueue::Run::pop() {
  TimerEntry e = ring[head];
  head = (head + 1) & (ring.size() - 1);
  --count;
  return e;
}

void TimerQueue::schedule(uint64_t owner_id, uint32_t generation, uint8_t kind,
                          int64_t deadline_ms) {
  const TimerEntry e{deadline_ms, owner_id, generation, seq_++, kind};
  ++size_;
  // The run whose last timer is the latest not after this one keeps its order with it at
  // the end; an empty run takes anything.
  Run* best = nullptr;
  Run* empty = nullptr;
  for (Run& r : runs_) {
    if (r.count == 0) {
      if (!empty) empty = &r;
      continue;
    }
    if (r.back().deadline_ms <= deadline_ms && (!best || r.back().deadline_ms > best->back().deadline_ms))
      best = &r;
  }
  if (!best) best = empty;
  if (!best && runs_.size() < kMaxRuns) best = &runs_.emplace_back();
  if (best) {
    best->push(e);
    if (deadline_ms < next_deadline_) {
      next_deadline_ = deadline_ms;
      next_ = static_cast<size_t>(best - runs_.data());
    }
    return;
  }
  heap_.push_back(e);
  std::push_heap(heap_.begin(), heap_.end(), Later{});
  if (deadline_ms < next_deadline_) {
    next_deadline_ = deadline_ms;
    next_ = runs_.size();
  }
}

size_t TimerQueue::pop_due(int64_t now, TimerEntry* out, size_t max) {
  size_t n = 0;
  while (n < max && size_ != 0 && next_deadline_ <= now) out[n++] = pop_front();
  return n;
}

TimerEntry TimerQueue::pop_front() {
  TimerEntry e;
  if (next_ < runs_.size()) {
    e = runs_[next_].pop();
  } else {
    std::pop_heap(heap_.begin(), heap_.end(), Later{});
    e = heap_.back();
    heap_.pop_back();
  }
  --size_;
  find_next();
  return e;
}

void TimerQueue::find_next() {
  const TimerEntry* best = heap_.empty() ? nullptr : &heap_.front();
  next_ = runs_.size();
  for (size_t i = 0; i < runs_.size(); ++i) {
    if (runs_[i].count == 0) continue;
    const TimerEntry& h = runs_[i].front();
    if (!best || before(h, *best)) {
      best = &h;
      next_ = i;
    }
  }
  next_deadline_ = best ? best->deadline_ms : kNever;
}

}  // namespace sb::proxy
