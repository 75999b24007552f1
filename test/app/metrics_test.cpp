#include "app/metrics.h"

#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "test/app/admin_test_util.h"

using namespace sb::app;
using sb::app::test::sample_snapshot;

namespace {

// A small reader of the Prometheus text format 0.0.4, strict about what we emit: comment
// lines (# HELP / # TYPE), samples `name{label="value",...} value`, escapes \\ \" \n in
// label values. It fails the test on anything it cannot read.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string value;
};

struct Exposition {
  std::map<std::string, std::string> help;  // family → text
  std::map<std::string, std::string> type;  // family → counter / gauge / histogram
  std::vector<std::string> family_order;
  std::vector<Sample> samples;

  std::vector<Sample> find(const std::string& name) const {
    std::vector<Sample> out;
    for (const auto& s : samples)
      if (s.name == name) out.push_back(s);
    return out;
  }
  const Sample* find(const std::string& name, const std::map<std::string, std::string>& labels) const {
    for (const auto& s : samples)
      if (s.name == name && s.labels == labels) return &s;
    return nullptr;
  }
};

bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}

// The family a sample belongs to: histogram series carry a suffix.
std::string family_of(const Exposition& e, const std::string& name) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    std::string s(suffix);
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      std::string base = name.substr(0, name.size() - s.size());
      auto it = e.type.find(base);
      if (it != e.type.end() && it->second == "histogram") return base;
    }
  }
  return name;
}

Exposition parse_exposition(const std::string& text) {
  Exposition e;
  REQUIRE_MESSAGE((!text.empty() && text.back() == '\n'), "exposition must end with a newline");
  size_t pos = 0;
  int lineno = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++lineno;
    INFO("line " << lineno << ": " << line);
    REQUIRE(!line.empty());
    if (line[0] == '#') {
      bool is_help = line.rfind("# HELP ", 0) == 0, is_type = line.rfind("# TYPE ", 0) == 0;
      REQUIRE((is_help || is_type));
      std::string rest = line.substr(7);
      size_t sp = rest.find(' ');
      REQUIRE(sp != std::string::npos);
      std::string fam = rest.substr(0, sp), val = rest.substr(sp + 1);
      for (size_t i = 0; i < fam.size(); ++i) REQUIRE(name_char(fam[i], i == 0));
      if (is_help) {
        REQUIRE_MESSAGE(e.help.count(fam) == 0, "HELP twice for " << fam);
        e.help[fam] = val;
      } else {
        REQUIRE_MESSAGE(e.type.count(fam) == 0, "TYPE twice for " << fam);
        REQUIRE((val == "counter" || val == "gauge" || val == "histogram" || val == "summary" || val == "untyped"));
        e.type[fam] = val;
        e.family_order.push_back(fam);
      }
      continue;
    }
    Sample s;
    size_t i = 0;
    while (i < line.size() && name_char(line[i], i == 0)) ++i;
    REQUIRE(i > 0);
    s.name = line.substr(0, i);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t start = i;
        while (i < line.size() && name_char(line[i], i == start)) ++i;
        std::string label = line.substr(start, i - start);
        REQUIRE(!label.empty());
        REQUIRE(line.substr(i, 2) == "=\"");
        i += 2;
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\') {
            REQUIRE(i + 1 < line.size());
            char n = line[i + 1];
            REQUIRE((n == '\\' || n == '"' || n == 'n'));
            value += n == 'n' ? '\n' : n;
            i += 2;
          } else {
            value += line[i++];
          }
        }
        REQUIRE(i < line.size());
        ++i;  // closing quote
        REQUIRE(s.labels.count(label) == 0);
        s.labels[label] = value;
        if (line[i] == ',') ++i;
      }
      REQUIRE(i < line.size());
      ++i;  // '}'
    }
    REQUIRE(i < line.size());
    REQUIRE(line[i] == ' ');
    s.value = line.substr(i + 1);
    REQUIRE(!s.value.empty());
    REQUIRE(s.value.find(' ') == std::string::npos);
    if (s.value != "+Inf" && s.value != "-Inf" && s.value != "NaN") {
      char* end = nullptr;
      std::strtod(s.value.c_str(), &end);
      REQUIRE(*end == '\0');
    }
    // Every sample's family has been declared (HELP and TYPE) before it.
    std::string fam = family_of(e, s.name);
    REQUIRE_MESSAGE(e.type.count(fam) == 1, "no TYPE before sample " << s.name);
    REQUIRE_MESSAGE(e.help.count(fam) == 1, "no HELP before sample " << s.name);
    REQUIRE_MESSAGE(fam == e.family_order.back(), "sample " << s.name << " outside its family's block");
    e.samples.push_back(std::move(s));
  }
  for (const auto& [fam, t] : e.type) REQUIRE_MESSAGE(e.help.count(fam) == 1, "no HELP for " << fam);
  for (const auto& [fam, h] : e.help) REQUIRE_MESSAGE(e.type.count(fam) == 1, "no TYPE for " << fam);
  return e;
}

}  // namespace

TEST_CASE("prometheus_text: every family declared, names prefixed, values right") {
  auto e = parse_exposition(prometheus_text(sample_snapshot()));
  for (const auto& fam : e.family_order) CHECK(fam.rfind("switchboard_", 0) == 0);

  CHECK(e.type["switchboard_build_info"] == "gauge");
  REQUIRE(e.find("switchboard_build_info", {{"version", "0.1.0"}, {"generation", "3"}}));
  CHECK(e.find("switchboard_build_info", {{"version", "0.1.0"}, {"generation", "3"}})->value == "1");

  CHECK(e.type["switchboard_requests_total"] == "counter");
  CHECK(e.find("switchboard_requests_total", {{"method", "INVITE"}})->value == "3");
  CHECK(e.find("switchboard_requests_total", {{"method", "REGISTER"}})->value == "7");

  CHECK(e.find("switchboard_responses_total", {{"code", "200"}, {"class", "2xx"}})->value == "9");
  CHECK(e.find("switchboard_responses_total", {{"code", "404"}, {"class", "4xx"}})->value == "1");
  CHECK(e.find("switchboard_responses_total", {{"code", "180"}, {"class", "1xx"}})->value == "2");

  CHECK(e.type["switchboard_transactions_active"] == "gauge");
  CHECK(e.find("switchboard_transactions_active", {{"kind", "client_invite"}})->value == "1");
  CHECK(e.find("switchboard_transactions_active", {{"kind", "server_non_invite"}})->value == "2");

  CHECK(e.find("switchboard_retransmissions_total", {})->value == "4");
  CHECK(e.find("switchboard_retransmissions_absorbed_total", {})->value == "6");
  CHECK(e.type["switchboard_bindings"] == "gauge");
  CHECK(e.find("switchboard_bindings", {})->value == "5");
  CHECK(e.find("switchboard_aors", {})->value == "4");
  CHECK(e.find("switchboard_reloads_total", {{"result", "ok"}})->value == "2");
  CHECK(e.find("switchboard_reloads_total", {{"result", "failed"}})->value == "1");
  CHECK(e.find("switchboard_script_errors_total", {})->value == "1");
  CHECK(e.find("switchboard_parse_errors_total", {{"reason", "400"}})->value == "2");
  CHECK(e.find("switchboard_drops_total", {{"reason", "queue_full"}})->value == "3");
  CHECK(e.find("switchboard_drops_total", {{"reason", "no_via"}})->value == "1");
  CHECK(e.find("switchboard_queue_depth", {{"worker", "0"}})->value == "1");
  CHECK(e.find("switchboard_queue_depth", {{"worker", "1"}})->value == "0");
  CHECK(e.find("switchboard_worker_transactions", {{"worker", "0"}})->value == "2");
  CHECK(e.find("switchboard_uptime_seconds", {})->value == "3723");
  CHECK(e.find("switchboard_workers", {})->value == "2");
  CHECK(e.find("switchboard_healthy", {})->value == "1");
  CHECK(e.type["switchboard_dns_queries_total"] == "counter");
  CHECK(e.find("switchboard_dns_queries_total", {})->value == "12");
}

TEST_CASE("prometheus_text: histogram buckets are cumulative and end in +Inf = _count") {
  auto e = parse_exposition(prometheus_text(sample_snapshot()));
  CHECK(e.type["switchboard_script_duration_seconds"] == "histogram");
  auto buckets = e.find("switchboard_script_duration_seconds_bucket");
  REQUIRE(buckets.size() == 4);
  std::vector<std::string> les;
  double prev_le = -1;
  uint64_t prev = 0;
  for (const auto& b : buckets) {
    REQUIRE(b.labels.count("le") == 1);
    les.push_back(b.labels.at("le"));
    double le = b.labels.at("le") == "+Inf" ? 1e300 : std::stod(b.labels.at("le"));
    CHECK(le > prev_le);
    prev_le = le;
    uint64_t v = std::stoull(b.value);
    CHECK(v >= prev);
    prev = v;
  }
  CHECK(les == std::vector<std::string>{"0.0001", "0.001", "0.01", "+Inf"});
  CHECK(buckets.back().value == "11");
  CHECK(e.find("switchboard_script_duration_seconds_count", {})->value == "11");
  CHECK(std::stod(e.find("switchboard_script_duration_seconds_sum", {})->value) == doctest::Approx(0.0421));

  // A non-monotonic input never yields a non-monotonic output.
  StatsSnapshot s;
  s.script_seconds.bounds = {0.1, 0.2, 0.5};
  s.script_seconds.counts = {5, 3, 6};
  s.script_seconds.count = 4;
  auto e2 = parse_exposition(prometheus_text(s));
  auto b2 = e2.find("switchboard_script_duration_seconds_bucket");
  REQUIRE(b2.size() == 4);
  CHECK(b2[0].value == "5");
  CHECK(b2[1].value == "5");
  CHECK(b2[2].value == "6");
  CHECK(b2[3].value == "6");
  CHECK(e2.find("switchboard_script_duration_seconds_count", {})->value == "6");
}

TEST_CASE("prometheus_text: label values escaped, round-trip through the reader") {
  StatsSnapshot s;
  s.version = "1.0 \"beta\"\\x\nnext";
  s.requests_by_method = {{"FO\"O", 1}};
  s.drops = {{"back\\slash", 2}, {"new\nline", 3}};
  s.transactions_active = {{"k=\"v\",x", 4}};
  std::string text = prometheus_text(s);
  CHECK(text.find("method=\"FO\\\"O\"") != std::string::npos);
  CHECK(text.find("reason=\"back\\\\slash\"") != std::string::npos);
  CHECK(text.find("reason=\"new\\nline\"") != std::string::npos);
  auto e = parse_exposition(text);
  CHECK(e.find("switchboard_requests_total", {{"method", "FO\"O"}})->value == "1");
  CHECK(e.find("switchboard_drops_total", {{"reason", "back\\slash"}})->value == "2");
  CHECK(e.find("switchboard_drops_total", {{"reason", "new\nline"}})->value == "3");
  CHECK(e.find("switchboard_transactions_active", {{"kind", "k=\"v\",x"}})->value == "4");
  CHECK(e.find("switchboard_build_info", {{"version", s.version}, {"generation", "0"}}) != nullptr);
  CHECK(escape_label_value("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
}

TEST_CASE("prometheus_text: an empty snapshot still declares every family") {
  auto e = parse_exposition(prometheus_text(StatsSnapshot{}));
  for (const char* fam :
       {"switchboard_build_info", "switchboard_requests_total", "switchboard_responses_total",
        "switchboard_transactions_active", "switchboard_retransmissions_total", "switchboard_bindings",
        "switchboard_aors", "switchboard_reloads_total", "switchboard_script_errors_total",
        "switchboard_script_duration_seconds", "switchboard_parse_errors_total", "switchboard_drops_total",
        "switchboard_queue_depth"})
    CHECK_MESSAGE(e.type.count(fam) == 1, fam);
  CHECK(e.find("switchboard_script_duration_seconds_bucket", {{"le", "+Inf"}})->value == "0");
  CHECK(e.find("switchboard_script_duration_seconds_count", {})->value == "0");
  CHECK(e.find("switchboard_script_duration_seconds_sum", {})->value == "0");
}

TEST_CASE("prometheus_text: generic counters named switchboard_<name>_total, never a duplicate family") {
  StatsSnapshot s;
  s.counters = {{"dns.failures", 1},     {"already_total", 2}, {"9lives", 3},
                {"retransmissions", 4},  {"dns_failures", 5},  {"", 6}};
  auto e = parse_exposition(prometheus_text(s));  // throws on a duplicate TYPE/HELP
  // "dns.failures" and "dns_failures" sanitise alike: the first in map order is kept.
  CHECK(e.find("switchboard_dns_failures_total", {})->value == "1");
  CHECK(e.find("switchboard_already_total", {})->value == "2");
  CHECK(e.find("switchboard__9lives_total", {})->value == "3");
  // Collides with the fixed family: left out, the fixed one keeps its value.
  CHECK(e.find("switchboard_retransmissions_total", {})->value == "0");
  CHECK(sanitize_metric_name("a-b.c:d") == "a_b_c:d");
}

TEST_CASE("format_double: shortest form, Prometheus spellings of the specials") {
  CHECK(format_double(0.005) == "0.005");
  CHECK(format_double(1) == "1");
  CHECK(format_double(0.0001) == "0.0001");
  CHECK(format_double(250) == "250");
  CHECK(format_double(2.5e-7) == "2.5e-07");
  CHECK(format_double(1e300) == "1e+300");
  CHECK(format_double(1.0 / 0.0) == "+Inf");
  CHECK(format_double(-1.0 / 0.0) == "-Inf");
  CHECK(format_double(0.0 / 0.0) == "NaN");
}

TEST_CASE("stats_json mirrors the snapshot") {
  auto j = stats_json(sample_snapshot());
  CHECK(j["version"] == "0.1.0");
  CHECK(j["generation"] == 3);
  CHECK(j["uptime_s"] == 3723);
  CHECK(j["workers"] == 2);
  CHECK(j["healthy"] == true);
  CHECK(j["reloads_ok"] == 2);
  CHECK(j["reloads_failed"] == 1);
  CHECK(j["bindings"] == 5);
  CHECK(j["aors"] == 4);
  CHECK(j["requests_by_method"]["INVITE"] == 3);
  CHECK(j["responses_by_code"]["404"] == 1);
  CHECK(j["transactions_active"]["client_invite"] == 1);
  CHECK(j["retransmissions"] == 4);
  CHECK(j["absorbed"] == 6);
  CHECK(j["script_errors"] == 1);
  CHECK(j["script_seconds"]["bounds"].size() == 3);
  CHECK(j["script_seconds"]["counts"][2] == 10);
  CHECK(j["script_seconds"]["count"] == 11);
  CHECK(j["script_seconds"]["sum"].get<double>() == doctest::Approx(0.0421));
  CHECK(j["parse_errors"]["400"] == 2);
  CHECK(j["drops"]["queue_full"] == 3);
  CHECK(j["counters"]["dns_queries"] == 12);
  REQUIRE(j["per_worker"].size() == 2);
  CHECK(j["per_worker"][0]["id"] == 0);
  CHECK(j["per_worker"][0]["queue_depth"] == 1);
  CHECK(j["per_worker"][0]["transactions"] == 2);
  StatsSnapshot refused;
  refused.refused = {{"rate_limited", 7}};
  CHECK(stats_json(refused)["refused"]["rate_limited"] == 7);
  const auto empty = stats_json(StatsSnapshot{});
  for (const char* key : {"requests_by_method", "responses_by_code", "transactions_active", "parse_errors", "drops",
                          "refused", "counters"}) {
    CAPTURE(key);
    CHECK(empty.at(key).is_object());
    CHECK(empty.at(key).empty());
  }
  CHECK(empty.at("per_worker").is_array());
}
