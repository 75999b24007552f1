#include "app/runtime.h"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>

#include "app/cpu_affinity.h"
#include "core/log.h"
#include "core/method.h"
#include "location/store.h"
#include "proxy/credentials.h"
#include "proxy/digest.h"
#include "scripts/engine/lua_policy.h"
#include "transport/dns_resolver.h"
#include "transport/tls.h"

namespace sb::app {

namespace {

void apply_logging(const core::Config& cfg) {
  core::log::Level level;
  if (core::log::parse_level(cfg.logging.level, level)) core::log::set_level(level);
  core::log::set_json(cfg.logging.json);
}

std::vector<transport::ListenerSpec> listener_specs(const core::Config& cfg) {
  std::vector<transport::ListenerSpec> specs;
  for (const auto& l : cfg.listen) {
    transport::ListenerSpec s;
    s.protocol = *core::protocol_from_name(l.transport);
    s.bind = *core::Endpoint::parse(l.address, l.port);
    s.advertise_host = l.advertise;
    s.symmetric = l.symmetric;
    specs.push_back(s);
  }
  return specs;
}

// Config "dns" plus the transports and address families we listen on (RFC 3263 lists keep
// to what we can send on).
transport::DnsSettings dns_settings(const core::Config& cfg) {
  transport::DnsSettings d;
  d.servers = cfg.dns.servers;
  d.timeout_ms = static_cast<int>(cfg.dns.timeout_ms);
  d.tries = static_cast<int>(cfg.dns.tries);
  d.max_ttl_s = cfg.dns.max_ttl_s;
  d.negative_ttl_s = cfg.dns.negative_ttl_s;
  d.greylist_s = cfg.dns.greylist_s;
  d.prefer_ipv6 = cfg.dns.prefer_ipv6;
  d.transports.clear();
  d.ipv4 = d.ipv6 = false;
  for (const auto& s : listener_specs(cfg)) {
    if (std::find(d.transports.begin(), d.transports.end(), s.protocol) == d.transports.end())
      d.transports.push_back(s.protocol);
    (s.bind.family() == AF_INET6 ? d.ipv6 : d.ipv4) = true;
  }
  return d;
}

// The table's key for an AOR the admin API names: canonical for a SIP URI, else as given.
std::string aor_key(std::string_view aor) {
  auto uri = core::parse_uri(aor);
  return uri && uri->is_sip() ? core::canonical_aor(*uri) : std::string(aor);
}

// The stats label of WorkerReport::requests_by_method[i] (indexed by core::Method).
std::string method_label(size_t i) {
  if (i == 0 || i > static_cast<size_t>(core::Method::Update)) return "other";
  return std::string(core::method_name(static_cast<core::Method>(i)));
}

}  // namespace

// Config "tls" loaded into an SSL context (start, every reload, `check`): the certificate,
// key and CA files are read again each time, so a reload picks up renewed files. Null when
// there is no "tls" section; problems are appended to `errors`, each naming its key.
std::shared_ptr<const transport::TlsContext> tls_context(const core::Config& cfg,
                                                         std::vector<std::string>& errors) {
  if (!cfg.tls.enabled) return nullptr;
  transport::TlsSettings s;
  s.certificate = cfg.tls.certificate;
  s.private_key = cfg.tls.private_key;
  s.ca_file = cfg.tls.ca_file;
  s.min_version = cfg.tls.min_version;
  s.verify_client = cfg.tls.verify_client;
  s.verify_server = cfg.tls.verify_server;
  return transport::TlsContext::create(s, errors);
}

// Config auth with its users file loaded and checked (start and every reload); null when
// auth is off. Without auth.secret the nonces use a secret drawn once per process start.
std::shared_ptr<const proxy::AuthSetup> auth_setup(const core::Config& cfg,
                                                   std::vector<std::string>& errors) {
  if (!cfg.auth.enabled) return nullptr;
  static const std::string per_start_secret = proxy::digest::random_secret();
  auto setup = std::make_shared<proxy::AuthSetup>();
  proxy::digest::Settings& s = setup->settings;
  s.realm = cfg.auth.realm;
  s.nonce_ttl_ms = int64_t(cfg.auth.nonce_ttl_s) * 1000;
  s.secret = cfg.auth.secret.empty() ? per_start_secret : cfg.auth.secret;
  // One nonce-count table for all workers, kept while the secret stays (the nonces it tracks
  // stay valid): called on the main thread only (start, reload, check).
  static std::shared_ptr<proxy::digest::SharedNonceCounts> counts;
  static std::string counts_secret;
  if (!counts || counts_secret != s.secret) {
    counts = std::make_shared<proxy::digest::SharedNonceCounts>(s.max_tracked_nonces);
    counts_secret = s.secret;
  }
  setup->counts = counts;
  s.algorithms.clear();
  for (const auto& a : cfg.auth.algorithms)
    if (auto alg = proxy::digest::parse_algorithm(a)) s.algorithms.push_back(*alg);
  if (!cfg.auth.users_file.empty()) {
    auto users = proxy::load_user_store(cfg.auth.users_file);
    if (!users.ok()) {
      for (auto& e : users.errors) errors.push_back("auth.users_file: " + e);
      return nullptr;
    }
    if (s.realm.empty()) {
      s.realm = users.store->realm();
    } else if (s.realm != users.store->realm()) {
      errors.push_back("auth.realm: \"" + s.realm + "\" differs from the realm of " +
                       cfg.auth.users_file + " (\"" + users.store->realm() +
                       "\"), whose HA1 values only hold for their own realm");
      return nullptr;
    }
    setup->users = users.store;
  }
  return setup;
}

Runtime::Runtime(std::string config_path, std::shared_ptr<const core::Config> config)
    : config_path_(std::move(config_path)), config_(std::move(config)) {}

Runtime::~Runtime() = default;

void Runtime::post_main(std::function<void()> fn) {
  {
    std::lock_guard lock(main_mu_);
    main_tasks_.push_back(std::move(fn));
  }
  uv_async_send(&async_);
}

void Runtime::on_main_async(uv_async_t* h) {
  auto* self = static_cast<Runtime*>(h->data);
  std::vector<std::function<void()>> tasks;
  {
    std::lock_guard lock(self->main_mu_);
    tasks.swap(self->main_tasks_);
  }
  for (auto& t : tasks) t();
}

void Runtime::on_signal(uv_signal_t* h, int signum) {
  auto* self = static_cast<Runtime*>(h->data);
  if (signum == SIGHUP) {
    SB_INFO("SIGHUP: reloading %s", self->config_path_.c_str());
    self->reload([](ReloadOutcome o) {
      if (o.ok) {
        SB_INFO("reload ok: generation %llu", static_cast<unsigned long long>(o.generation));
      } else {
        for (const auto& e : o.errors) SB_ERROR("reload failed: %s", e.c_str());
      }
    });
    return;
  }
  SB_INFO("signal %d: stopping", signum);
  uv_stop(h->loop);
}

// Config "location" as the location library takes it (start-up and reload).
static location::StoreConfig store_config_from(const core::Config& cfg) {
  location::StoreConfig store_cfg;
  store_cfg.backend = cfg.location.backend;
  store_cfg.sqlite_path = cfg.location.sqlite_path;
  store_cfg.batch_ms = cfg.location.batch_ms;
  store_cfg.queue_capacity = cfg.location.queue_capacity;
  if (cfg.location.backend == "redis") {
    const core::RedisLocationConfig& rc = cfg.location.redis;
    store_cfg.queue_capacity = rc.queue_capacity;
    store_cfg.redis = {rc.servers, rc.prefix, rc.connect_timeout_ms, rc.command_timeout_ms,
                       rc.reconnect_ms, rc.node_id, {}, cfg.worker_count(), rc.pool_size};
    // A node is named by its first listener unless configured (docs/cluster.md).
    if (!cfg.listen.empty()) {
      const core::ListenerConfig& l = cfg.listen.front();
      if (store_cfg.redis.node_id.empty())
        store_cfg.redis.node_id = l.transport + ":" + l.address + ":" + std::to_string(l.port);
      // Other nodes route calls for the flows we hold through this URI (RFC 3327 Path).
      std::string host = l.advertise.empty() ? l.address : l.advertise;
      if (host.find(':') != std::string::npos) host = "[" + host + "]";
      store_cfg.redis.node_uri = "sip:" + host + ":" + std::to_string(l.port) + ";transport=" + l.transport;
    }
  }
  return store_cfg;
}

int Runtime::run() {
  const core::Config& cfg = *config_;
  apply_logging(cfg);
  started_ms_ = clock_.now_ms();

  // Which CPU each worker runs on: a CPU this process may not use stops the start here,
  // before anything is opened.
  std::vector<std::string> cpu_errors;
  std::vector<int> cpus = worker_cpus(cfg, cpu_errors);
  if (!cpu_errors.empty()) {
    SB_ERROR("%s", cpu_errors.front().c_str());
    return 1;
  }

  const location::StoreConfig store_cfg = store_config_from(cfg);
  auto store = location::open_store(store_cfg);
  if (!store) {
    SB_ERROR("location store: %s", core::describe(store.error()).c_str());
    return 1;
  }
  location::Settings loc_settings;
  const proxy::RegistrarSettings registrar = registrar_settings_from(cfg);
  loc_settings.limits = {registrar.max_bindings_per_aor, registrar.max_aors};
  location_ = std::make_unique<location::LocationService>(clock_, loc_settings, std::move(*store));
  if (auto st = location_->start(); !st) {
    SB_ERROR("location store: %s", core::describe(st.error()).c_str());
    return 1;
  }
  SB_INFO("location: %s", cfg.location.backend == "sqlite"  ? cfg.location.sqlite_path.c_str()
                          : cfg.location.backend == "redis" ? "redis (cluster)"
                                                            : "memory only");

  // The script is compiled once per worker (a lua_State belongs to one thread); a broken
  // script stops the start with its file:line.
  uint32_t n = cfg.worker_count();
  std::vector<std::shared_ptr<scripts::ScriptGeneration>> scripts(n);
  for (uint32_t i = 0; i < n; ++i) {
    scripts::CompileOptions opts;
    opts.number = generation_;
    auto gen = scripts::compile(cfg.script.path, script_limits_from(cfg), opts);
    if (!gen.ok()) {
      SB_ERROR("script: %s", gen.error().c_str());
      location_->stop();
      return 1;
    }
    scripts[i] = gen.value();
  }
  SB_INFO("script %s compiled", cfg.script.path.c_str());
  // The users file and the certificates, loaded as every reload and `check` load them.
  std::vector<std::string> load_errors;
  auto auth = auth_setup(cfg, load_errors);
  auto tls = tls_context(cfg, load_errors);
  if (!load_errors.empty()) {
    for (const auto& e : load_errors) SB_ERROR("%s", e.c_str());
    location_->stop();
    return 1;
  }
  group_.set_tls(std::move(tls));

  transport::Limits limits;
  limits.dispatch = cfg.dispatch == "transaction" ? transport::Dispatch::ByTransaction : transport::Dispatch::BySource;
  limits.batch_scheduling = cfg.scheduling == "batch";
  limits.worker_cpus = std::move(cpus);
  limits.max_message_bytes = cfg.limits.max_message_bytes;
  limits.queue_capacity = cfg.limits.queue_capacity;
  limits.tcp_idle_timeout_s = cfg.limits.tcp_idle_timeout_s;
  limits.max_connections = cfg.limits.max_connections;
  limits.tls_handshake_timeout_ms = cfg.limits.tls_handshake_timeout_ms;

  workers_.resize(n);
  auto st = group_.start(listener_specs(cfg), n, limits, [&](transport::Worker& w) {
    WorkerGeneration g{generation_, config_, scripts[w.id()], auth};
    // RFC 3263 over c-ares on this worker's loop; without it, IP literals only.
    std::string dns_error;
    std::unique_ptr<proxy::Resolver> resolver =
        transport::make_dns_resolver(w.loop(), clock_, dns_settings(cfg), dns_error);
    if (!resolver)
      SB_ERROR("worker %u: DNS: %s; only IP addresses can be reached", w.id(), dns_error.c_str());
    workers_[w.id()] = std::make_unique<SipWorker>(w, *location_, std::move(g), std::move(resolver));
    w.set_handler(workers_[w.id()].get());
  });
  if (!st) {
    SB_ERROR("cannot start: %s %s", core::describe(st.error()).c_str(), group_.error_detail().c_str());
    workers_.clear();
    location_->stop();
    return 1;
  }
  for (const auto& l : group_.listeners())
    SB_INFO("listening on %s %s", std::string(core::protocol_name(l.protocol)).c_str(),
            l.bind.to_string().c_str());
  SB_INFO("switchboard %s running: %u worker(s), config %s, generation %llu", SB_VERSION, n,
          cfg.source.c_str(), static_cast<unsigned long long>(generation_));

  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_, on_main_async);
  async_.data = this;
  for (auto [h, sig] : {std::pair{&sigint_, SIGINT}, {&sigterm_, SIGTERM}, {&sighup_, SIGHUP}}) {
    uv_signal_init(&loop_, h);
    h->data = this;
    uv_signal_start(h, on_signal, sig);
  }
  // The admin API (docs/admin.md), on this main loop.
  if (cfg.admin.enabled) {
    admin_ = std::make_unique<AdminServer>(&loop_, *this);
    if (auto ast = admin_->start(cfg.admin.address, cfg.admin.port); !ast) {
      SB_ERROR("admin: %s (%s:%u)", core::describe(ast.error()).c_str(), cfg.admin.address.c_str(),
               cfg.admin.port);
      admin_.reset();
    } else {
      SB_INFO("admin API on %s:%u", cfg.admin.address.c_str(), admin_->port());
    }
  }
  uv_run(&loop_, UV_RUN_DEFAULT);

  if (admin_) admin_->stop();
  location_->flush();  // a shared store writes from the workers' loops: before they stop
  group_.stop();
  workers_.clear();
  location_->stop();
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&sigint_), reinterpret_cast<uv_handle_t*>(&sigterm_),
                         reinterpret_cast<uv_handle_t*>(&sighup_), reinterpret_cast<uv_handle_t*>(&async_)})
    uv_close(h, nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  admin_.reset();
  uv_loop_close(&loop_);
  SB_INFO("stopped");
  return 0;
}

// ---- live reload (DESIGN.md "Configuration and live reload", STYLE.md 6) ----

void Runtime::reload(std::function<void(ReloadOutcome)> done) {
  reload_queue_.push_back(std::move(done));
  if (reload_queue_.size() == 1) start_reload();  // else the running reload starts it when done
}

void Runtime::start_reload() {
  ReloadOutcome out;
  out.generation = generation_;
  auto fail = [&](std::vector<std::string> errors) {
    out.errors = std::move(errors);
    finish_reload(std::move(out));
  };
  if (config_path_.empty()) return fail({"running on the embedded default: there is no file to reload"});
  // 1. The new configuration, validated in full.
  auto loaded = core::load_config_file(config_path_);
  if (!loaded.ok()) return fail(loaded.errors);
  const core::Config& next = *loaded.config;
  const core::Config& cur = *config_;
  std::vector<std::string> errors;
  if (next.worker_count() != cur.worker_count())
    errors.push_back("workers: changing the number of workers needs a restart (running " +
                     std::to_string(cur.worker_count()) + ")");
  // A changed "location" opens the new store now (it may fail); it replaces the old one only
  // when the whole reload succeeds, else it is closed unused (docs/cluster.md).
  std::optional<location::LocationService::PreparedStore> prepared;
  if (!(next.location == cur.location)) {
    auto st = location::open_store(store_config_from(next));
    auto p = st ? location_->prepare_store(std::move(*st))
                : core::Result<location::LocationService::PreparedStore>(st.error());
    if (p) prepared = std::move(*p);
    else errors.push_back("location: " + core::describe(p.error()));
  }
  for (size_t i = 0; i < next.listen.size(); ++i)
    for (const auto& l : cur.listen)
      if (l.transport == next.listen[i].transport && l.address == next.listen[i].address &&
          l.port == next.listen[i].port && l.symmetric != next.listen[i].symmetric)
        errors.push_back("listen[" + std::to_string(i) + "].symmetric: changing it on a listener that stays needs a restart");
  if (next.dispatch != cur.dispatch) errors.push_back("dispatch: changing it needs a restart");
  if (next.scheduling != cur.scheduling) errors.push_back("scheduling: changing it needs a restart");
  if (!(next.cpu_affinity == cur.cpu_affinity)) errors.push_back("cpu_affinity: changing it needs a restart");
  if (!(next.admin == cur.admin)) errors.push_back("admin: changing the admin listener needs a restart");
  if (!(next.dns == cur.dns)) errors.push_back("dns: changing the resolver settings needs a restart");
  if (next.limits.queue_capacity != cur.limits.queue_capacity)
    errors.push_back("limits.queue_capacity: needs a restart");
  auto auth = auth_setup(next, errors);  // the users file is re-read with the config
  // Certificates are re-read too; connections established keep the context they began with.
  auto tls = tls_context(next, errors);
  if (!errors.empty()) return fail(errors);
  // 2. The script, compiled in a fresh state for every worker; all must succeed.
  uint64_t number = generation_ + 1;
  std::vector<std::shared_ptr<scripts::ScriptGeneration>> scripts(workers_.size());
  for (size_t i = 0; i < workers_.size(); ++i) {
    scripts::CompileOptions opts;
    opts.number = number;
    auto gen = scripts::compile(next.script.path, script_limits_from(next), opts);
    if (!gen.ok()) return fail({"script: " + gen.error()});
    scripts[i] = gen.value();
  }
  // 3. The listeners, diffed: new ones opened on every worker, removed ones closed (their
  //    accepted TCP connections drain). The last step that can fail; it undoes itself when
  //    it does, so a refused reload still changes nothing.
  // The new TLS context first, so a TLS listener opened below has it; undone with the
  // listeners when they fail.
  auto old_tls = group_.tls();
  group_.set_tls(tls);
  if (!(next.listen == cur.listen)) {
    auto open_set = [](const std::vector<transport::ListenerSpec>& ls) {
      std::vector<transport::ListenerSpec> out;
      for (const auto& l : ls)
        if (!l.closed) out.push_back(l);
      return out;
    };
    auto before = open_set(group_.listeners());
    if (auto st = group_.update_listeners(listener_specs(next)); !st) {
      group_.set_tls(old_tls);
      return fail({"listen: " + group_.error_detail()});
    }
    auto after = open_set(group_.listeners());
    auto has = [](const std::vector<transport::ListenerSpec>& ls, const transport::ListenerSpec& l) {
      return std::any_of(ls.begin(), ls.end(), [&](const auto& x) { return x.same_socket(l); });
    };
    for (const auto& l : after)
      if (!has(before, l))
        SB_INFO("reload: listening on %s %s", std::string(core::protocol_name(l.protocol)).c_str(),
                l.bind.to_string().c_str());
    for (const auto& l : before)
      if (!has(after, l))
        SB_INFO("reload: stopped listening on %s %s (accepted connections drain)",
                std::string(core::protocol_name(l.protocol)).c_str(), l.bind.to_string().c_str());
  }
  // 4. Publish: every worker adopts the new generation on its own thread.
  if (prepared) location_->commit_store(std::move(*prepared));
  generation_ = number;
  config_ = loaded.config;
  apply_logging(next);
  auto pending = std::make_shared<std::atomic<size_t>>(workers_.size());
  for (size_t i = 0; i < workers_.size(); ++i) {
    WorkerGeneration g{number, config_, scripts[i], auth};
    auto task = [this, g = std::move(g), pending, number](transport::Worker& w) mutable {
      workers_[w.id()]->apply(std::move(g));
      if (pending->fetch_sub(1) == 1) {
        post_main([this, number] {
          ReloadOutcome ok;
          ok.ok = true;
          ok.generation = number;
          finish_reload(std::move(ok));
        });
      }
    };
    // A worker's queue may be full for a moment: the reload must reach every worker.
    while (!group_.worker(static_cast<uint32_t>(i)).post(task)) uv_sleep(1);
  }
}

void Runtime::finish_reload(ReloadOutcome outcome) {
  (outcome.ok ? reloads_ok_ : reloads_failed_)++;
  // The finished reload stays at the front while its caller hears the outcome: a reload
  // asked for meanwhile only queues.
  reload_queue_.front()(std::move(outcome));
  reload_queue_.pop_front();
  if (!reload_queue_.empty()) start_reload();
}

// ---- stats ----

void Runtime::stats(std::function<void(StatsSnapshot)> done) {
  struct Gather {
    std::mutex mu;
    std::vector<WorkerReport> reports;
    size_t left = 0;
    std::function<void(StatsSnapshot)> done;
  };
  auto g = std::make_shared<Gather>();
  g->left = workers_.size();
  g->done = std::move(done);
  auto finish = [this, g] {
    StatsSnapshot s;
    s.version = SB_VERSION;
    s.generation = generation_;
    s.uptime_s = (clock_.now_ms() - started_ms_) / 1000;
    s.workers = static_cast<uint32_t>(workers_.size());
    s.reloads_ok = reloads_ok_;
    s.reloads_failed = reloads_failed_;
    s.bindings = location_->size();
    s.aors = location_->aor_count();
    {
      // The shared store (docs/cluster.md): unreachable Redis = degraded, still serving.
      location::StoreStats st = location_->store_stats();
      s.counters["location_store_written"] = st.written;
      s.counters["location_store_dropped"] = st.dropped;
      s.counters["location_store_errors"] = st.errors;
      s.counters["location_store_disconnects"] = st.disconnects;
      s.counters["location_store_refreshes"] = st.refreshes;
      s.counters["location_store_fetches"] = st.fetches;
      s.counters["location_store_fetch_failures"] = st.fetch_failures;  // each answered 500
      if (st.degraded) s.health_detail = "degraded: location store (redis) unreachable, bindings kept locally";
    }
    s.script_seconds.bounds.assign(kScriptBuckets.begin(), kScriptBuckets.end());
    s.script_seconds.counts.assign(kScriptBuckets.size(), 0);
    auto& c = s.counters;
    for (const auto& r : g->reports) {
      for (size_t m = 0; m < r.requests_by_method.size(); ++m)
        if (r.requests_by_method[m]) s.requests_by_method[method_label(m)] += r.requests_by_method[m];
      for (auto [code, n] : r.responses_by_code) s.responses_by_code[code] += n;
      s.transactions_active["client_invite"] += r.txn.active_client_invite;
      s.transactions_active["client_non_invite"] += r.txn.active_client_non_invite;
      s.transactions_active["server_invite"] += r.txn.active_server_invite;
      s.transactions_active["server_non_invite"] += r.txn.active_server_non_invite;
      s.retransmissions += r.txn.retransmissions_sent;
      s.absorbed += r.txn.absorbed;
      s.script_errors += r.script.errors;
      uint64_t cum = 0;
      for (size_t b = 0; b < kScriptBuckets.size(); ++b) {
        cum += r.script_buckets[b];
        s.script_seconds.counts[b] += cum;
      }
      s.script_seconds.count += cum + r.script_buckets.back();
      s.script_seconds.sum += r.script_seconds;
      s.parse_errors["answered"] += r.sip.bad_requests;
      s.drops["unparseable"] += r.sip.dropped_unparseable;
      s.drops["handoff_queue_full"] += r.transport.handoff_dropped;
      s.drops["frame_error"] += r.transport.frame_errors;
      s.drops["overload"] += r.proxy.overloaded;
      s.refused["rate_limited"] += r.transport.rate_limited;
      s.refused["blocked"] += r.transport.blocked;
      s.refused["connections_per_source"] += r.transport.connections_per_source;
      s.refused["overload"] += r.proxy.overloaded;
      s.refused["auth_challenge"] += r.proxy.policy_challenged;
      s.refused["forbidden"] += r.proxy.policy_forbidden;
      c["sources_blocked"] += r.transport.sources_blocked;
      c["transactions_created"] += r.txn.created_client + r.txn.created_server;
      c["client_timeouts"] += r.txn.client_timeouts;
      c["transport_errors"] += r.txn.transport_errors;
      c["stray_responses"] += r.txn.stray_responses;
      c["proxy_requests"] += r.proxy.requests;
      c["proxy_local_replies"] += r.proxy.local_replies;
      c["proxy_relayed"] += r.proxy.relayed;
      c["proxy_branches"] += r.proxy.branches;
      c["proxy_failovers"] += r.proxy.failovers;
      c["proxy_cancels_sent"] += r.proxy.cancels_sent;
      c["proxy_loops"] += r.proxy.loops;
      c["proxy_no_decision"] += r.proxy.no_decision;
      c["script_requests"] += r.script.requests;
      c["script_limit_exceeded"] += r.script.limit_exceeded;
      c["datagrams_in"] += r.transport.datagrams_in;
      c["frames_in"] += r.transport.frames_in;
      c["bytes_in"] += r.transport.bytes_in;
      c["bytes_out"] += r.transport.bytes_out;
      c["handoffs"] += r.transport.handoff_out;
      c["connections_accepted"] += r.transport.connections_accepted;
      c["send_errors"] += r.transport.send_errors;
      c["tls_handshakes_ok"] += r.transport.tls_handshakes_ok;
      c["tls_handshakes_failed"] += r.transport.tls_handshakes_failed;
      c["tls_handshake_timeouts"] += r.transport.tls_handshake_timeouts;
      WorkerSnapshot w;
      w.id = r.id;
      w.queue_depth = r.transport.queue_depth;
      w.transactions = r.transactions;
      s.per_worker.push_back(w);
    }
    std::sort(s.per_worker.begin(), s.per_worker.end(),
              [](const WorkerSnapshot& a, const WorkerSnapshot& b) { return a.id < b.id; });
    g->done(std::move(s));
  };
  for (size_t i = 0; i < workers_.size(); ++i) {
    bool posted = group_.worker(static_cast<uint32_t>(i)).post([this, g, finish](transport::Worker& w) {
      WorkerReport r = workers_[w.id()]->report();
      std::lock_guard lock(g->mu);
      g->reports.push_back(std::move(r));
      if (--g->left == 0) post_main(finish);
    });
    if (!posted) {  // a saturated worker: report without it rather than wait
      std::lock_guard lock(g->mu);
      if (--g->left == 0) post_main(finish);
    }
  }
}

// ---- location (the table is shared and thread-safe) ----

std::vector<LocationEntry> Runtime::location_list(std::string_view aor) {
  std::vector<LocationEntry> out;
  int64_t now = clock_.wall_ms();
  auto add = [&](std::string_view a, const location::Binding& b) {
    LocationEntry e;
    e.aor = std::string(a);
    e.contact = b.contact;
    e.q = b.q / 1000.0;
    e.is_static = b.is_static();
    e.expires_in_s = b.is_static() ? -1 : b.expires_in(now);
    if (b.source.endpoint.valid())
      e.source = std::string(core::protocol_name(b.source.protocol)) + ":" + b.source.endpoint.to_string();
    e.user_agent = b.user_agent;
    out.push_back(std::move(e));
  };
  if (aor.empty()) {
    location_->for_each(add);
  } else {
    std::string key = aor_key(aor);
    for (const auto& b : location_->lookup(std::string_view(key))) add(key, b);
  }
  return out;
}

core::Status Runtime::location_add(std::string_view aor, std::string_view contact, double q,
                                   uint32_t expires_s) {
  auto uri = core::parse_uri(aor);
  if (!uri || !uri->is_sip()) return core::Error{"not a SIP URI", 400, "aor"};
  location::BindingChange b;
  b.contact = contact;
  b.q = static_cast<uint16_t>(std::clamp(q, 0.0, 1.0) * 1000 + 0.5);
  b.expires = expires_s;
  std::string key = core::canonical_aor(*uri);
  return location_->add_static(key, b);
}

size_t Runtime::location_remove(std::string_view aor, std::string_view contact) {
  std::string key = aor_key(aor);
  return contact.empty() ? location_->remove_all(key) : location_->remove(key, contact);
}

int run(const std::string& config_path, std::shared_ptr<const core::Config> config) {
  Runtime rt(config_path, std::move(config));
  return rt.run();
}

}  // namespace sb::app
