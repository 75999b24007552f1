#include "proxy/timer_queue.h"

#include <algorithm>

namespace sb::proxy {

namespace {

// std heap algorithms build a max-heap; "later" as the ordering puts the earliest on top.
// The sequence number compares modulo 2^32 so FIFO order survives its wrap-around.
struct Later {
  bool operator()(const TimerEntry& a, const TimerEntry& b) const {
    if (a.deadline_ms != b.deadline_ms) return a.deadline_ms > b.deadline_ms;
    return static_cast<int32_t>(a.seq - b.seq) > 0;
  }
};

}  // namespace

void TimerQueue::schedule(uint64_t owner_id, uint32_t generation, uint8_t kind,
                          int64_t deadline_ms) {
  heap_.push_back(TimerEntry{deadline_ms, owner_id, generation, seq_++, kind});
  std::push_heap(heap_.begin(), heap_.end(), Later{});
}

TimerEntry TimerQueue::pop_front() {
  std::pop_heap(heap_.begin(), heap_.end(), Later{});
  TimerEntry e = heap_.back();
  heap_.pop_back();
  return e;
}

}  // namespace sb::proxy
