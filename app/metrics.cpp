#include "app/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

namespace sb::app {

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string sanitize_metric_name(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 1);
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == ':';
    out += ok ? c : '_';
  }
  if (!out.empty() && out[0] >= '0' && out[0] <= '9') out.insert(out.begin(), '_');
  return out;
}

std::string format_double(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Plain decimals where they read naturally (le="0.0001", "2.5"), exponents only for the
  // very small or large; the same value always gives the same text.
  char buf[400];
  double a = std::fabs(v);
  auto fmt = (a == 0 || (a >= 1e-4 && a < 1e21)) ? std::chars_format::fixed : std::chars_format::scientific;
  auto r = std::to_chars(buf, buf + sizeof buf, v, fmt);
  return std::string(buf, r.ptr);
}

namespace {

// HELP text escapes only \ and newline (text format 0.0.4).
std::string escape_help(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

class Writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    families_.emplace(name);
    out_.append("# HELP ").append(name).append(" ").append(escape_help(help)).append("\n");
    out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  }
  // labels: name/value pairs; values are escaped here.
  void sample(std::string_view name, std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
              std::string_view value) {
    out_.append(name);
    if (labels.size() != 0) {
      out_ += '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_.append(k).append("=\"").append(escape_label_value(v)).append("\"");
      }
      out_ += '}';
    }
    out_.append(" ").append(value).append("\n");
  }
  void sample(std::string_view name, std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
              uint64_t value) {
    sample(name, labels, std::string_view(std::to_string(value)));
  }
  // Whether a family of this name was written already.
  bool has_family(std::string_view name) const { return families_.find(name) != families_.end(); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
  std::set<std::string, std::less<>> families_;
};

std::string response_class(int code) {
  if (code >= 100 && code <= 699) return std::to_string(code / 100) + "xx";
  return "other";
}

}  // namespace

std::string prometheus_text(const StatsSnapshot& s) {
  Writer w;
  std::string gen = std::to_string(s.generation);
  w.family("switchboard_build_info", "gauge", "Build version and the config/script generation running; always 1.");
  w.sample("switchboard_build_info", {{"version", s.version}, {"generation", gen}}, "1");

  w.family("switchboard_uptime_seconds", "gauge", "Seconds since the proxy started.");
  w.sample("switchboard_uptime_seconds", {}, std::to_string(s.uptime_s));

  w.family("switchboard_workers", "gauge", "SIP worker threads.");
  w.sample("switchboard_workers", {}, uint64_t{s.workers});

  w.family("switchboard_healthy", "gauge", "1 when the proxy reports itself healthy, else 0.");
  w.sample("switchboard_healthy", {}, s.healthy ? "1" : "0");

  w.family("switchboard_requests_total", "counter", "SIP requests received, retransmissions included, by method.");
  for (const auto& [method, n] : s.requests_by_method) w.sample("switchboard_requests_total", {{"method", method}}, n);

  w.family("switchboard_responses_total", "counter", "SIP responses received, by status code and class.");
  for (const auto& [code, n] : s.responses_by_code) {
    std::string c = std::to_string(code), cls = response_class(code);
    w.sample("switchboard_responses_total", {{"code", c}, {"class", cls}}, n);
  }

  w.family("switchboard_transactions_active", "gauge", "Live transactions, by kind.");
  for (const auto& [kind, n] : s.transactions_active) w.sample("switchboard_transactions_active", {{"kind", kind}}, n);

  w.family("switchboard_retransmissions_total", "counter", "Retransmissions sent by our transactions.");
  w.sample("switchboard_retransmissions_total", {}, s.retransmissions);

  w.family("switchboard_retransmissions_absorbed_total", "counter",
           "Retransmissions received and absorbed by an existing transaction.");
  w.sample("switchboard_retransmissions_absorbed_total", {}, s.absorbed);

  w.family("switchboard_bindings", "gauge", "Bindings in the location service.");
  w.sample("switchboard_bindings", {}, s.bindings);

  w.family("switchboard_aors", "gauge", "Addresses-of-record in the location service.");
  w.sample("switchboard_aors", {}, s.aors);

  w.family("switchboard_reloads_total", "counter", "Configuration/script reloads, by result.");
  w.sample("switchboard_reloads_total", {{"result", "ok"}}, s.reloads_ok);
  w.sample("switchboard_reloads_total", {{"result", "failed"}}, s.reloads_failed);

  w.family("switchboard_script_errors_total", "counter", "Routing script errors (each answered 500).");
  w.sample("switchboard_script_errors_total", {}, s.script_errors);

  // Buckets are cumulative already; a non-monotonic input is clamped so the output never is.
  w.family("switchboard_script_duration_seconds", "histogram", "Time spent in the routing script per call.");
  {
    const Histogram& h = s.script_seconds;
    size_t n = std::min(h.bounds.size(), h.counts.size());
    uint64_t running = 0;
    for (size_t i = 0; i < n; ++i) {
      running = std::max(running, h.counts[i]);
      std::string le = format_double(h.bounds[i]);
      w.sample("switchboard_script_duration_seconds_bucket", {{"le", le}}, running);
    }
    uint64_t total = std::max(running, h.count);
    w.sample("switchboard_script_duration_seconds_bucket", {{"le", "+Inf"}}, total);
    w.sample("switchboard_script_duration_seconds_sum", {}, format_double(h.sum));
    w.sample("switchboard_script_duration_seconds_count", {}, total);
  }

  w.family("switchboard_parse_errors_total", "counter", "Messages that failed to parse, by reason.");
  for (const auto& [reason, n] : s.parse_errors) w.sample("switchboard_parse_errors_total", {{"reason", reason}}, n);

  w.family("switchboard_drops_total", "counter", "Messages dropped, by reason.");
  for (const auto& [reason, n] : s.drops) w.sample("switchboard_drops_total", {{"reason", reason}}, n);

  w.family("switchboard_refused_total", "counter",
           "Messages and connections refused by flood protection and overload, by reason.");
  for (const auto& [reason, n] : s.refused) w.sample("switchboard_refused_total", {{"reason", reason}}, n);

  w.family("switchboard_queue_depth", "gauge", "Items waiting in each worker's hand-off queue.");
  for (const auto& wk : s.per_worker)
    w.sample("switchboard_queue_depth", {{"worker", std::to_string(wk.id)}}, wk.queue_depth);

  w.family("switchboard_worker_transactions", "gauge", "Live transactions in each worker.");
  for (const auto& wk : s.per_worker)
    w.sample("switchboard_worker_transactions", {{"worker", std::to_string(wk.id)}}, wk.transactions);

  // Generic counters: switchboard_<name>_total. A name that sanitises onto a fixed family or
  // onto an earlier counter is left out: a duplicate family makes the whole scrape invalid.
  for (const auto& [raw, n] : s.counters) {
    std::string base = sanitize_metric_name(raw);
    if (base.empty()) continue;
    std::string name = "switchboard_" + base;
    if (name.size() < 6 || name.compare(name.size() - 6, 6, "_total") != 0) name += "_total";
    if (w.has_family(name)) continue;
    w.family(name, "counter", "Switchboard counter " + raw + ".");
    w.sample(name, {}, n);
  }
  return w.take();
}

nlohmann::json stats_json(const StatsSnapshot& s) {
  using nlohmann::json;
  json j;
  j["version"] = s.version;
  j["generation"] = s.generation;
  j["uptime_s"] = s.uptime_s;
  j["workers"] = s.workers;
  j["healthy"] = s.healthy;
  j["health_detail"] = s.health_detail;
  j["reloads_ok"] = s.reloads_ok;
  j["reloads_failed"] = s.reloads_failed;
  j["bindings"] = s.bindings;
  j["aors"] = s.aors;
  j["requests_by_method"] = s.requests_by_method;  // a std::map with string keys: a JSON object, {} when empty
  j["responses_by_code"] = json::object();
  for (const auto& [k, v] : s.responses_by_code) j["responses_by_code"][std::to_string(k)] = v;
  j["transactions_active"] = s.transactions_active;
  j["retransmissions"] = s.retransmissions;
  j["absorbed"] = s.absorbed;
  j["script_errors"] = s.script_errors;
  json h;
  h["bounds"] = s.script_seconds.bounds;
  h["counts"] = s.script_seconds.counts;
  h["count"] = s.script_seconds.count;
  h["sum"] = std::isfinite(s.script_seconds.sum) ? json(s.script_seconds.sum) : json(nullptr);
  j["script_seconds"] = std::move(h);
  j["parse_errors"] = s.parse_errors;
  j["drops"] = s.drops;
  j["refused"] = s.refused;
  j["counters"] = s.counters;
  j["per_worker"] = json::array();
  for (const auto& w : s.per_worker)
    j["per_worker"].push_back({{"id", w.id}, {"queue_depth", w.queue_depth}, {"transactions", w.transactions}});
  return j;
}

}  // namespace sb::app
