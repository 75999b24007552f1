// The configuration model: one JSON file (etc/switchboard.json) loaded into an immutable
// snapshot. Every key is validated; each fault names its key path and what was expected,
// and all faults are reported together so one edit fixes them all (DESIGN.md
// "Configuration and live reload"). Reload builds a new snapshot with the same code and
// publishes it only when `ok()`, so a rejected file changes nothing (STYLE.md 6).
// Keys, ranges and defaults: docs/configuration.md.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/cidr.h"

namespace sb::core {

struct ListenerConfig {
  std::string transport;  // "udp" | "tcp" | "tls"
  std::string address;    // IP literal in canonical form, IPv6 without brackets
  uint16_t port = 5060;    // default 5061 for "tls"
  std::string advertise;  // host for Via / Record-Route, IPv6 without brackets; "" = address
  // UDP: send every request from the listening port instead of each worker's own reply port
  // (transport/listener.h ListenerSpec::symmetric).
  bool symmetric = false;
  bool operator==(const ListenerConfig&) const = default;
};

// RFC 3261 §17.1.1.1 T1/T2/T4 and §16.6 Timer C, in milliseconds.
struct TimersConfig {
  int64_t t1_ms = 500;
  int64_t t2_ms = 4000;
  int64_t t4_ms = 5000;
  int64_t timer_c_ms = 185000;
  // RFC 3261 §17.2.1: an INVITE's 100 Trying goes only if no provisional or final was sent
  // upstream within this many ms (0: at once).
  int64_t trying_delay_ms = 200;
  bool operator==(const TimersConfig&) const = default;
};

struct LimitsConfig {
  uint32_t max_message_bytes = 65535;
  uint32_t max_headers = 256;
  uint32_t max_transactions = 100000;  // per worker
  uint32_t queue_capacity = 65536;     // per worker hand-off queue
  uint32_t tcp_idle_timeout_s = 900;
  uint32_t max_connections = 10000;    // per worker
  uint32_t tls_handshake_timeout_ms = 10000;
  bool operator==(const LimitsConfig&) const = default;
};

struct RegistrarConfig {
  uint32_t min_expires = 60;
  uint32_t max_expires = 7200;
  uint32_t default_expires = 3600;
  uint32_t max_bindings_per_aor = 10;
  uint64_t max_aors = 1000000;
  bool proxy_foreign_domain = false;  // "foreign_domain": "proxy" (true) | "refuse" (false)
  bool operator==(const RegistrarConfig&) const = default;
};

// location.redis: the cluster backend (docs/cluster.md).
struct RedisLocationConfig {
  std::vector<std::string> servers{"127.0.0.1:6379"};  // "host:port", "[v6]:port"; tried in order
  std::string prefix = "sb:";
  uint32_t connect_timeout_ms = 1000;
  uint32_t command_timeout_ms = 1000;
  uint32_t reconnect_ms = 1000;
  uint32_t queue_capacity = 100000;  // changes waiting while Redis is slow or down
  uint32_t pool_size = 1;            // command connections per worker
  std::string node_id;               // "" = the first listener's transport:address:port
  bool operator==(const RedisLocationConfig&) const = default;
};

struct LocationConfig {
  std::string backend = "sqlite";  // "sqlite" | "memory" | "redis"
  std::string sqlite_path;         // resolved against the config file's directory
  uint32_t batch_ms = 1000;
  uint32_t queue_capacity = 100000;
  RedisLocationConfig redis;
  bool operator==(const LocationConfig&) const = default;
};

struct ScriptConfig {
  std::string path;  // resolved against the config file's directory
  uint64_t max_instructions = 1000000;
  bool operator==(const ScriptConfig&) const = default;
};

struct LoggingConfig {
  std::string level = "info";  // "debug" | "info" | "warn" | "error" | "off"
  bool json = false;           // "format": "json" (true) | "text" (false)
  bool operator==(const LoggingConfig&) const = default;
};

// Locating SIP servers with DNS (RFC 3263). Each worker has its own resolver and cache.
struct DnsConfig {
  std::vector<std::string> servers;  // "IP:port" ("[v6]:port"), canonical; empty = /etc/resolv.conf
  uint32_t timeout_ms = 2000;        // per query try
  uint32_t tries = 2;
  uint32_t max_ttl_s = 3600;         // cap on how long an answer is kept (0 = not cached)
  uint32_t negative_ttl_s = 30;      // NXDOMAIN / no data kept this long (less if the SOA says so)
  uint32_t greylist_s = 30;          // a server that timed out or refused is skipped this long
  bool prefer_ipv6 = false;          // AAAA addresses before A
  bool operator==(const DnsConfig&) const = default;
};

// The admin HTTP API (docs/admin.md): loopback by default; it can reload and change bindings.
struct AdminConfig {
  bool enabled = true;
  std::string address = "127.0.0.1";  // IP literal, IPv6 without brackets
  uint16_t port = 8080;               // 0 = any free port (logged)
  bool operator==(const AdminConfig&) const = default;
};

// Digest authentication (RFC 3261 §22, RFC 7616/8760; docs/configuration.md "auth"). Present
// only when the file has an "auth" section; the script decides when to require it.
struct AuthConfig {
  bool enabled = false;                // the section is present
  std::string users_file;              // resolved against the config file's directory; "" = none
  std::string realm;                   // "" = the users file's realm
  uint32_t nonce_ttl_s = 300;
  std::string secret;                  // "" = random per start
  std::vector<std::string> algorithms = {"SHA-256", "MD5"};  // challenge order
  bool operator==(const AuthConfig&) const = default;
};

// Trusted networks and flood protection (docs/security.md; config "security"). The limits
// are per worker: SO_REUSEPORT spreads sources over the workers.
struct SecurityConfig {
  CidrSet trusted = CidrSet::loopback();  // exempt from the limits; req.source.trusted
  bool rate_limit = true;                 // "rate_limit.enabled"
  uint32_t rate_per_s = 100;              // messages per second per source IP
  uint32_t burst = 200;
  uint32_t block_after = 1000;            // drops since the bucket was last full; 0 = never
  uint32_t block_s = 60;
  uint32_t table_size = 65536;            // sources tracked per worker (LRU beyond)
  uint32_t max_connections_per_source = 32;  // per worker; 0 = no limit
  bool operator==(const SecurityConfig&) const = default;
};

// TLS (RFC 3261 §26.2; docs/configuration.md "tls"). Present only when the file has a "tls"
// section, which a "tls" listener requires. Files are checked readable at load; the
// certificate and key themselves are loaded by the transport (start, reload, check).
struct TlsConfig {
  bool enabled = false;             // the section is present
  std::string certificate;          // PEM chain, resolved against the config file's directory
  std::string private_key;          // PEM, resolved likewise
  std::string ca_file;              // PEM bundle to verify peers; "" = the system's CA paths
  std::string min_version = "1.2";  // "1.2" | "1.3"
  bool verify_client = false;       // require a client certificate signed by ca_file
  bool verify_server = true;        // verify the certificates of servers we connect to
  bool operator==(const TlsConfig&) const = default;
};

// Which CPU each worker thread runs on (docs/configuration.md "cpu_affinity").
struct CpuAffinityConfig {
  // "none": wherever the kernel places it; "auto": worker i on the i-th CPU this process may
  // use (round robin); "list": worker i on cpus[i % cpus.size()].
  std::string mode = "none";
  std::vector<uint32_t> cpus;  // mode "list": CPU numbers as the kernel counts them
  bool operator==(const CpuAffinityConfig&) const = default;
};

struct Config {
  uint32_t workers = 0;  // as written; 0 = one per CPU core (see worker_count)
  // Which worker a request belongs to: "source" (the one that read it) or "transaction"
  // (a hash of its branch; spreads one busy source over every worker). transport/owner.h.
  std::string dispatch = "source";
  // How the kernel schedules the workers: "batch" (SCHED_BATCH) or "normal" (SCHED_OTHER).
  std::string scheduling = "batch";
  CpuAffinityConfig cpu_affinity;
  std::vector<ListenerConfig> listen;
  std::vector<std::string> domains;  // lower-case, IPv6 canonical without brackets, no repeats
  TimersConfig timers;
  LimitsConfig limits;
  RegistrarConfig registrar;
  LocationConfig location;
  ScriptConfig script;
  LoggingConfig logging;
  DnsConfig dns;
  AdminConfig admin;
  AuthConfig auth;
  TlsConfig tls;
  SecurityConfig security;
  std::string source;  // the file path, or "<embedded default>"

  // `workers`, or std::thread::hardware_concurrency() (at least 1) when it is 0.
  uint32_t worker_count() const;
  // Whether `host` (a Request-URI or To host) is one of `domains`: case-insensitive,
  // "[::1]" and "::1" alike, IPv6 compared by address. Allocates only for IPv6 hosts.
  bool is_local_domain(std::string_view host) const;
  bool operator==(const Config&) const = default;
};

// Either a validated config, or every fault found ("listen[1].port: expected an integer
// from 1 to 65535, got \"abc\""; syntax errors as "FILE:LINE:COLUMN: message").
struct ConfigLoad {
  std::shared_ptr<const Config> config;
  std::vector<std::string> errors;
  bool ok() const { return config != nullptr; }
};

// Reads, parses and validates the file; relative paths in it resolve against its directory.
ConfigLoad load_config_file(const std::string& path);
// Parses and validates `json_text`; relative paths resolve against `base_dir`;
// `source_name` prefixes syntax errors and becomes Config::source.
ConfigLoad parse_config(std::string_view json_text, const std::string& base_dir,
                        const std::string& source_name);
// The bytes of etc/switchboard.json, compiled into the binary.
std::string_view embedded_default_config();
// The embedded default, its paths resolved as if it lived at <cwd>/etc/switchboard.json.
ConfigLoad load_default_config();

}  // namespace sb::core
