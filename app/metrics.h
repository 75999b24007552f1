// The two renderings of a StatsSnapshot the admin API serves: Prometheus text exposition
// format 0.0.4 for GET /metrics, and JSON for GET /stats (docs/admin.md lists every name).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "app/admin_backend.h"

namespace sb::app {

// Content-Type of prometheus_text().
inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

// Every family with # HELP and # TYPE, names prefixed `switchboard_`, label values escaped.
std::string prometheus_text(const StatsSnapshot& s);

// The snapshot field by field (same names as StatsSnapshot); map keys become JSON keys.
nlohmann::json stats_json(const StatsSnapshot& s);

// Helpers, public for the tests.
// A label value with \ " and newline escaped as the text format asks.
std::string escape_label_value(std::string_view v);
// `name` made a valid metric name part: [a-zA-Z0-9_:], no leading digit.
std::string sanitize_metric_name(std::string_view name);
// A sample value or an `le` bound: shortest round-trip form, +Inf / -Inf / NaN.
std::string format_double(double v);

}  // namespace sb::app
