#include "app/runtime.h"

#include <sys/socket.h>
#include <uv.h>

#include <vector>

#include "app/sip_worker.h"
#include "core/log.h"
#include "location/location_service.h"
#include "location/store.h"
#include "proxy/builtin_policy.h"
#include "scripts/engine/lua_policy.h"
#include "proxy/local_identity.h"
#include "proxy/policy_services.h"
#include "proxy/registrar.h"
#include "transport/worker.h"

namespace sb::app {

namespace {

uv_loop_t* g_main_loop = nullptr;

void on_signal(uv_signal_t* h, int signum) {
  SB_INFO("signal %d: stopping", signum);
  uv_stop(h->loop);
}

}  // namespace

int run(std::shared_ptr<const core::Config> cfg) {
  core::log::Level level;
  if (core::log::parse_level(cfg->logging.level, level)) core::log::set_level(level);
  core::log::set_json(cfg->logging.json);

  core::SystemClock clock;

  // Location service and its store (DESIGN.md "Registrar and location").
  location::StoreConfig store_cfg;
  store_cfg.backend = cfg->location.backend;
  store_cfg.sqlite_path = cfg->location.sqlite_path;
  store_cfg.batch_ms = cfg->location.batch_ms;
  store_cfg.queue_capacity = cfg->location.queue_capacity;
  auto store = location::make_store(store_cfg);
  if (!store) {
    SB_ERROR("location store: %s", core::describe(store.error()).c_str());
    return 1;
  }
  location::Settings loc_settings;
  loc_settings.limits.max_bindings_per_aor = cfg->registrar.max_bindings_per_aor;
  loc_settings.limits.max_aors = static_cast<uint32_t>(std::min<uint64_t>(cfg->registrar.max_aors, UINT32_MAX));
  location::LocationService location(clock, loc_settings, std::move(*store));
  if (auto st = location.start(); !st) {
    SB_ERROR("location store: %s", core::describe(st.error()).c_str());
    return 1;
  }
  SB_INFO("location: %zu binding(s) of %zu AOR(s) loaded (%s)", location.size(), location.aor_count(),
          cfg->location.backend == "sqlite" ? cfg->location.sqlite_path.c_str() : "memory");

  // Listeners and our identity on the wire.
  std::vector<transport::ListenerSpec> specs;
  std::vector<proxy::LocalListener> locals;
  for (const auto& l : cfg->listen) {
    transport::ListenerSpec s;
    s.protocol = *core::protocol_from_name(l.transport);
    s.bind = *core::Endpoint::parse(l.address, l.port);
    s.advertise_host = l.advertise;
    specs.push_back(s);
    proxy::LocalListener ll;
    ll.protocol = s.protocol;
    ll.address = l.address;
    ll.host = l.advertise.empty() ? l.address : l.advertise;
    ll.port = l.port;
    ll.family = s.bind.family();
    locals.push_back(ll);
  }
  proxy::LocalIdentity identity(locals, cfg->domains);

  proxy::RegistrarSettings reg;
  reg.min_expires = cfg->registrar.min_expires;
  reg.max_expires = cfg->registrar.max_expires;
  reg.default_expires = cfg->registrar.default_expires;
  reg.max_bindings_per_aor = cfg->registrar.max_bindings_per_aor;
  reg.max_aors = loc_settings.limits.max_aors;
  reg.domains = cfg->domains;
  proxy::Registrar registrar(location, clock, reg);
  proxy::RegistrarServices services(registrar, location, identity, cfg->registrar.proxy_foreign_domain);

  SipWorkerSettings ws;
  ws.timers.t1_ms = cfg->timers.t1_ms;
  ws.timers.t2_ms = cfg->timers.t2_ms;
  ws.timers.t4_ms = cfg->timers.t4_ms;
  ws.layer.max_transactions = cfg->limits.max_transactions;
  ws.proxy.timer_c_ms = cfg->timers.timer_c_ms;
  ws.max_headers = cfg->limits.max_headers;

  transport::Limits limits;
  limits.max_message_bytes = cfg->limits.max_message_bytes;
  limits.queue_capacity = cfg->limits.queue_capacity;
  limits.tcp_idle_timeout_s = cfg->limits.tcp_idle_timeout_s;
  limits.max_connections = cfg->limits.max_connections;

  // The routing script: compiled here first so a broken one stops the start with its
  // file:line; then each worker compiles its own state (a lua_State belongs to one thread).
  scripts::ScriptLimits script_limits;
  script_limits.max_instructions = cfg->script.max_instructions;
  auto first = scripts::compile(cfg->script.path, script_limits);
  if (!first.ok()) {
    SB_ERROR("script: %s", first.error().c_str());
    location.stop();
    return 1;
  }
  uint64_t generation = first.value()->number();
  SB_INFO("script %s compiled (generation %llu)", cfg->script.path.c_str(),
          static_cast<unsigned long long>(generation));

  uint32_t n = cfg->worker_count();
  std::vector<std::unique_ptr<SipWorker>> workers(n);
  transport::WorkerGroup group;
  std::vector<std::string> worker_errors(n);
  auto st = group.start(specs, n, limits, [&](transport::Worker& w) {
    scripts::CompileOptions opts;
    opts.number = generation;
    auto gen = scripts::compile(cfg->script.path, script_limits, opts);
    std::unique_ptr<proxy::RoutingPolicy> policy;
    if (gen.ok()) {
      policy = std::make_unique<scripts::LuaPolicy>(gen.value(), services);
    } else {
      // Cannot happen unless the file changed since the check above: keep serving with the
      // built-in policy (same behaviour as the shipped script) and say so.
      worker_errors[w.id()] = gen.error();
      policy = std::make_unique<proxy::BuiltinPolicy>(services);
    }
    workers[w.id()] = std::make_unique<SipWorker>(w, identity, std::move(policy), ws);
    w.set_handler(workers[w.id()].get());
  });
  for (uint32_t i = 0; i < n; ++i)
    if (!worker_errors[i].empty())
      SB_ERROR("worker %u: script: %s (using the built-in policy)", i, worker_errors[i].c_str());
  if (!st) {
    SB_ERROR("cannot start: %s", core::describe(st.error()).c_str());
    location.stop();
    return 1;
  }
  for (const auto& l : group.listeners())
    SB_INFO("listening on %s %s", std::string(core::protocol_name(l.protocol)).c_str(),
            l.bind.to_string().c_str());
  SB_INFO("switchboard running: %u worker(s), config %s", n, cfg->source.c_str());

  uv_loop_t loop;
  uv_loop_init(&loop);
  g_main_loop = &loop;
  uv_signal_t sigint, sigterm;
  uv_signal_init(&loop, &sigint);
  uv_signal_init(&loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_run(&loop, UV_RUN_DEFAULT);

  group.stop();
  workers.clear();
  location.stop();
  uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  g_main_loop = nullptr;
  SB_INFO("stopped");
  return 0;
}

}  // namespace sb::app
