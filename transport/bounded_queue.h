// A bounded lock-free multi-producer multi-consumer queue (the sequence-numbered ring
// described by Dmitry Vyukov). Workers hand messages to their owner through it
// (DESIGN.md "Threading"); its bound is the back-pressure of STYLE.md 10: a full queue
// refuses, the caller counts the drop.
#pragma once
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace sb::transport {

template <class T>
class BoundedQueue {
  static_assert(std::is_nothrow_move_constructible_v<T>, "T must move without throwing");

 public:
  // `capacity` is rounded up to a power of two (at least 2), so the index is a mask.
  explicit BoundedQueue(size_t capacity) {
    size_t cap = 2;
    while (cap < capacity) cap <<= 1;
    mask_ = cap - 1;
    cells_ = std::make_unique<Cell[]>(cap);
    for (size_t i = 0; i < cap; ++i) cells_[i].seq.store(i, std::memory_order_relaxed);
  }
  // Destroys the items still queued; no other thread may use the queue any more.
  ~BoundedQueue() {
    size_t end = tail_.load(std::memory_order_acquire);
    for (size_t pos = head_.load(std::memory_order_acquire); pos != end; ++pos) {
      Cell& c = cells_[pos & mask_];
      if (c.seq.load(std::memory_order_acquire) == pos + 1)
        std::launder(reinterpret_cast<T*>(c.storage))->~T();
    }
  }
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  size_t capacity() const { return mask_ + 1; }

  // Moves `v` in and returns true; returns false (leaving `v` untouched) when full.
  bool try_push(T&& v) {
    size_t pos = tail_.load(std::memory_order_relaxed);
    Cell* c;
    while (true) {
      c = &cells_[pos & mask_];
      size_t seq = c->seq.load(std::memory_order_acquire);
      auto diff = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos);
      if (diff == 0) {
        // The cell is free for lap `pos`: claim it.
        if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
      } else if (diff < 0) {
        return false;  // the cell still holds an item from the previous lap: full
      } else {
        pos = tail_.load(std::memory_order_relaxed);  // another producer got it
      }
    }
    new (c->storage) T(std::move(v));
    c->seq.store(pos + 1, std::memory_order_release);
    return true;
  }

  // Moves the oldest item into `out`; false when empty.
  bool try_pop(T& out) {
    size_t pos = head_.load(std::memory_order_relaxed);
    Cell* c;
    while (true) {
      c = &cells_[pos & mask_];
      size_t seq = c->seq.load(std::memory_order_acquire);
      auto diff = static_cast<intptr_t>(seq) - static_cast<intptr_t>(pos + 1);
      if (diff == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) break;
      } else if (diff < 0) {
        return false;  // not yet written: empty
      } else {
        pos = head_.load(std::memory_order_relaxed);
      }
    }
    T* item = std::launder(reinterpret_cast<T*>(c->storage));
    out = std::move(*item);
    item->~T();
    // Free the cell for the producer one lap ahead.
    c->seq.store(pos + mask_ + 1, std::memory_order_release);
    return true;
  }

  // Items waiting, a snapshot (producers and the consumer may be moving): for metrics;
  // exact only when no other thread is using the queue.
  size_t size_approx() const {
    size_t t = tail_.load(std::memory_order_relaxed);
    size_t h = head_.load(std::memory_order_relaxed);
    return t >= h ? t - h : 0;
  }
  bool empty_approx() const { return size_approx() == 0; }

 private:
  struct Cell {
    std::atomic<size_t> seq{0};
    alignas(T) unsigned char storage[sizeof(T)];
  };

  std::unique_ptr<Cell[]> cells_;
  size_t mask_ = 0;
  // Producers and the consumer on separate cache lines: they are written by different threads.
  alignas(64) std::atomic<size_t> tail_{0};
  alignas(64) std::atomic<size_t> head_{0};
};

}  // namespace sb::transport
