#include "core/config.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>
#include <unordered_set>

#include "core/address.h"
#include "core/text.h"

// Generated at build time from etc/switchboard.json by cmake/EmbedFile.cmake.
namespace sb::core::embedded {
extern const char switchboard_json[];
extern const std::size_t switchboard_json_size;
}  // namespace sb::core::embedded

namespace sb::core {

namespace {

// Ordered so that faults are reported in the order they appear in the file.
using Json = nlohmann::ordered_json;

constexpr const char* kEmbeddedName = "<embedded default>";
constexpr uint32_t kMaxWorkers = 64;
// CPU numbers in "cpu_affinity": below CPU_SETSIZE (1024), the size of a cpu_set_t.
constexpr int64_t kMaxCpu = 1023;

// ---- key paths: listen[1].port, timers.t2_ms, domains[0] -------------------------------

bool is_plain_key(std::string_view k) {
  if (k.empty()) return false;
  for (char c : k)
    if (!is_alnum(c) && c != '_' && c != '-') return false;
  return true;
}

std::string child_path(const std::string& parent, std::string_view key) {
  // Keys that would make the path ambiguous ("a.b", "", " x") are shown quoted.
  std::string seg = is_plain_key(key) ? std::string(key) : "[" + Json(std::string(key)).dump() + "]";
  if (parent.empty() || seg.front() == '[') return parent + seg;
  return parent + "." + seg;
}

std::string index_path(const std::string& parent, size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}

std::string shown_path(const std::string& path) { return path.empty() ? "(top level)" : path; }

// What the file said, for "got ...": JSON text for scalars, the kind for containers.
std::string describe(const Json& v) {
  if (v.is_object()) return v.empty() ? "{}" : "an object";
  if (v.is_array()) return v.empty() ? "[]" : "an array";
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// "a", "b" or "c"
std::string quoted_list(std::initializer_list<const char*> items) {
  std::string out;
  size_t i = 0;
  for (const char* item : items) {
    if (i > 0) out += (i + 1 == items.size()) ? " or " : ", ";
    out += '"';
    out += item;
    out += '"';
    ++i;
  }
  return out;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// ---- host names and IP literals ---------------------------------------------------------

// Lower-cased host name, or an IP literal in canonical form (IPv6 without brackets);
// nullopt when `s` is neither.
std::optional<std::string> normalize_host(std::string_view s) {
  // Endpoint::parse stops at a NUL, so "::1\0junk" would pass as "::1".
  if (s.empty() || s.find('\0') != std::string_view::npos) return std::nullopt;
  bool bracketed = s.front() == '[';
  if (bracketed || s.find(':') != std::string_view::npos) {
    if (bracketed && (s.size() < 2 || s.back() != ']')) return std::nullopt;
    auto ep = Endpoint::parse(s, 0);
    if (!ep || ep->family() != AF_INET6) return std::nullopt;
    return ep->ip();
  }
  // RFC 3261 §25.1 hostname (labels of alphanum and '-'), which also covers IPv4.
  std::string out;
  out.reserve(s.size());
  char prev = '.';
  for (char c : s) {
    if (c == '.' && prev == '.') return std::nullopt;
    if (!is_alnum(c) && c != '-' && c != '.') return std::nullopt;
    out += ascii_lower(c);
    prev = c;
  }
  if (out.back() == '.') return std::nullopt;
  return out;
}

std::string resolve_path(const std::string& base_dir, const std::string& p) {
  std::filesystem::path path(p);
  if (path.is_absolute()) return p;
  return (std::filesystem::path(base_dir) / path).lexically_normal().string();
}

// ---- the checker: reads values into the config, collects every fault ----------------------

struct Field {
  const char* key;
  std::function<void(const Json& value, const std::string& path)> read;
  bool required = false;
};

class Checker {
 public:
  explicit Checker(std::vector<std::string>& errors) : errors_(errors) {}

  void fail(const std::string& path, const std::string& msg) {
    errors_.push_back(shown_path(path) + ": " + msg);
  }
  size_t error_count() const { return errors_.size(); }

  // Walks `obj` in file order, handing each known key to its field; every other key is a
  // fault. Returns false when `obj` is not an object.
  bool walk(const Json& obj, const std::string& path, std::initializer_list<Field> fields,
            std::initializer_list<const char*> later = {}) {
    if (!obj.is_object()) {
      fail(path, "expected an object, got " + describe(obj));
      return false;
    }
    std::vector<bool> seen(fields.size(), false);
    for (const auto& [key, value] : obj.items()) {
      size_t i = 0;
      for (const Field& f : fields) {
        if (key == f.key) break;
        ++i;
      }
      std::string kpath = child_path(path, key);
      if (i < fields.size()) {
        seen[i] = true;
        fields.begin()[i].read(value, kpath);
      } else {
        unknown_key(kpath, key, fields, later);
      }
    }
    size_t i = 0;
    for (const Field& f : fields) {
      if (f.required && !seen[i]) fail(child_path(path, f.key), "required key is missing");
      ++i;
    }
    return true;
  }

  std::optional<int64_t> integer(const Json& v, const std::string& path, int64_t lo, int64_t hi) {
    std::optional<int64_t> n;
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u <= uint64_t(INT64_MAX)) n = int64_t(u);
      else n = INT64_MAX;  // certainly above hi; reported as out of range below
    } else if (v.is_number_integer()) {
      n = v.get<int64_t>();
    } else if (v.is_number_float()) {
      // 1e6 is a fine way to write a million; 1.5 is not an integer.
      double d = v.get<double>();
      if (std::isfinite(d) && std::trunc(d) == d && d >= double(lo) && d <= double(hi))
        n = int64_t(d);
    }
    if (!n || *n < lo || *n > hi) {
      fail(path, "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                     ", got " + describe(v));
      return std::nullopt;
    }
    return n;
  }

  template <class T>
  void integer_into(const Json& v, const std::string& path, int64_t lo, int64_t hi, T& out) {
    if (auto n = integer(v, path, lo, hi)) out = static_cast<T>(*n);
  }

  void boolean_into(const Json& v, const std::string& path, bool& out) {
    if (v.is_boolean()) out = v.get<bool>();
    else fail(path, "expected true or false, got " + describe(v));
  }

  std::optional<std::string> string(const Json& v, const std::string& path, const char* what) {
    if (!v.is_string() || v.get_ref<const std::string&>().empty()) {
      fail(path, std::string("expected ") + what + ", got " + describe(v));
      return std::nullopt;
    }
    return v.get<std::string>();
  }

  std::optional<std::string> path_string(const Json& v, const std::string& path) {
    auto s = string(v, path, "a non-empty file path");
    if (s && s->find('\0') != std::string::npos) {
      fail(path, "expected a file path, got a string containing NUL");
      return std::nullopt;
    }
    return s;
  }

  std::optional<std::string> choice(const Json& v, const std::string& path,
                                    std::initializer_list<const char*> allowed) {
    if (v.is_string()) {
      for (const char* a : allowed)
        if (v.get_ref<const std::string&>() == a) return std::string(a);
    }
    fail(path, "expected " + quoted_list(allowed) + ", got " + describe(v));
    return std::nullopt;
  }

  std::optional<std::string> host(const Json& v, const std::string& path) {
    std::optional<std::string> h;
    if (v.is_string()) h = normalize_host(v.get_ref<const std::string&>());
    if (!h) fail(path, "expected a host name or IP address, got " + describe(v));
    return h;
  }

 private:
  void unknown_key(const std::string& kpath, std::string_view key,
                   std::initializer_list<Field> fields,
                   std::initializer_list<const char*> later) {
    for (const char* l : later)
      if (key == l) {
        fail(kpath, "not supported yet (a later release adds it); remove this key");
        return;
      }
    std::string msg = "unknown key; expected one of ";
    const char* best = nullptr;
    size_t best_d = SIZE_MAX;
    size_t i = 0;
    for (const Field& f : fields) {
      if (i++ > 0) msg += ", ";
      msg += f.key;
      size_t d = edit_distance(key, f.key);
      std::string_view fk(f.key);
      bool prefix = key.size() >= 2 && (fk.starts_with(key) || key.starts_with(fk));
      if ((d <= 2 || prefix) && d < best_d) {
        best = f.key;
        best_d = d;
      }
    }
    if (best) msg += std::string(" (did you mean \"") + best + "\"?)";
    fail(kpath, msg);
  }

  std::vector<std::string>& errors_;
};

// ---- the schema ---------------------------------------------------------------------------

// Values used when a key is absent. etc/switchboard.json spells out the same values; a test
// keeps the two equal. Paths stay unresolved until the end.
struct Draft {
  Config config;
  std::string sqlite_path = "../var/location.db";
  std::string script_path = "../scripts/default.lua";
  std::string users_file;  // auth.users_file, unresolved
};

Draft defaults() {
  Draft d;
  d.config.listen = {{"udp", "127.0.0.1", 5060, ""},
                     {"tcp", "127.0.0.1", 5060, ""},
                     {"udp", "::1", 5060, ""},
                     {"tcp", "::1", 5060, ""}};
  d.config.domains = {"localhost", "127.0.0.1", "::1"};
  return d;
}

void read_listen(Checker& c, const Json& v, const std::string& path, Config& cfg) {
  if (!v.is_array() || v.empty()) {
    c.fail(path, "expected a non-empty array of listeners, got " + describe(v));
    return;
  }
  std::vector<ListenerConfig> out;
  std::vector<size_t> index;  // position in the file of each entry in `out`
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string ipath = index_path(path, i);
    const size_t errors_before = c.error_count();
    ListenerConfig l;
    // Keys are walked in file order: know up front whether "port" comes.
    const bool port_given = v[i].is_object() && v[i].contains("port");
    bool walked = c.walk(
        v[i], ipath,
        {
            {"transport",
             [&](const Json& t, const std::string& p) {
               // Transport names are case-insensitive in SIP (RFC 3261 §20.42), so "UDP" is fine.
               auto proto = t.is_string() ? protocol_from_name(t.get_ref<const std::string&>())
                                          : std::nullopt;
               if (proto == Protocol::Udp || proto == Protocol::Tcp || proto == Protocol::Tls) {
                 l.transport = *proto == Protocol::Udp ? "udp" : *proto == Protocol::Tcp ? "tcp" : "tls";
                 if (*proto == Protocol::Tls && !port_given) l.port = 5061;  // RFC 3261 §19.1.2
               } else if (proto) {
                 c.fail(p, describe(t) + " is not supported yet; expected \"udp\", \"tcp\" or \"tls\"");
               } else {
                 c.fail(p, "expected \"udp\", \"tcp\" or \"tls\", got " + describe(t));
               }
             },
             true},
            {"address",
             [&](const Json& a, const std::string& p) {
               std::optional<Endpoint> ep;
               if (a.is_string() && a.get_ref<const std::string&>().find('\0') == std::string::npos)
                 ep = Endpoint::parse(a.get_ref<const std::string&>(), 0);
               if (ep)
                 l.address = ep->ip();  // canonical, so "::1" and "0::1" compare equal below
               else
                 c.fail(p, "expected an IPv4 or IPv6 address literal (0.0.0.0 or :: for all), got " +
                               describe(a));
             },
             true},
            {"port",
             [&](const Json& p, const std::string& pp) { c.integer_into(p, pp, 1, 65535, l.port); }},
            {"advertise",
             [&](const Json& a, const std::string& p) {
               if (auto h = c.host(a, p)) l.advertise = *h;
             }},
            {"symmetric", [&](const Json& x, const std::string& p) { c.boolean_into(x, p, l.symmetric); }},
        });
    if (walked && l.symmetric && l.transport != "udp")
      c.fail(child_path(ipath, "symmetric"), "only for udp listeners (a stream's requests and responses share its connection)");
    if (!walked || c.error_count() != errors_before) continue;

    // Two sockets cannot bind the same transport, address and port.
    bool duplicate = false;
    for (size_t k = 0; k < out.size() && !duplicate; ++k) {
      const ListenerConfig& o = out[k];
      if (o.transport == l.transport && o.address == l.address && o.port == l.port) {
        c.fail(ipath, "duplicate listener: " + l.transport + " " +
                          Endpoint::parse(l.address, l.port)->to_string() + " is already " +
                          index_path(path, index[k]));
        duplicate = true;
      }
    }
    if (duplicate) continue;
    out.push_back(l);
    index.push_back(i);
  }
  cfg.listen = std::move(out);
}

void read_domains(Checker& c, const Json& v, const std::string& path, Config& cfg) {
  if (!v.is_array() || v.empty()) {
    c.fail(path, "expected a non-empty array of host names or IP addresses, got " + describe(v));
    return;
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    auto h = c.host(v[i], index_path(path, i));
    // A repeat is harmless: keep the first.
    if (h && std::find(out.begin(), out.end(), *h) == out.end()) out.push_back(std::move(*h));
  }
  cfg.domains = std::move(out);
}

void read_timers(Checker& c, const Json& v, const std::string& path, TimersConfig& t) {
  std::optional<int64_t> t1, t2;
  c.walk(v, path,
         {
             {"t1_ms", [&](const Json& x, const std::string& p) { t1 = c.integer(x, p, 1, 60000); }},
             {"t2_ms", [&](const Json& x, const std::string& p) { t2 = c.integer(x, p, 1, 600000); }},
             {"t4_ms", [&](const Json& x, const std::string& p) { c.integer_into(x, p, 1, 600000, t.t4_ms); }},
             // RFC 3261 §16.6 step 11 wants Timer C above 3 minutes; shorter is allowed for tests.
             {"timer_c_ms",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 1000, 3600000, t.timer_c_ms); }},
             // §17.2.1: the 100 Trying may be left out only when an answer comes within 200 ms.
             {"trying_delay_ms",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 0, 200, t.trying_delay_ms); }},
         });
  if (t1) t.t1_ms = *t1;
  if (t2) t.t2_ms = *t2;
  // RFC 3261 §17.1.2.2: retransmit intervals double from T1 up to T2, so T2 below T1 is
  // meaningless. Compared only when neither value was already faulted.
  bool t1_ok = t1 || !v.is_object() || !v.contains("t1_ms");
  bool t2_ok = t2 || !v.is_object() || !v.contains("t2_ms");
  if (v.is_object() && t1_ok && t2_ok && t.t2_ms < t.t1_ms)
    c.fail(child_path(path, "t2_ms"), "must be at least t1_ms (" + std::to_string(t.t1_ms) +
                                          "), got " + std::to_string(t.t2_ms));
}

void read_limits(Checker& c, const Json& v, const std::string& path, LimitsConfig& l) {
  c.walk(v, path,
         {
             {"max_message_bytes",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 1024, 1048576, l.max_message_bytes); }},
             {"max_headers",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 16, 4096, l.max_headers); }},
             {"max_transactions",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 1, 10000000, l.max_transactions); }},
             {"queue_capacity",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 16, 16777216, l.queue_capacity); }},
             {"tcp_idle_timeout_s",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 1, 86400, l.tcp_idle_timeout_s); }},
             {"max_connections",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 1, 1000000, l.max_connections); }},
             {"tls_handshake_timeout_ms",
              [&](const Json& x, const std::string& p) {
                c.integer_into(x, p, 100, 600000, l.tls_handshake_timeout_ms);
              }},
         });
}

void read_registrar(Checker& c, const Json& v, const std::string& path, RegistrarConfig& r) {
  std::optional<int64_t> min, max, def;
  const bool present = v.is_object();
  c.walk(v, path,
         {
             {"min_expires", [&](const Json& x, const std::string& p) { min = c.integer(x, p, 0, 86400); }},
             // Bounded to 2^31-1 so expiry arithmetic in signed 32 bits cannot overflow.
             {"max_expires", [&](const Json& x, const std::string& p) { max = c.integer(x, p, 0, INT32_MAX); }},
             {"default_expires", [&](const Json& x, const std::string& p) { def = c.integer(x, p, 0, INT32_MAX); }},
             {"max_bindings_per_aor",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 1, 1000, r.max_bindings_per_aor); }},
             {"max_aors",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 1, 100000000, r.max_aors); }},
             {"foreign_domain",
              [&](const Json& x, const std::string& p) {
                if (auto s = c.choice(x, p, {"refuse", "proxy"})) r.proxy_foreign_domain = *s == "proxy";
              }},
         });
  if (!present) return;
  auto ok = [&](const std::optional<int64_t>& n, const char* key) { return n || !v.contains(key); };
  const bool all_ok = ok(min, "min_expires") && ok(max, "max_expires") && ok(def, "default_expires");
  if (min) r.min_expires = uint32_t(*min);
  if (max) r.max_expires = uint32_t(*max);
  if (def) r.default_expires = uint32_t(*def);
  if (!all_ok) return;
  if (r.max_expires < r.min_expires) {
    c.fail(child_path(path, "max_expires"), "must be at least min_expires (" +
                                                std::to_string(r.min_expires) + "), got " +
                                                std::to_string(r.max_expires));
  } else if (r.default_expires < r.min_expires || r.default_expires > r.max_expires) {
    c.fail(child_path(path, "default_expires"),
           "must be between min_expires and max_expires (" + std::to_string(r.min_expires) +
               " to " + std::to_string(r.max_expires) + "), got " +
               std::to_string(r.default_expires));
  }
}

// location.redis (docs/cluster.md). Checked whatever the backend, like location.sqlite.
void read_location_redis(Checker& c, const Json& v, const std::string& path, RedisLocationConfig& r) {
  // Printable ASCII without spaces; `glob` also refuses SCAN pattern characters.
  auto token = [&](const Json& x, const std::string& p, size_t max, bool glob) -> std::optional<std::string> {
    auto s = c.string(x, p, "a non-empty string");
    if (!s) return std::nullopt;
    bool ok = s->size() <= max;
    for (char ch : *s)
      ok = ok && ch > 0x20 && ch < 0x7f && !(glob && std::string_view("*?[]\\").find(ch) != std::string_view::npos);
    if (!ok) {
      c.fail(p, "expected at most " + std::to_string(max) + " printable characters without spaces" +
                    (glob ? std::string(" or any of *?[]\\") : std::string()) + ", got " + describe(x));
      return std::nullopt;
    }
    return s;
  };
  c.walk(v, path,
         {
             {"servers",
              [&](const Json& x, const std::string& p) {
                if (!x.is_array() || x.empty()) {
                  c.fail(p, "expected a non-empty array of \"host:port\" strings, got " + describe(x));
                  return;
                }
                std::vector<std::string> out;
                for (size_t i = 0; i < x.size(); ++i) {
                  std::string ip = p + "[" + std::to_string(i) + "]";
                  const Json& e = x[i];
                  std::string_view sv = e.is_string() ? std::string_view(e.get_ref<const std::string&>()) : "";
                  size_t colon = sv.rfind(':');
                  std::optional<std::string> host;
                  int64_t port = 0;
                  if (colon != std::string_view::npos && colon > 0) {
                    host = normalize_host(sv.substr(0, colon));
                    auto ps = sv.substr(colon + 1);
                    auto [ptr, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
                    if (ec != std::errc() || ptr != ps.data() + ps.size() || ps.empty()) port = 0;
                  }
                  if (!host || port < 1 || port > 65535) {
                    c.fail(ip, "expected \"host:port\" (an IPv6 address in brackets), got " + describe(e));
                    continue;
                  }
                  out.emplace_back(sv);
                }
                r.servers = std::move(out);
              }},
             {"prefix",
              [&](const Json& x, const std::string& p) {
                if (auto s = token(x, p, 64, true)) r.prefix = *s;
              }},
             {"node_id",
              [&](const Json& x, const std::string& p) {
                if (auto s = token(x, p, 128, false)) r.node_id = *s;
              }},
             {"connect_timeout_ms",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 10, 60000, r.connect_timeout_ms); }},
             {"command_timeout_ms",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 10, 60000, r.command_timeout_ms); }},
             {"reconnect_ms",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 10, 600000, r.reconnect_ms); }},
             {"queue_capacity",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 1, 10000000, r.queue_capacity); }},
             {"pool_size",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 1, 16, r.pool_size); }},
         });
}

void read_location(Checker& c, const Json& v, const std::string& path, Draft& d) {
  LocationConfig& l = d.config.location;
  c.walk(v, path,
         {
             {"backend",
              [&](const Json& x, const std::string& p) {
                if (auto s = c.choice(x, p, {"sqlite", "memory", "redis"})) l.backend = *s;
              }},
             {"sqlite",
              [&](const Json& x, const std::string& p) {
                // Checked even with the memory backend, so switching backends later is safe.
                c.walk(x, p,
                       {
                           {"path",
                            [&](const Json& y, const std::string& pp) {
                              if (auto s = c.path_string(y, pp)) d.sqlite_path = *s;
                            }},
                           {"batch_ms",
                            [&](const Json& y, const std::string& pp) { c.integer_into(y, pp, 1, 60000, l.batch_ms); }},
                           {"queue_capacity",
                            [&](const Json& y, const std::string& pp) {
                              c.integer_into(y, pp, 1, 10000000, l.queue_capacity);
                            }},
                       });
              }},
             {"redis",
              [&](const Json& x, const std::string& p) { read_location_redis(c, x, p, l.redis); }},
         });
}

void read_script(Checker& c, const Json& v, const std::string& path, Draft& d) {
  c.walk(v, path,
         {
             {"path",
              [&](const Json& x, const std::string& p) {
                if (auto s = c.path_string(x, p)) d.script_path = *s;
              }},
             {"max_instructions",
              [&](const Json& x, const std::string& p) {
                c.integer_into(x, p, 1000, 1000000000, d.config.script.max_instructions);
              }},
         });
}

void read_logging(Checker& c, const Json& v, const std::string& path, LoggingConfig& l) {
  c.walk(v, path,
         {
             {"level",
              [&](const Json& x, const std::string& p) {
                // The same names log::parse_level takes (a test keeps them in step).
                if (auto s = c.choice(x, p, {"debug", "info", "warn", "error", "off"})) l.level = *s;
              }},
             {"format",
              [&](const Json& x, const std::string& p) {
                if (auto s = c.choice(x, p, {"text", "json"})) l.json = *s == "json";
              }},
         });
}

// "192.0.2.1", "192.0.2.1:5353", "::1", "[::1]", "[::1]:5353" → "IP:port" (port 53 by default).
std::optional<std::string> dns_server(std::string_view s) {
  if (s.empty() || s.find('\0') != std::string_view::npos) return std::nullopt;
  std::string_view ip = s, port_text;
  if (s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    ip = s.substr(1, close - 1);
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port_text = rest.substr(1);
      if (port_text.empty()) return std::nullopt;
    }
  } else if (std::count(s.begin(), s.end(), ':') == 1) {
    size_t colon = s.find(':');
    ip = s.substr(0, colon);
    port_text = s.substr(colon + 1);
    if (port_text.empty()) return std::nullopt;
  }
  uint32_t port = 53;
  if (!port_text.empty()) {
    port = 0;
    for (char ch : port_text) {
      if (ch < '0' || ch > '9' || port > 65535) return std::nullopt;
      port = port * 10 + uint32_t(ch - '0');
    }
    if (port == 0 || port > 65535) return std::nullopt;
  }
  auto ep = Endpoint::parse(ip, static_cast<uint16_t>(port));
  if (!ep) return std::nullopt;
  return ep->to_string();
}

void read_dns(Checker& c, const Json& v, const std::string& path, DnsConfig& d) {
  c.walk(v, path,
         {
             {"servers",
              [&](const Json& x, const std::string& p) {
                if (!x.is_array()) {
                  c.fail(p, "expected an array of DNS server addresses (\"IP\" or \"IP:port\"), got " +
                                describe(x));
                  return;
                }
                std::vector<std::string> out;
                for (size_t i = 0; i < x.size(); ++i) {
                  std::optional<std::string> s;
                  if (x[i].is_string()) s = dns_server(x[i].get_ref<const std::string&>());
                  if (!s) {
                    c.fail(index_path(p, i), "expected an IP address with an optional port "
                                             "(\"192.0.2.53\", \"192.0.2.53:5353\", \"[2001:db8::53]:53\"), got " +
                                                 describe(x[i]));
                  } else if (std::find(out.begin(), out.end(), *s) == out.end()) {
                    out.push_back(std::move(*s));
                  }
                }
                d.servers = std::move(out);
              }},
             {"timeout_ms",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 10, 60000, d.timeout_ms); }},
             {"tries", [&](const Json& x, const std::string& p) { c.integer_into(x, p, 1, 10, d.tries); }},
             {"max_ttl_s",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 0, 604800, d.max_ttl_s); }},
             {"negative_ttl_s",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 0, 86400, d.negative_ttl_s); }},
             {"greylist_s",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 0, 86400, d.greylist_s); }},
             {"prefer_ipv6",
              [&](const Json& x, const std::string& p) { c.boolean_into(x, p, d.prefer_ipv6); }},
         });
}

void read_admin(Checker& c, const Json& v, const std::string& path, AdminConfig& a) {
  c.walk(v, path,
         {
             {"enabled",
              [&](const Json& x, const std::string& p) { c.boolean_into(x, p, a.enabled); }},
             {"address",
              [&](const Json& x, const std::string& p) {
                std::optional<Endpoint> ep;
                if (x.is_string()) ep = Endpoint::parse(x.get_ref<const std::string&>(), 0);
                if (!ep)
                  c.fail(p, "expected an IPv4 or IPv6 address (e.g. \"127.0.0.1\"), got " + describe(x));
                else
                  a.address = ep->ip();
              }},
             {"port", [&](const Json& x, const std::string& p) { c.integer_into(x, p, 0, 65535, a.port); }},
         });
}

// Realms go into quoted-strings of challenges (RFC 3261 §25.1): no quote, backslash or
// control character, so they need no escaping.
void read_auth(Checker& c, const Json& v, const std::string& path, Draft& d) {
  AuthConfig& a = d.config.auth;
  a.enabled = true;
  bool users_file_given = false;
  bool walked = c.walk(
      v, path,
      {
          {"users_file",
           [&](const Json& x, const std::string& p) {
             users_file_given = true;
             if (auto s = c.path_string(x, p)) d.users_file = *s;
           }},
          {"realm",
           [&](const Json& x, const std::string& p) {
             if (x.is_string() && !x.get_ref<const std::string&>().empty() && quotable(x.get_ref<const std::string&>()))
               a.realm = x.get<std::string>();
             else
               c.fail(p, "expected a non-empty string without quotes, backslashes or control "
                         "characters, got " + describe(x));
           }},
          {"nonce_ttl_s",
           [&](const Json& x, const std::string& p) { c.integer_into(x, p, 1, 86400, a.nonce_ttl_s); }},
          {"secret",
           [&](const Json& x, const std::string& p) {
             if (x.is_string() && x.get_ref<const std::string&>().size() >= 16)
               a.secret = x.get<std::string>();
             else
               c.fail(p, "expected a string of at least 16 characters (or leave it out for a "
                         "random secret per start), got " + describe(x));
           }},
          {"algorithms",
           [&](const Json& x, const std::string& p) {
             if (!x.is_array() || x.empty()) {
               c.fail(p, "expected a non-empty array of \"SHA-256\", \"MD5\", \"SHA-512-256\", got " +
                             describe(x));
               return;
             }
             std::vector<std::string> out;
             for (size_t i = 0; i < x.size(); ++i) {
               auto s = c.choice(x[i], index_path(p, i), {"SHA-256", "MD5", "SHA-512-256"});
               if (!s) continue;
               if (std::find(out.begin(), out.end(), *s) != out.end())
                 c.fail(index_path(p, i), "\"" + *s + "\" is listed twice");
               else
                 out.push_back(*s);
             }
             a.algorithms = std::move(out);
           }},
      });
  if (walked && !users_file_given && a.realm.empty())
    c.fail(child_path(path, "realm"), "required when there is no users_file");
}

// Config "security" (docs/security.md): trusted networks and flood protection.
void read_security(Checker& c, const Json& v, const std::string& path, SecurityConfig& s) {
  c.walk(v, path,
         {
             {"trusted",
              [&](const Json& x, const std::string& p) {
                if (!x.is_array()) {
                  c.fail(p, "expected an array of networks (\"192.0.2.0/24\", \"2001:db8::/32\", "
                            "\"198.51.100.7\"), got " + describe(x));
                  return;
                }
                std::vector<Cidr> nets;
                for (size_t i = 0; i < x.size(); ++i) {
                  std::string why;
                  std::optional<Cidr> n;
                  if (x[i].is_string()) n = parse_cidr(x[i].get_ref<const std::string&>(), &why);
                  else why = "expected a network as a string";
                  if (!n) {
                    c.fail(index_path(p, i), why + ", got " + describe(x[i]));
                  } else if (std::find(nets.begin(), nets.end(), *n) == nets.end()) {
                    nets.push_back(*n);
                  }
                }
                s.trusted = CidrSet(std::move(nets));
              }},
             {"rate_limit",
              [&](const Json& x, const std::string& p) {
                c.walk(x, p,
                       {
                           {"enabled", [&](const Json& y, const std::string& q) { c.boolean_into(y, q, s.rate_limit); }},
                           {"rate_per_s",
                            [&](const Json& y, const std::string& q) { c.integer_into(y, q, 1, 1000000, s.rate_per_s); }},
                           {"burst",
                            [&](const Json& y, const std::string& q) { c.integer_into(y, q, 1, 1000000, s.burst); }},
                           {"block_after",
                            [&](const Json& y, const std::string& q) { c.integer_into(y, q, 0, 100000000, s.block_after); }},
                           {"block_s",
                            [&](const Json& y, const std::string& q) { c.integer_into(y, q, 1, 86400, s.block_s); }},
                           {"table_size",
                            [&](const Json& y, const std::string& q) { c.integer_into(y, q, 16, 16777216, s.table_size); }},
                       });
              }},
             {"max_connections_per_source",
              [&](const Json& x, const std::string& p) {
                c.integer_into(x, p, 0, 1000000, s.max_connections_per_source);
              }},
         });
}

// Config "tls" (docs/configuration.md): files, protocol floor, who gets verified.
void read_tls(Checker& c, const Json& v, const std::string& path, TlsConfig& t) {
  t.enabled = true;
  c.walk(v, path,
         {
             {"certificate",
              [&](const Json& x, const std::string& p) {
                if (auto s = c.path_string(x, p)) t.certificate = *s;
              },
              true},
             {"private_key",
              [&](const Json& x, const std::string& p) {
                if (auto s = c.path_string(x, p)) t.private_key = *s;
              },
              true},
             {"ca_file",
              [&](const Json& x, const std::string& p) {
                if (auto s = c.path_string(x, p)) t.ca_file = *s;
              }},
             {"min_version",
              [&](const Json& x, const std::string& p) {
                if (auto s = c.choice(x, p, {"1.2", "1.3"})) t.min_version = *s;
              }},
             {"verify_client", [&](const Json& x, const std::string& p) { c.boolean_into(x, p, t.verify_client); }},
             {"verify_server", [&](const Json& x, const std::string& p) { c.boolean_into(x, p, t.verify_server); }},
         });
}

// "none", "auto" or a non-empty array of CPU numbers.
void read_cpu_affinity(Checker& c, const Json& v, const std::string& path, CpuAffinityConfig& out) {
  if (v.is_string()) {
    if (auto s = c.choice(v, path, {"none", "auto"})) out = CpuAffinityConfig{*s, {}};
    return;
  }
  if (!v.is_array() || v.empty()) {
    c.fail(path, "expected \"none\", \"auto\" or a non-empty array of CPU numbers, got " + describe(v));
    return;
  }
  CpuAffinityConfig list{"list", {}};
  for (size_t i = 0; i < v.size(); ++i)
    if (auto n = c.integer(v[i], index_path(path, i), 0, kMaxCpu)) list.cpus.push_back(static_cast<uint32_t>(*n));
  if (list.cpus.size() == v.size()) out = std::move(list);
}

void read_root(Checker& c, const Json& root, Draft& d) {
  Config& cfg = d.config;
  c.walk(root, "",
         {
             {"workers",
              [&](const Json& x, const std::string& p) { c.integer_into(x, p, 0, kMaxWorkers, cfg.workers); }},
             {"dispatch",
              [&](const Json& x, const std::string& p) {
                if (auto s = c.choice(x, p, {"source", "transaction"})) cfg.dispatch = *s;
              }},
             {"scheduling",
              [&](const Json& x, const std::string& p) {
                if (auto s = c.choice(x, p, {"batch", "normal"})) cfg.scheduling = *s;
              }},
             {"cpu_affinity",
              [&](const Json& x, const std::string& p) { read_cpu_affinity(c, x, p, cfg.cpu_affinity); }},
             {"listen", [&](const Json& x, const std::string& p) { read_listen(c, x, p, cfg); }},
             {"domains", [&](const Json& x, const std::string& p) { read_domains(c, x, p, cfg); }},
             {"timers", [&](const Json& x, const std::string& p) { read_timers(c, x, p, cfg.timers); }},
             {"limits", [&](const Json& x, const std::string& p) { read_limits(c, x, p, cfg.limits); }},
             {"registrar",
              [&](const Json& x, const std::string& p) { read_registrar(c, x, p, cfg.registrar); }},
             {"location", [&](const Json& x, const std::string& p) { read_location(c, x, p, d); }},
             {"script", [&](const Json& x, const std::string& p) { read_script(c, x, p, d); }},
             {"logging", [&](const Json& x, const std::string& p) { read_logging(c, x, p, cfg.logging); }},
             {"dns", [&](const Json& x, const std::string& p) { read_dns(c, x, p, cfg.dns); }},
             {"admin", [&](const Json& x, const std::string& p) { read_admin(c, x, p, cfg.admin); }},
             {"auth", [&](const Json& x, const std::string& p) { read_auth(c, x, p, d); }},
             {"tls", [&](const Json& x, const std::string& p) { read_tls(c, x, p, cfg.tls); }},
             {"security", [&](const Json& x, const std::string& p) { read_security(c, x, p, cfg.security); }},
         },
         // Keys later features add; named so the error says "not yet" rather than "typo".
         {"redis"});
  // A TLS listener needs a certificate.
  if (!cfg.tls.enabled)
    for (size_t i = 0; i < cfg.listen.size(); ++i)
      if (cfg.listen[i].transport == "tls") {
        c.fail("tls", "required by the tls listener on " +
                          Endpoint::parse(cfg.listen[i].address, cfg.listen[i].port)->to_string() +
                          " (certificate, private_key)");
        break;
      }
}

// ---- syntax ---------------------------------------------------------------------------------

// "FILE:LINE:COLUMN: " for the byte at `offset` (0-based); columns count UTF-8 characters.
std::string position(std::string_view text, const std::string& source, size_t offset) {
  offset = std::min(offset, text.size());
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    unsigned char ch = static_cast<unsigned char>(text[i]);
    if (ch == '\n') {
      ++line;
      column = 1;
    } else if ((ch & 0xC0) != 0x80) {
      ++column;
    }
  }
  return source + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
}

// nlohmann's what() without its "[json.exception...] parse error at line L, column C: "
// prefix; we print our own position.
std::string parse_message(const char* what) {
  std::string_view w(what);
  if (w.starts_with("[json.exception.")) {
    size_t close = w.find("] ");
    if (close != std::string_view::npos) w.remove_prefix(close + 2);
  }
  if (w.starts_with("parse error")) {
    size_t colon = w.find(": ");
    if (colon != std::string_view::npos) w.remove_prefix(colon + 2);
  }
  return std::string(w);
}

// Tracks the key path while nlohmann parses, to report repeated keys: the JSON grammar allows
// them and the parser silently keeps the last, which hides a fault in a config file.
class DuplicateKeys {
 public:
  explicit DuplicateKeys(std::vector<std::string>& errors) : errors_(errors) {}

  bool on_event(nlohmann::detail::parse_event_t ev, const Json& parsed) {
    using E = nlohmann::detail::parse_event_t;
    switch (ev) {
      case E::object_start:
      case E::array_start: {
        std::string path = stack_.empty() ? std::string() : element_path();
        stack_.push_back(Frame{ev == E::array_start, 0, std::move(path), {}, {}});
        break;
      }
      case E::object_end:
      case E::array_end:
        if (!stack_.empty()) stack_.pop_back();
        break;
      case E::key:
        if (!stack_.empty() && parsed.is_string()) {
          Frame& f = stack_.back();
          f.last_key = parsed.get<std::string>();
          if (!f.keys.insert(f.last_key).second)
            errors_.push_back(shown_path(child_path(f.path, f.last_key)) +
                              ": duplicate key; only one value per key is allowed");
        }
        break;
      case E::value:
        if (!stack_.empty() && stack_.back().array) ++stack_.back().next_index;
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool array;
    size_t next_index;
    std::string path;
    std::string last_key;
    std::unordered_set<std::string> keys;
  };

  // The path of the value that starts now inside the innermost container.
  std::string element_path() {
    Frame& f = stack_.back();
    if (f.array) return index_path(f.path, f.next_index++);
    return child_path(f.path, f.last_key);
  }

  std::vector<std::string>& errors_;
  std::vector<Frame> stack_;
};

ConfigLoad parse_and_check(std::string_view text, const std::string& base_dir,
                           const std::string& source) {
  ConfigLoad out;
  Json root;
  try {
    DuplicateKeys dups(out.errors);
    root = Json::parse(
        text.begin(), text.end(),
        [&dups](int, nlohmann::detail::parse_event_t ev, Json& parsed) { return dups.on_event(ev, parsed); });
  } catch (const Json::parse_error& e) {
    out.errors.clear();  // a broken document makes key paths meaningless
    size_t offset = e.byte > 0 ? e.byte - 1 : 0;  // nlohmann counts the offending byte 1-based
    out.errors.push_back(position(text, source, offset) + parse_message(e.what()));
    return out;
  } catch (const Json::exception& e) {
    // e.g. "number overflow parsing '1e999'": no offset given, so find the literal.
    out.errors.clear();
    std::string msg = parse_message(e.what());
    size_t q1 = msg.find('\''), q2 = msg.rfind('\'');
    size_t at = std::string_view::npos;
    if (q1 != std::string::npos && q2 > q1 + 1) at = text.find(msg.substr(q1 + 1, q2 - q1 - 1));
    out.errors.push_back((at != std::string_view::npos ? position(text, source, at) : source + ": ") + msg);
    return out;
  }

  Draft d = defaults();
  Checker c(out.errors);
  read_root(c, root, d);
  if (!out.errors.empty()) return out;

  d.config.location.sqlite_path = resolve_path(base_dir, d.sqlite_path);
  d.config.script.path = resolve_path(base_dir, d.script_path);
  if (!d.users_file.empty()) d.config.auth.users_file = resolve_path(base_dir, d.users_file);
  if (d.config.tls.enabled) {
    TlsConfig& t = d.config.tls;
    for (auto [key, file] : {std::pair<const char*, std::string*>{"tls.certificate", &t.certificate},
                             {"tls.private_key", &t.private_key},
                             {"tls.ca_file", &t.ca_file}}) {
      if (file->empty()) continue;
      *file = resolve_path(base_dir, *file);
      if (::access(file->c_str(), R_OK) != 0)
        out.errors.push_back(std::string(key) + ": cannot read " + *file + ": " + std::strerror(errno));
    }
    if (!out.errors.empty()) return out;
  }
  d.config.source = source;
  out.config = std::make_shared<const Config>(std::move(d.config));
  return out;
}

}  // namespace

uint32_t Config::worker_count() const {
  if (workers != 0) return workers;
  unsigned n = std::thread::hardware_concurrency();
  // Capped like an explicit value, so a large machine does not get more than we test.
  return std::clamp<uint32_t>(n, 1, kMaxWorkers);
}

bool Config::is_local_domain(std::string_view host) const {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.find('\0') != std::string_view::npos) return false;
  if (host.find(':') != std::string_view::npos) {
    // IPv6: compare addresses, not spellings ("::1" and "0::1" are one host).
    auto ep = Endpoint::parse(host, 0);
    if (!ep) return false;
    std::string canonical = ep->ip();
    for (const auto& d : domains)
      if (d == canonical) return true;
    return false;
  }
  for (const auto& d : domains)
    if (iequals(d, host)) return true;
  return false;
}

ConfigLoad parse_config(std::string_view json_text, const std::string& base_dir,
                        const std::string& source_name) {
  // Exceptions stay inside: callers get errors as values.
  try {
    return parse_and_check(json_text, base_dir, source_name);
  } catch (const std::exception& e) {
    ConfigLoad out;
    out.errors.push_back(source_name + ": internal error while loading: " + e.what());
    return out;
  } catch (...) {
    ConfigLoad out;
    out.errors.push_back(source_name + ": internal error while loading");
    return out;
  }
}

ConfigLoad load_config_file(const std::string& path) {
  try {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return ConfigLoad{nullptr, {path + ": cannot open: " + std::strerror(errno)}};
    std::string text;
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    int read_errno = std::ferror(f) ? errno : 0;
    std::fclose(f);
    if (read_errno != 0)
      return ConfigLoad{nullptr, {path + ": cannot read: " + std::strerror(read_errno)}};

    // Absolute, so paths in the snapshot stay right if the process changes directory.
    std::error_code ec;
    std::filesystem::path abs = std::filesystem::absolute(path, ec);
    if (ec) abs = path;
    return parse_config(text, abs.parent_path().string(), path);
  } catch (const std::exception& e) {
    return ConfigLoad{nullptr, {path + ": cannot read: " + e.what()}};
  }
}

std::string_view embedded_default_config() {
  return {embedded::switchboard_json, embedded::switchboard_json_size};
}

ConfigLoad load_default_config() {
  std::error_code ec;
  std::filesystem::path cwd = std::filesystem::current_path(ec);
  if (ec) return ConfigLoad{nullptr, {std::string(kEmbeddedName) + ": cannot get the current directory: " + ec.message()}};
  return parse_config(embedded_default_config(), (cwd / "etc").string(), kEmbeddedName);
}

}  // namespace sb::core
