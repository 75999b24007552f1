// Counts the heap allocations this thread makes, for tests that hold a path to the
// design's "no per-message heap churn". Link test/support/heap_count.cpp into the test
// executable: it replaces the global operator new (every form forwards to malloc).
#pragma once
#include <cstdint>

namespace sb::test {

// Allocations by operator new on this thread since it started.
uint64_t heap_allocations();

// Allocations made while it lives: `HeapCount n; work(); CHECK(n.count() == 3);`
class HeapCount {
 public:
  HeapCount() : start_(heap_allocations()) {}
  uint64_t count() const { return heap_allocations() - start_; }

 private:
  uint64_t start_;
};

}  // namespace sb::test
