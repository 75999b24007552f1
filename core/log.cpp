#include "core/log.h"

#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace sb::core::log {

std::atomic<int> g_level{static_cast<int>(Level::Info)};
namespace {
std::atomic<bool> g_json{false};
thread_local const char* t_name = "main";
constexpr const char* kNames[] = {"debug", "info", "warn", "error", "off"};

void json_escape(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else {
          out += c;
        }
    }
  }
}
}  // namespace

void set_level(Level l) { g_level.store(static_cast<int>(l), std::memory_order_relaxed); }
void set_json(bool json) { g_json.store(json, std::memory_order_relaxed); }
void set_thread_name(const char* name) {
  t_name = name;
  // The kernel's name for the thread too (what top -H, ps -L and perf show), cut to the
  // 15 characters it keeps.
  char os_name[16];
  std::snprintf(os_name, sizeof os_name, "%s", name);
  pthread_setname_np(pthread_self(), os_name);
}

bool parse_level(std::string_view s, Level& out) {
  for (int i = 0; i < 5; ++i)
    if (s == kNames[i]) {
      out = static_cast<Level>(i);
      return true;
    }
  return false;
}

void write(Level l, std::string_view call_id, const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::string_view text(msg, n < 0 ? 0 : (n >= int(sizeof msg) ? sizeof msg - 1 : size_t(n)));

  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char ts[96];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms % 1000));
  std::string line;
  line.reserve(text.size() + 96);
  const char* lvl = kNames[static_cast<int>(l)];
  if (g_json.load(std::memory_order_relaxed)) {
    line += "{\"ts\":\"";
    line += ts;
    line += "\",\"level\":\"";
    line += lvl;
    line += "\",\"thread\":\"";
    line += t_name;
    line += "\"";
    if (!call_id.empty()) {
      line += ",\"call_id\":\"";
      json_escape(line, call_id);
      line += "\"";
    }
    line += ",\"msg\":\"";
    json_escape(line, text);
    line += "\"}\n";
  } else {
    line += ts;
    line += ' ';
    line += lvl;
    line += ' ';
    line += t_name;
    if (!call_id.empty()) {
      line += " [";
      line.append(call_id.substr(0, 128));
      line += ']';
    }
    line += ' ';
    for (char c : text) line += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
    line += '\n';
  }
  // One write(2) per line keeps lines whole across threads.
  ssize_t r = ::write(STDERR_FILENO, line.data(), line.size());
  (void)r;
}

bool RateLimit::allow() {
  int64_t sec = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::steady_clock::now().time_since_epoch()).count();
  int64_t w = window_.load(std::memory_order_relaxed);
  if (w != sec && window_.compare_exchange_strong(w, sec)) used_.store(0);
  if (used_.fetch_add(1, std::memory_order_relaxed) < per_sec_) return true;
  suppressed_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

}  // namespace sb::core::log
