// Time as the transaction layer sees it: an injected clock so state machines run in tests
// without sleeping (STYLE.md 14).
#pragma once
#include <chrono>
#include <cstdint>

namespace sb::core {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic milliseconds (timers).
  virtual int64_t now_ms() const = 0;
  // Wall-clock milliseconds since the Unix epoch (binding expiry, Date headers).
  virtual int64_t wall_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t now_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  int64_t wall_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch()).count();
  }
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ms = 1'000'000, int64_t wall_start_ms = 1'700'000'000'000)
      : now_(start_ms), wall_(wall_start_ms) {}
  int64_t now_ms() const override { return now_; }
  int64_t wall_ms() const override { return wall_; }
  void advance(int64_t ms) { now_ += ms; wall_ += ms; }

 private:
  int64_t now_;
  int64_t wall_;
};

}  // namespace sb::core
