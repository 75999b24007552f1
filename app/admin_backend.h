// What the admin HTTP API (and `switchboard ctl` through it) can ask of the running proxy.
// The runtime implements it; the admin server only speaks HTTP and JSON, so it is tested
// with a fake backend. Every call is made on the main loop's thread; stats() and reload()
// answer through a callback because they gather from the workers (shared-nothing: each
// worker reports its own counters on its own thread).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace sb::app {

struct ReloadOutcome {
  bool ok = false;
  uint64_t generation = 0;          // the generation now running (new one when ok)
  std::vector<std::string> errors;  // JSON key paths or script file:line, when not ok
};

// Histogram with fixed upper bounds (Prometheus "le" buckets), cumulative counts.
struct Histogram {
  std::vector<double> bounds;       // seconds, ascending; +Inf implied
  std::vector<uint64_t> counts;     // per bound, cumulative; size == bounds.size()
  uint64_t count = 0;               // all observations (= the +Inf bucket)
  double sum = 0;                   // seconds
};

struct WorkerSnapshot {
  uint32_t id = 0;
  uint64_t queue_depth = 0;         // hand-off queue items waiting
  uint64_t transactions = 0;        // live transactions
};

// Everything /stats and /metrics show. Counters are totals since start, summed over workers.
struct StatsSnapshot {
  std::string version;
  uint64_t generation = 0;          // config + script generation running
  int64_t uptime_s = 0;
  uint32_t workers = 0;
  uint64_t reloads_ok = 0;
  uint64_t reloads_failed = 0;
  uint64_t bindings = 0;
  uint64_t aors = 0;
  std::map<std::string, uint64_t> requests_by_method;  // received requests (retransmissions too)
  std::map<int, uint64_t> responses_by_code;           // received responses
  std::map<std::string, uint64_t> transactions_active; // "client_invite", "server_non_invite", ...
  uint64_t retransmissions = 0;                        // sent by our transactions
  uint64_t absorbed = 0;                               // retransmissions absorbed
  uint64_t script_errors = 0;
  Histogram script_seconds;                            // time in the routing script per call
  std::map<std::string, uint64_t> parse_errors;        // by reason (status class / fault)
  std::map<std::string, uint64_t> drops;               // by reason
  // Requests and connections refused by the proxy's own protection, by reason
  // ("rate_limited", "blocked", "connections_per_source", "overload"; docs/security.md).
  std::map<std::string, uint64_t> refused;
  std::map<std::string, uint64_t> counters;            // everything else, by metric name
  std::vector<WorkerSnapshot> per_worker;
  bool healthy = true;
  std::string health_detail;                           // why not healthy
};

// One binding as the admin API lists it.
struct LocationEntry {
  std::string aor;
  std::string contact;
  double q = 1.0;
  int64_t expires_in_s = 0;         // -1 for a static (operator) binding
  std::string source;               // "udp:192.0.2.1:5060"
  std::string user_agent;
  bool is_static = false;
};

class AdminBackend {
 public:
  virtual ~AdminBackend() = default;
  virtual void reload(std::function<void(ReloadOutcome)> done) = 0;
  virtual void stats(std::function<void(StatsSnapshot)> done) = 0;
  // `aor` empty: every binding.
  virtual std::vector<LocationEntry> location_list(std::string_view aor) = 0;
  // expires_s 0: static (never expires).
  virtual core::Status location_add(std::string_view aor, std::string_view contact, double q,
                                    uint32_t expires_s) = 0;
  // `contact` empty: every binding of the AOR. Returns how many were removed.
  virtual size_t location_remove(std::string_view aor, std::string_view contact) = 0;
};

}  // namespace sb::app
