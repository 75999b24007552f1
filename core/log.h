// One line per event (DESIGN.md "Admin and observability"): level, worker, Call-ID, text;
// or JSON with logging.format = "json". A disabled level costs one load and a branch.
#pragma once
#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <string_view>

namespace sb::core::log {

enum class Level : int { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

extern std::atomic<int> g_level;
inline bool enabled(Level l) { return static_cast<int>(l) >= g_level.load(std::memory_order_relaxed); }

void set_level(Level l);
void set_json(bool json);
// Name of the calling thread in log lines ("main", "w0", "w1", ...), and its name in the
// kernel (first 15 characters) for top -H, ps -L and perf. `name` must outlive the thread.
void set_thread_name(const char* name);
// Parse "debug" / "info" / "warn" / "error" / "off".
bool parse_level(std::string_view s, Level& out);

void write(Level l, std::string_view call_id, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

// A token bucket for log lines about untrusted input: at most `per_sec` lines a second
// per call site, the rest counted and summarised.
class RateLimit {
 public:
  explicit RateLimit(int per_sec = 10) : per_sec_(per_sec) {}
  bool allow();
  uint64_t suppressed() const { return suppressed_.load(std::memory_order_relaxed); }

 private:
  int per_sec_;
  std::atomic<int64_t> window_{0};
  std::atomic<int> used_{0};
  std::atomic<uint64_t> suppressed_{0};
};

}  // namespace sb::core::log

#define SB_LOG(level, call_id, ...)                                          \
  do {                                                                       \
    if (::sb::core::log::enabled(::sb::core::log::Level::level))             \
      ::sb::core::log::write(::sb::core::log::Level::level, call_id, __VA_ARGS__); \
  } while (0)
#define SB_DEBUG(...) SB_LOG(Debug, {}, __VA_ARGS__)
#define SB_INFO(...) SB_LOG(Info, {}, __VA_ARGS__)
#define SB_WARN(...) SB_LOG(Warn, {}, __VA_ARGS__)
#define SB_ERROR(...) SB_LOG(Error, {}, __VA_ARGS__)
// Rate-limited, for lines caused by untrusted input.
#define SB_LOG_RL(level, call_id, ...)                                       \
  do {                                                                       \
    static ::sb::core::log::RateLimit sb_rl_;                                \
    if (::sb::core::log::enabled(::sb::core::log::Level::level) && sb_rl_.allow()) \
      ::sb::core::log::write(::sb::core::log::Level::level, call_id, __VA_ARGS__); \
  } while (0)
