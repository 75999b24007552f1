#include "core/config.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "core/log.h"

namespace sb::core {
namespace {

namespace fs = std::filesystem;

const std::string kBase = "/srv/sb/etc";

ConfigLoad parse(std::string_view text) { return parse_config(text, kBase, "test.json"); }

// The one error `text` must produce.
std::string only_error(std::string_view text) {
  ConfigLoad r = parse(text);
  CHECK_FALSE(r.ok());
  REQUIRE_MESSAGE(r.errors.size() == 1, "errors: " << r.errors.size()
                                                    << (r.errors.empty() ? "" : " first: " + r.errors[0]));
  return r.errors[0];
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A scratch directory of our own, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("sb_config_test_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  void write(const std::string& rel, const std::string& text) const {
    fs::create_directories((path / rel).parent_path());
    std::ofstream(path / rel, std::ios::binary) << text;
  }
};

TEST_CASE("config: auth") {
  ConfigLoad r = parse(R"({})");
  REQUIRE(r.ok());
  CHECK_FALSE(r.config->auth.enabled);

  r = parse(R"({"auth": {"users_file": "users.json"}})");
  REQUIRE(r.ok());
  const AuthConfig& a = r.config->auth;
  CHECK(a.enabled);
  CHECK(a.users_file == "/srv/sb/etc/users.json");  // resolved like the other paths
  CHECK(a.realm.empty());
  CHECK(a.nonce_ttl_s == 300);
  CHECK(a.secret.empty());
  CHECK(a.algorithms == std::vector<std::string>{"SHA-256", "MD5"});

  r = parse(R"({"auth": {"users_file": "/abs/u.json", "realm": "example.com", "nonce_ttl_s": 30,
                         "secret": "0123456789abcdef0123", "algorithms": ["SHA-512-256", "MD5"]}})");
  REQUIRE(r.ok());
  CHECK(r.config->auth.users_file == "/abs/u.json");
  CHECK(r.config->auth.realm == "example.com");
  CHECK(r.config->auth.nonce_ttl_s == 30);
  CHECK(r.config->auth.secret == "0123456789abcdef0123");
  CHECK(r.config->auth.algorithms == std::vector<std::string>{"SHA-512-256", "MD5"});

  // Without a users file (scripts give the HA1s) the realm must be named.
  CHECK(parse(R"({"auth": {"realm": "example.com"}})").ok());
  CHECK(only_error(R"({"auth": {}})") == "auth.realm: required when there is no users_file");
  CHECK(only_error(R"({"auth": {"users_file": "u.json", "realm": "a\"b"}})").rfind(
            "auth.realm: expected a non-empty string without quotes", 0) == 0);
  CHECK(only_error(R"({"auth": {"realm": "x", "nonce_ttl_s": 0}})") ==
        "auth.nonce_ttl_s: expected an integer from 1 to 86400, got 0");
  CHECK(only_error(R"({"auth": {"realm": "x", "secret": "short"}})").rfind(
            "auth.secret: expected a string of at least 16 characters", 0) == 0);
  CHECK(only_error(R"({"auth": {"realm": "x", "algorithms": []}})").rfind("auth.algorithms: expected a non-empty array", 0) == 0);
  CHECK(only_error(R"({"auth": {"realm": "x", "algorithms": ["SHA-1"]}})") ==
        R"(auth.algorithms[0]: expected "SHA-256", "MD5" or "SHA-512-256", got "SHA-1")");
  CHECK(only_error(R"({"auth": {"realm": "x", "algorithms": ["MD5", "MD5"]}})") ==
        R"(auth.algorithms[1]: "MD5" is listed twice)");
  CHECK(only_error(R"({"auth": {"realm": "x", "users": "u.json"}})").rfind("auth.users: unknown key", 0) == 0);
  CHECK(only_error(R"({"auth": {"users_file": ""}})") == R"(auth.users_file: expected a non-empty file path, got "")");
}

}  // namespace

TEST_CASE("config: the shipped etc/switchboard.json is the embedded default") {
  const std::string file = std::string(SB_SOURCE_DIR) + "/etc/switchboard.json";
  CHECK(slurp(file) == embedded_default_config());

  ConfigLoad from_file = load_config_file(file);
  REQUIRE_MESSAGE(from_file.ok(), (from_file.errors.empty() ? "" : from_file.errors[0]));
  CHECK(from_file.config->source == file);

  const std::string dir = fs::path(file).parent_path().string();
  ConfigLoad embedded = parse_config(embedded_default_config(), dir, file);
  REQUIRE(embedded.ok());
  CHECK(*embedded.config == *from_file.config);
}

TEST_CASE("config: an empty object means the shipped defaults") {
  // The defaults live in two places (the struct/code and etc/switchboard.json); keep them equal.
  ConfigLoad empty = parse("{}");
  ConfigLoad shipped = parse(embedded_default_config());
  REQUIRE(empty.ok());
  REQUIRE(shipped.ok());
  CHECK(*empty.config == *shipped.config);

  const Config& c = *empty.config;
  CHECK(c.workers == 0);
  REQUIRE(c.listen.size() == 4);
  CHECK(c.listen[0] == ListenerConfig{"udp", "127.0.0.1", 5060, ""});
  CHECK(c.listen[3] == ListenerConfig{"tcp", "::1", 5060, ""});
  CHECK(c.domains == std::vector<std::string>{"localhost", "127.0.0.1", "::1"});
  CHECK(c.timers == TimersConfig{500, 4000, 5000, 185000});
  CHECK(c.limits == LimitsConfig{65535, 256, 100000, 65536, 900, 10000});
  CHECK(c.registrar == RegistrarConfig{60, 7200, 3600, 10, 1000000, false});
  CHECK(c.location == LocationConfig{"sqlite", "/srv/sb/var/location.db", 1000, 100000, {}});
  CHECK(c.script == ScriptConfig{"/srv/sb/scripts/default.lua", 1000000});
  CHECK(c.logging == LoggingConfig{"info", false});
  CHECK(c.dns == DnsConfig{{}, 2000, 2, 3600, 30, 30, false});
  CHECK(c.source == "test.json");
}

TEST_CASE("config: the embedded default resolves paths as if in <cwd>/etc") {
  ConfigLoad r = load_default_config();
  REQUIRE(r.ok());
  CHECK(r.config->source == "<embedded default>");
  const fs::path cwd = fs::current_path();
  CHECK(r.config->script.path == (cwd / "scripts/default.lua").lexically_normal().string());
  CHECK(r.config->location.sqlite_path == (cwd / "var/location.db").lexically_normal().string());
}

TEST_CASE("config: every value can be set") {
  ConfigLoad r = parse(R"({
    "workers": 2,
    "listen": [
      {"transport": "tcp", "address": "[::1]", "port": 5070, "advertise": "SIP.Example.COM"},
      {"transport": "UDP", "address": "0.0.0.0", "advertise": "[2001:DB8::1]"}
    ],
    "domains": ["Example.COM", "[::1]", "example.com"],
    "timers": {"t1_ms": 100, "t2_ms": 100, "t4_ms": 200, "timer_c_ms": 1000},
    "limits": {"max_message_bytes": 1024, "max_headers": 16, "max_transactions": 1,
               "queue_capacity": 16, "tcp_idle_timeout_s": 1, "max_connections": 1},
    "registrar": {"min_expires": 0, "max_expires": 0, "default_expires": 0,
                  "max_bindings_per_aor": 1000, "max_aors": 1, "foreign_domain": "proxy"},
    "location": {"backend": "memory", "sqlite": {"path": "/var/lib/sb/loc.db", "batch_ms": 1, "queue_capacity": 1}},
    "script": {"path": "route.lua", "max_instructions": 1e9},
    "logging": {"level": "debug", "format": "json"},
    "dns": {"servers": ["127.0.0.1:5353", "[::1]"], "timeout_ms": 10, "tries": 10, "max_ttl_s": 0,
            "negative_ttl_s": 86400, "greylist_s": 0, "prefer_ipv6": true}
  })");
  REQUIRE_MESSAGE(r.ok(), (r.errors.empty() ? "" : r.errors[0]));
  const Config& c = *r.config;
  CHECK(c.workers == 2);
  CHECK(c.worker_count() == 2);
  REQUIRE(c.listen.size() == 2);
  CHECK(c.listen[0] == ListenerConfig{"tcp", "::1", 5070, "sip.example.com"});
  CHECK(c.listen[1] == ListenerConfig{"udp", "0.0.0.0", 5060, "2001:db8::1"});
  CHECK(c.domains == std::vector<std::string>{"example.com", "::1"});  // repeats dropped
  CHECK(c.timers == TimersConfig{100, 100, 200, 1000});
  CHECK(c.limits == LimitsConfig{1024, 16, 1, 16, 1, 1});
  CHECK(c.registrar == RegistrarConfig{0, 0, 0, 1000, 1, true});
  CHECK(c.location == LocationConfig{"memory", "/var/lib/sb/loc.db", 1, 1, {}});
  CHECK(c.script == ScriptConfig{"/srv/sb/etc/route.lua", 1000000000});
  CHECK(c.logging == LoggingConfig{"debug", true});
  CHECK(c.dns == DnsConfig{{"127.0.0.1:5353", "[::1]:53"}, 10, 10, 0, 86400, 0, true});
}

TEST_CASE("config: unknown keys are named by path") {
  CHECK(only_error(R"({"wrkers": 2})") ==
        "wrkers: unknown key; expected one of workers, dispatch, scheduling, cpu_affinity, listen, domains, timers, limits, registrar, "
        "location, script, logging, dns, admin, auth, tls, security (did you mean \"workers\"?)");
  CHECK(only_error(R"({"timers": {"t2": 1}})") ==
        "timers.t2: unknown key; expected one of t1_ms, t2_ms, t4_ms, timer_c_ms, trying_delay_ms "
        "(did you mean \"t2_ms\"?)");
  CHECK(only_error(R"({"location": {"sqlite": {"file": "x.db"}}})") ==
        "location.sqlite.file: unknown key; expected one of path, batch_ms, queue_capacity");
  CHECK(only_error(R"({"listen": [{"transport": "udp", "address": "::", "prot": 5060}]})") ==
        "listen[0].prot: unknown key; expected one of transport, address, port, advertise, symmetric "
        "(did you mean \"port\"?)");
  // A key that would make the path ambiguous is quoted.
  CHECK(only_error(R"({"logging": {"a.b": 1}})") ==
        "logging[\"a.b\"]: unknown key; expected one of level, format");
}

TEST_CASE("config: admin section") {
  auto r = sb::core::parse_config(R"({"admin": {"enabled": false, "address": "[::1]", "port": 0}})", "/tmp", "t");
  REQUIRE(r.ok());
  CHECK_FALSE(r.config->admin.enabled);
  CHECK(r.config->admin.address == "::1");
  CHECK(r.config->admin.port == 0);
  CHECK(only_error(R"({"admin": {"address": "localhost"}})").rfind("admin.address: expected an IPv4 or IPv6", 0) == 0);
  CHECK(only_error(R"({"admin": {"port": 70000}})").rfind("admin.port:", 0) == 0);
}

TEST_CASE("config: keys of later features say not yet") {
  for (const char* key : {"redis"}) {
    CAPTURE(key);
    CHECK(only_error(std::string("{\"") + key + "\": {}}") ==
          std::string(key) + ": not supported yet (a later release adds it); remove this key");
  }
}

TEST_CASE("config: wrong types") {
  CHECK(only_error(R"({"workers": "4"})") == R"(workers: expected an integer from 0 to 64, got "4")");
  CHECK(only_error(R"({"workers": 1.5})") == "workers: expected an integer from 0 to 64, got 1.5");
  CHECK(only_error(R"({"workers": true})") == "workers: expected an integer from 0 to 64, got true");
  CHECK(only_error(R"({"timers": []})") == "timers: expected an object, got []");
  CHECK(only_error(R"({"listen": [5060]})") == "listen[0]: expected an object, got 5060");
  CHECK(only_error(R"({"domains": "example.com"})") ==
        R"(domains: expected a non-empty array of host names or IP addresses, got "example.com")");
  CHECK(only_error(R"({"script": {"path": ""}})") ==
        R"(script.path: expected a non-empty file path, got "")");
  CHECK(only_error(R"({"location": {"sqlite": {"path": null}}})") ==
        "location.sqlite.path: expected a non-empty file path, got null");
  CHECK(only_error("[]") == "(top level): expected an object, got []");
}

TEST_CASE("config: out of range") {
  CHECK(only_error(R"({"listen": [{"transport": "udp", "address": "127.0.0.1", "port": 70000}]})") ==
        "listen[0].port: expected an integer from 1 to 65535, got 70000");
  CHECK(only_error(R"({"listen": [{"transport": "udp", "address": "127.0.0.1", "port": 0}]})") ==
        "listen[0].port: expected an integer from 1 to 65535, got 0");
  CHECK(only_error(R"({"workers": 65})") == "workers: expected an integer from 0 to 64, got 65");
  CHECK(only_error(R"({"workers": -1})") == "workers: expected an integer from 0 to 64, got -1");
  CHECK(only_error(R"({"workers": 18446744073709551615})") ==
        "workers: expected an integer from 0 to 64, got 18446744073709551615");
  CHECK(only_error(R"({"timers": {"timer_c_ms": 999}})") ==
        "timers.timer_c_ms: expected an integer from 1000 to 3600000, got 999");
  CHECK(parse(R"({"dispatch": "transaction"})").config->dispatch == "transaction");
  CHECK(parse("{}").config->dispatch == "source");
  CHECK(only_error(R"({"dispatch": "random"})").rfind("dispatch: expected ", 0) == 0);
  CHECK(parse("{}").config->scheduling == "batch");
  CHECK(parse(R"({"scheduling": "normal"})").config->scheduling == "normal");
  CHECK(only_error(R"({"scheduling": "fifo"})") ==
        "scheduling: expected \"batch\" or \"normal\", got \"fifo\"");
  CHECK(parse("{}").config->cpu_affinity == CpuAffinityConfig{"none", {}});
  CHECK(parse(R"({"cpu_affinity": "auto"})").config->cpu_affinity == CpuAffinityConfig{"auto", {}});
  CHECK(parse(R"({"cpu_affinity": [1, 0, 1]})").config->cpu_affinity == CpuAffinityConfig{"list", {1, 0, 1}});
  CHECK(only_error(R"({"cpu_affinity": "all"})") ==
        "cpu_affinity: expected \"none\" or \"auto\", got \"all\"");
  CHECK(only_error(R"({"cpu_affinity": []})") ==
        "cpu_affinity: expected \"none\", \"auto\" or a non-empty array of CPU numbers, got []");
  CHECK(only_error(R"({"cpu_affinity": [0, -1]})") ==
        "cpu_affinity[1]: expected an integer from 0 to 1023, got -1");
  CHECK(only_error(R"({"cpu_affinity": 2})").rfind("cpu_affinity: expected ", 0) == 0);
  // RFC 3261 §17.2.1 allows leaving the 100 out only for answers within 200 ms.
  CHECK(only_error(R"({"timers": {"trying_delay_ms": 201}})") ==
        "timers.trying_delay_ms: expected an integer from 0 to 200, got 201");
  CHECK(parse(R"({"timers": {"trying_delay_ms": 0}})").config->timers.trying_delay_ms == 0);
  CHECK(parse("{}").config->timers.trying_delay_ms == 200);
  CHECK(only_error(R"({"limits": {"max_headers": 8}})") ==
        "limits.max_headers: expected an integer from 16 to 4096, got 8");
  CHECK(only_error(R"({"script": {"max_instructions": 999}})") ==
        "script.max_instructions: expected an integer from 1000 to 1000000000, got 999");
  CHECK(only_error(R"({"registrar": {"max_aors": 0}})") ==
        "registrar.max_aors: expected an integer from 1 to 100000000, got 0");
}

TEST_CASE("config: bad enum values") {
  CHECK(only_error(R"({"logging": {"level": "verbose"}})") ==
        R"(logging.level: expected "debug", "info", "warn", "error" or "off", got "verbose")");
  CHECK(only_error(R"({"logging": {"format": "JSON"}})") ==
        R"(logging.format: expected "text" or "json", got "JSON")");
  CHECK(only_error(R"({"registrar": {"foreign_domain": "accept"}})") ==
        R"(registrar.foreign_domain: expected "refuse" or "proxy", got "accept")");
  CHECK(only_error(R"({"location": {"backend": "mysql"}})") ==
        R"(location.backend: expected "sqlite", "memory" or "redis", got "mysql")");
  CHECK(only_error(R"({"listen": [{"transport": "sctp", "address": "::1"}]})") ==
        R"(listen[0].transport: expected "udp", "tcp" or "tls", got "sctp")");
  CHECK(only_error(R"({"listen": [{"transport": "tls", "address": "::1"}]})") ==
        R"(tls: required by the tls listener on [::1]:5061 (certificate, private_key))");
  CHECK(only_error(R"({"listen": [{"transport": "ws", "address": "::1"}]})") ==
        R"(listen[0].transport: "ws" is not supported yet; expected "udp", "tcp" or "tls")");
}

TEST_CASE("config: listeners") {
  SUBCASE("empty") {
    CHECK(only_error(R"({"listen": []})") == "listen: expected a non-empty array of listeners, got []");
  }
  SUBCASE("bad address") {
    CHECK(only_error(R"({"listen": [{"transport": "udp", "address": "localhost"}]})") ==
          "listen[0].address: expected an IPv4 or IPv6 address literal (0.0.0.0 or :: for all), "
          "got \"localhost\"");
    CHECK(only_error(R"({"listen": [{"transport": "udp", "address": "127.0.0.256"}]})").starts_with(
        "listen[0].address: expected an IPv4 or IPv6 address literal"));
  }
  SUBCASE("required keys") {
    ConfigLoad r = parse(R"({"listen": [{"port": 5060}]})");
    CHECK(r.errors == std::vector<std::string>{"listen[0].transport: required key is missing",
                                               "listen[0].address: required key is missing"});
  }
  SUBCASE("duplicate, also when spelled differently") {
    CHECK(only_error(R"({"listen": [
            {"transport": "udp", "address": "::1", "port": 5060},
            {"transport": "tcp", "address": "::1", "port": 5060},
            {"transport": "udp", "address": "[0:0::1]"}]})") ==
          "listen[2]: duplicate listener: udp [::1]:5060 is already listen[0]");
  }
  SUBCASE("same address, other port or transport, is fine") {
    ConfigLoad r = parse(R"({"listen": [
            {"transport": "udp", "address": "127.0.0.1", "port": 5060},
            {"transport": "udp", "address": "127.0.0.1", "port": 5080},
            {"transport": "tcp", "address": "127.0.0.1", "port": 5060}]})");
    CHECK(r.ok());
  }
  SUBCASE("advertise") {
    CHECK(only_error(R"({"listen": [{"transport": "udp", "address": "::1", "advertise": ""}]})") ==
          R"(listen[0].advertise: expected a host name or IP address, got "")");
    CHECK(only_error(R"({"listen": [{"transport": "udp", "address": "::1", "advertise": "a b"}]})") ==
          R"(listen[0].advertise: expected a host name or IP address, got "a b")");
  }
}

TEST_CASE("config: domains") {
  CHECK(only_error(R"({"domains": []})") ==
        "domains: expected a non-empty array of host names or IP addresses, got []");
  CHECK(only_error(R"({"domains": ["example.com", ""]})") ==
        R"(domains[1]: expected a host name or IP address, got "")");
  CHECK(only_error(R"({"domains": ["[::1"]})") ==
        R"(domains[0]: expected a host name or IP address, got "[::1")");
  CHECK(only_error(R"({"domains": ["example..com"]})") ==
        R"(domains[0]: expected a host name or IP address, got "example..com")");
  CHECK(only_error(R"({"domains": ["example.com:5060"]})") ==
        R"(domains[0]: expected a host name or IP address, got "example.com:5060")");
  CHECK(only_error(R"({"domains": [7]})") == "domains[0]: expected a host name or IP address, got 7");
  CHECK(only_error(R"({"domains": ["::1\u0000x"]})").starts_with("domains[0]: expected a host name"));
  CHECK(only_error(R"({"listen": [{"transport": "udp", "address": "::1\u0000x"}]})")
            .starts_with("listen[0].address: expected an IPv4 or IPv6 address literal"));
}

TEST_CASE("config: timers and registrar cross-checks") {
  CHECK(only_error(R"({"timers": {"t1_ms": 1000, "t2_ms": 500}})") ==
        "timers.t2_ms: must be at least t1_ms (1000), got 500");
  // Against the default T1 (500) when only T2 is given.
  CHECK(only_error(R"({"timers": {"t2_ms": 400}})") ==
        "timers.t2_ms: must be at least t1_ms (500), got 400");
  // A faulty T1 is reported once, not again as a cross-check.
  CHECK(only_error(R"({"timers": {"t1_ms": 0, "t2_ms": 400}})") ==
        "timers.t1_ms: expected an integer from 1 to 60000, got 0");

  CHECK(only_error(R"({"registrar": {"min_expires": 600, "max_expires": 300}})") ==
        "registrar.max_expires: must be at least min_expires (600), got 300");
  CHECK(only_error(R"({"registrar": {"default_expires": 30}})") ==
        "registrar.default_expires: must be between min_expires and max_expires (60 to 7200), got 30");
  CHECK(only_error(R"({"registrar": {"max_expires": 3000}})") ==
        "registrar.default_expires: must be between min_expires and max_expires (60 to 3000), got 3600");
}

TEST_CASE("config: repeated keys are faults") {
  CHECK(only_error(R"({"workers": 1, "workers": 2})") ==
        "workers: duplicate key; only one value per key is allowed");
  CHECK(only_error(R"({"listen": [{"transport": "udp", "address": "::1"},
                                  {"transport": "udp", "address": "::1", "port": 1, "port": 2}]})") ==
        "listen[1].port: duplicate key; only one value per key is allowed");
}

TEST_CASE("config: all faults are reported together, in file order") {
  ConfigLoad r = parse(R"({
    "workers": "many",
    "listen": [{"transport": "udp", "address": "127.0.0.1", "port": 5060},
               {"transport": "udp", "address": "127.0.0.1", "port": "abc"}],
    "timers": {"t2": 1},
    "logging": {"level": "loud"},
    "bogus": 1
  })");
  CHECK_FALSE(r.ok());
  CHECK(r.config == nullptr);
  REQUIRE(r.errors.size() == 5);
  CHECK(r.errors[0] == R"(workers: expected an integer from 0 to 64, got "many")");
  CHECK(r.errors[1] == R"(listen[1].port: expected an integer from 1 to 65535, got "abc")");
  CHECK(r.errors[2].starts_with("timers.t2: unknown key"));
  CHECK(r.errors[3].starts_with("logging.level: expected"));
  CHECK(r.errors[4].starts_with("bogus: unknown key"));
}

TEST_CASE("config: syntax errors give FILE:LINE:COLUMN") {
  SUBCASE("bad token") {
    std::string e = only_error("{\n  \"workers\": 1,\n  x\n}");
    CHECK(e.starts_with("test.json:3:3: syntax error"));
    CHECK(e.find("[json.exception") == std::string::npos);
  }
  SUBCASE("columns count characters, not bytes") {
    CHECK(only_error("{\"domains\": [\"\xc3\xa9\xc3\xa9\" x]}").starts_with("test.json:1:19: "));
  }
  SUBCASE("unexpected end") {
    CHECK(only_error("{\n  \"workers\": 1,\n").starts_with("test.json:3:1: syntax error"));
    CHECK(only_error("").starts_with("test.json:1:1: syntax error"));
  }
  SUBCASE("trailing garbage") {
    CHECK(only_error("{}\n}").starts_with("test.json:2:1: "));
  }
  SUBCASE("number too large for a double") {
    CHECK(only_error("{\n  \"workers\": 1e999\n}") ==
          "test.json:2:14: number overflow parsing '1e999'");
  }
}

TEST_CASE("config: relative paths resolve against the config file's directory") {
  ConfigLoad r = parse(R"({"script": {"path": "scripts/r.lua"},
                            "location": {"sqlite": {"path": "../data/./loc.db"}}})");
  REQUIRE(r.ok());
  CHECK(r.config->script.path == "/srv/sb/etc/scripts/r.lua");
  CHECK(r.config->location.sqlite_path == "/srv/sb/data/loc.db");

  ConfigLoad abs = parse(R"({"script": {"path": "/opt/r.lua"}})");
  REQUIRE(abs.ok());
  CHECK(abs.config->script.path == "/opt/r.lua");

  TempDir tmp;
  tmp.write("conf/sb.json", R"({"script": {"path": "r.lua"}})");
  const std::string file = (tmp.path / "conf/sb.json").string();
  ConfigLoad f = load_config_file(file);
  REQUIRE_MESSAGE(f.ok(), (f.errors.empty() ? "" : f.errors[0]));
  CHECK(f.config->script.path == (tmp.path / "conf/r.lua").string());
  CHECK(f.config->location.sqlite_path == (tmp.path / "var/location.db").string());
  CHECK(f.config->source == file);
}

TEST_CASE("config: load_config_file reports files it cannot read") {
  ConfigLoad r = load_config_file("/nonexistent/switchboard.json");
  CHECK_FALSE(r.ok());
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == "/nonexistent/switchboard.json: cannot open: No such file or directory");

  TempDir tmp;
  ConfigLoad dir = load_config_file(tmp.path.string());
  CHECK_FALSE(dir.ok());
  REQUIRE(dir.errors.size() == 1);
  CHECK(dir.errors[0].starts_with(tmp.path.string() + ": cannot"));

  tmp.write("bad.json", "{\"workers\": 1,}");
  ConfigLoad bad = load_config_file((tmp.path / "bad.json").string());
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0].starts_with((tmp.path / "bad.json").string() + ":1:15: "));
}

TEST_CASE("config: dns") {
  SUBCASE("servers: IP literals with an optional port, canonical, repeats dropped") {
    ConfigLoad r = parse(R"({"dns": {"servers": ["192.0.2.53", "192.0.2.53:53", "0:0::1", "[::1]:5353",
                                                  "10.0.0.1:65535"]}})");
    REQUIRE_MESSAGE(r.ok(), (r.errors.empty() ? "" : r.errors[0]));
    CHECK(r.config->dns.servers ==
          std::vector<std::string>{"192.0.2.53:53", "[::1]:53", "[::1]:5353", "10.0.0.1:65535"});
    CHECK(parse(R"({"dns": {"servers": []}})").config->dns.servers.empty());
  }
  SUBCASE("bad servers are named by index") {
    const std::string want =
        "expected an IP address with an optional port (\"192.0.2.53\", \"192.0.2.53:5353\", "
        "\"[2001:db8::53]:53\"), got ";
    CHECK(only_error(R"({"dns": {"servers": ["ns1.example.com"]}})") ==
          "dns.servers[0]: " + want + "\"ns1.example.com\"");
    CHECK(only_error(R"({"dns": {"servers": ["127.0.0.1", "127.0.0.1:0"]}})") ==
          "dns.servers[1]: " + want + "\"127.0.0.1:0\"");
    CHECK(only_error(R"({"dns": {"servers": ["127.0.0.1:70000"]}})") ==
          "dns.servers[0]: " + want + "\"127.0.0.1:70000\"");
    CHECK(only_error(R"({"dns": {"servers": ["[::1"]}})") == "dns.servers[0]: " + want + "\"[::1\"");
    CHECK(only_error(R"({"dns": {"servers": ["[::1]:"]}})") == "dns.servers[0]: " + want + "\"[::1]:\"");
    CHECK(only_error(R"({"dns": {"servers": ["127.0.0.1:"]}})") ==
          "dns.servers[0]: " + want + "\"127.0.0.1:\"");
    CHECK(only_error(R"({"dns": {"servers": [53]}})") == "dns.servers[0]: " + want + "53");
    CHECK(only_error(R"({"dns": {"servers": "127.0.0.1"}})") ==
          "dns.servers: expected an array of DNS server addresses (\"IP\" or \"IP:port\"), got \"127.0.0.1\"");
  }
  SUBCASE("ranges, types, unknown keys") {
    CHECK(only_error(R"({"dns": {"timeout_ms": 9}})") ==
          "dns.timeout_ms: expected an integer from 10 to 60000, got 9");
    CHECK(only_error(R"({"dns": {"tries": 0}})") == "dns.tries: expected an integer from 1 to 10, got 0");
    CHECK(only_error(R"({"dns": {"max_ttl_s": -1}})") ==
          "dns.max_ttl_s: expected an integer from 0 to 604800, got -1");
    CHECK(only_error(R"({"dns": {"negative_ttl_s": 86401}})") ==
          "dns.negative_ttl_s: expected an integer from 0 to 86400, got 86401");
    CHECK(only_error(R"({"dns": {"greylist_s": "30"}})") ==
          "dns.greylist_s: expected an integer from 0 to 86400, got \"30\"");
    CHECK(only_error(R"({"dns": {"prefer_ipv6": 1}})") == "dns.prefer_ipv6: expected true or false, got 1");
    CHECK(only_error(R"({"dns": {"server": []}})") ==
          "dns.server: unknown key; expected one of servers, timeout_ms, tries, max_ttl_s, negative_ttl_s, "
          "greylist_s, prefer_ipv6 (did you mean \"servers\"?)");
    CHECK(only_error(R"({"dns": []})") == "dns: expected an object, got []");
  }
}

TEST_CASE("config: is_local_domain") {
  ConfigLoad r = parse(R"({"domains": ["Example.com", "192.0.2.1", "[2001:db8::1]", "::1"]})");
  REQUIRE(r.ok());
  const Config& c = *r.config;
  CHECK(c.is_local_domain("example.com"));
  CHECK(c.is_local_domain("EXAMPLE.COM"));
  CHECK(c.is_local_domain("192.0.2.1"));
  CHECK(c.is_local_domain("::1"));
  CHECK(c.is_local_domain("[::1]"));
  CHECK(c.is_local_domain("[2001:DB8:0::1]"));
  CHECK(c.is_local_domain("2001:db8::1"));
  CHECK_FALSE(c.is_local_domain("example.org"));
  CHECK_FALSE(c.is_local_domain("sub.example.com"));
  CHECK_FALSE(c.is_local_domain("192.0.2.10"));
  CHECK_FALSE(c.is_local_domain("::2"));
  CHECK_FALSE(c.is_local_domain(""));
  CHECK_FALSE(c.is_local_domain("["));
  CHECK_FALSE(c.is_local_domain("[::1"));
  CHECK_FALSE(c.is_local_domain(std::string_view("::1\0x", 5)));
}

TEST_CASE("config: worker_count") {
  Config c;
  c.workers = 3;
  CHECK(c.worker_count() == 3);
  c.workers = 0;
  const unsigned hw = std::thread::hardware_concurrency();
  const uint32_t expected = hw == 0 ? 1 : (hw > 64 ? 64 : hw);
  CHECK(c.worker_count() == expected);
  CHECK(c.worker_count() >= 1);
}

TEST_CASE("config: every accepted log level is one the logger knows") {
  for (const char* level : {"debug", "info", "warn", "error", "off"}) {
    CAPTURE(level);
    ConfigLoad r = parse(std::string(R"({"logging": {"level": ")") + level + "\"}}");
    REQUIRE(r.ok());
    log::Level l;
    CHECK(log::parse_level(r.config->logging.level, l));
  }
}

TEST_CASE("config: tls") {
  TempDir tmp;
  tmp.write("cert.pem", "x");
  tmp.write("key.pem", "x");
  const std::string base = tmp.path.string();
  auto load = [&](std::string_view text) { return parse_config(text, base, "t.json"); };
  ConfigLoad r = load(R"({"listen": [{"transport": "TLS", "address": "127.0.0.1"}],
                          "tls": {"certificate": "cert.pem", "private_key": "key.pem", "min_version": "1.3"},
                          "limits": {"tls_handshake_timeout_ms": 2500}})");
  REQUIRE_MESSAGE(r.ok(), (r.errors.empty() ? "" : r.errors[0]));
  REQUIRE(r.config->listen.size() == 1);
  CHECK(r.config->listen[0].transport == "tls");
  CHECK(r.config->listen[0].port == 5061);  // RFC 3261 §19.1.2 default for TLS
  CHECK(r.config->tls.enabled);
  CHECK(r.config->tls.certificate == (tmp.path / "cert.pem").string());
  CHECK(r.config->tls.private_key == (tmp.path / "key.pem").string());
  CHECK(r.config->tls.ca_file.empty());
  CHECK(r.config->tls.min_version == "1.3");
  CHECK_FALSE(r.config->tls.verify_client);
  CHECK(r.config->tls.verify_server);
  CHECK(r.config->limits.tls_handshake_timeout_ms == 2500);
  CHECK_FALSE(parse("{}").config->tls.enabled);
  CHECK(parse("{}").config->limits.tls_handshake_timeout_ms == 10000);

  // An explicit port wins over the TLS default.
  ConfigLoad p = load(R"({"listen": [{"transport": "tls", "address": "::1", "port": 15061}],
                          "tls": {"certificate": "cert.pem", "private_key": "key.pem"}})");
  REQUIRE(p.ok());
  CHECK(p.config->listen[0].port == 15061);

  // Each fault names its key.
  ConfigLoad missing = load(R"({"tls": {"certificate": "cert.pem", "private_key": "key.pem", "ca_file": "nope.pem"}})");
  REQUIRE(missing.errors.size() == 1);
  CHECK(missing.errors[0] == "tls.ca_file: cannot read " + (tmp.path / "nope.pem").string() +
                                 ": No such file or directory");
  ConfigLoad empty = parse(R"({"tls": {}})");
  REQUIRE(empty.errors.size() == 2);
  CHECK(empty.errors[0] == "tls.certificate: required key is missing");
  CHECK(empty.errors[1] == "tls.private_key: required key is missing");
  CHECK(only_error(R"({"tls": {"certificate": "c", "private_key": "k", "min_version": "1.1"}})") ==
        R"(tls.min_version: expected "1.2" or "1.3", got "1.1")");
  CHECK(only_error(R"({"tls": {"certificate": "c", "private_key": "k", "verify_client": "yes"}})") ==
        R"(tls.verify_client: expected true or false, got "yes")");
  CHECK(only_error(R"({"tls": {"certificate": "c", "private_key": "k", "sni": true}})").rfind(
            "tls.sni: unknown key; expected one of certificate, private_key, ca_file", 0) == 0);
  CHECK(only_error(R"({"limits": {"tls_handshake_timeout_ms": 10}})") ==
        "limits.tls_handshake_timeout_ms: expected an integer from 100 to 600000, got 10");
}

TEST_CASE("config: location.redis (the cluster backend)") {
  ConfigLoad r = parse(R"({"location": {"backend": "redis", "redis": {
      "servers": ["127.0.0.1:6380", "[::1]:6381", "redis.example:6379"], "prefix": "c1:",
      "node_id": "edge-1", "connect_timeout_ms": 200, "command_timeout_ms": 300,
      "reconnect_ms": 400, "queue_capacity": 500, "pool_size": 3}}})");
  REQUIRE_MESSAGE(r.ok(), (r.errors.empty() ? "" : r.errors[0]));
  const RedisLocationConfig& c = r.config->location.redis;
  CHECK(r.config->location.backend == "redis");
  CHECK(c.servers == std::vector<std::string>{"127.0.0.1:6380", "[::1]:6381", "redis.example:6379"});
  CHECK(c.prefix == "c1:");
  CHECK(c.node_id == "edge-1");
  CHECK(c.connect_timeout_ms == 200);
  CHECK(c.command_timeout_ms == 300);
  CHECK(c.reconnect_ms == 400);
  CHECK(c.pool_size == 3);
  CHECK(c.queue_capacity == 500);
  CHECK(parse("{}").config->location.redis == RedisLocationConfig{});

  CHECK(only_error(R"({"location": {"redis": {"servers": []}}})") ==
        R"(location.redis.servers: expected a non-empty array of "host:port" strings, got [])");
  CHECK(only_error(R"({"location": {"redis": {"servers": ["127.0.0.1"]}}})") ==
        R"(location.redis.servers[0]: expected "host:port" (an IPv6 address in brackets), got "127.0.0.1")");
  CHECK(only_error(R"({"location": {"redis": {"servers": ["h:0"]}}})").rfind("location.redis.servers[0]:", 0) == 0);
  CHECK(only_error(R"({"location": {"redis": {"prefix": "a*"}}})").rfind("location.redis.prefix: expected at most 64", 0) == 0);
  CHECK(only_error(R"({"location": {"redis": {"node_id": "a b"}}})").rfind("location.redis.node_id:", 0) == 0);
  CHECK(only_error(R"({"location": {"redis": {"command_timeout_ms": 5}}})") ==
        "location.redis.command_timeout_ms: expected an integer from 10 to 60000, got 5");
  CHECK(only_error(R"({"location": {"redis": {"pool_size": 0}}})") ==
        "location.redis.pool_size: expected an integer from 1 to 16, got 0");
  CHECK(only_error(R"({"location": {"redis": {"pool": 2}}})").rfind("location.redis.pool: unknown key", 0) == 0);
}

}  // namespace sb::core
