#include "app/sip_worker.h"

#include <sys/socket.h>

#include <chrono>

#include "core/log.h"
#include "core/response.h"
#include "location/redis_store.h"

namespace sb::app {

proxy::LocalIdentity identity_from(const core::Config& cfg) {
  std::vector<proxy::LocalListener> locals;
  for (const auto& l : cfg.listen) {
    proxy::LocalListener ll;
    ll.protocol = core::protocol_from_name(l.transport).value_or(core::Protocol::Udp);
    ll.address = l.address;
    ll.host = l.advertise.empty() ? l.address : l.advertise;
    ll.port = l.port;
    ll.family = l.address.find(':') != std::string::npos ? AF_INET6 : AF_INET;
    locals.push_back(ll);
  }
  return proxy::LocalIdentity(std::move(locals), cfg.domains);
}

proxy::LocalIdentity identity_from(const core::Config& cfg, const transport::Worker& w) {
  std::vector<proxy::LocalListener> locals;
  const auto& specs = w.listeners();
  for (size_t i = 0; i < specs.size(); ++i) {
    const transport::ListenerSpec& s = specs[i];
    if (s.closed) continue;
    proxy::LocalListener ll;
    ll.protocol = s.protocol;
    ll.address = s.bind.ip();
    ll.host = s.advertise_host.empty() ? ll.address : s.advertise_host;
    ll.port = s.bind.port();
    ll.family = s.bind.family();
    ll.slot = static_cast<int>(i);
    ll.reply_port = s.reply_port(w.id());
    ll.reply_ports = s.reply_ports;
    locals.push_back(std::move(ll));
  }
  return proxy::LocalIdentity(std::move(locals), cfg.domains);
}

proxy::RegistrarSettings registrar_settings_from(const core::Config& cfg) {
  proxy::RegistrarSettings r;
  r.min_expires = cfg.registrar.min_expires;
  r.max_expires = cfg.registrar.max_expires;
  r.default_expires = cfg.registrar.default_expires;
  r.max_bindings_per_aor = cfg.registrar.max_bindings_per_aor;
  r.max_aors = static_cast<uint32_t>(std::min<uint64_t>(cfg.registrar.max_aors, UINT32_MAX));
  r.domains = cfg.domains;
  return r;
}

transport::SourceLimitSettings source_limits_from(const core::Config& cfg) {
  const core::SecurityConfig& s = cfg.security;
  transport::SourceLimitSettings out;
  out.trusted = s.trusted;
  out.rate_limit = s.rate_limit;
  out.rate_per_s = s.rate_per_s;
  out.burst = s.burst;
  out.block_after = s.block_after;
  out.block_s = s.block_s;
  out.table_size = s.table_size;
  out.max_connections_per_source = s.max_connections_per_source;
  return out;
}

scripts::ScriptLimits script_limits_from(const core::Config& cfg) {
  scripts::ScriptLimits l;
  l.max_instructions = cfg.script.max_instructions;
  return l;
}

// Measures the time spent in the routing script per call (the synchronous part: a script
// that waits is measured up to its first wait) for the script time histogram.
class SipWorker::TimedPolicy final : public proxy::RoutingPolicy {
 public:
  TimedPolicy(SipWorker& w, proxy::RoutingPolicy& target) : w_(w), target_(target) {}
  void on_request(proxy::PolicyRequest& req, proxy::DecisionFn done) override {
    auto t0 = std::chrono::steady_clock::now();
    target_.on_request(req, std::move(done));
    observe(t0);
  }
  void on_failure(proxy::PolicyRequest& req, const proxy::FailureInfo& best, proxy::DecisionFn done) override {
    auto t0 = std::chrono::steady_clock::now();
    target_.on_failure(req, best, std::move(done));
    observe(t0);
  }

 private:
  void observe(std::chrono::steady_clock::time_point t0) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    size_t i = 0;
    while (i < kScriptBuckets.size() && s > kScriptBuckets[i]) ++i;
    ++w_.script_buckets_[i];
    w_.script_seconds_ += s;
  }
  SipWorker& w_;
  proxy::RoutingPolicy& target_;
};

// Cluster routing around the script (docs/cluster.md), active with a shared location
// backend: a request another node routed to a flow we hold is relayed over it whatever the
// script says, and a 430 never reaches the caller. (A flow held by another node that fails
// counts as 480 in the proxy core: Target::hop_failure_status. A lookup that misses waits
// inside the script's location.lookup: PolicyServices::lookup_wait.)
class SipWorker::ClusterPolicy final : public proxy::RoutingPolicy {
 public:
  ClusterPolicy(SipWorker& w, proxy::RoutingPolicy& target) : w_(w), target_(target) {}
  void on_request(proxy::PolicyRequest& req, proxy::DecisionFn done) override {
    if (w_.location_.shared() && relay_owned_flow(req, done)) return;
    target_.on_request(req, std::move(done));
  }
  void on_failure(proxy::PolicyRequest& req, const proxy::FailureInfo& best, proxy::DecisionFn done) override {
    if (w_.location_.shared() && best.status == 430) {
      // RFC 5626 §5.3: a 430 Flow Failed is for us, not the caller. The core already counts
      // one on a binding's own target as 480; this one came through a target the script built.
      done = [inner = std::move(done)](proxy::Decision d) {
        if (d.kind == proxy::Decision::Kind::None) d = proxy::Decision::reply(480, "Temporarily Unavailable");
        inner(std::move(d));
      };
    }
    target_.on_failure(req, best, std::move(done));
  }

 private:
  // Another node routed this request to a flow we hold, with our URI and the AOR (sb-aor) in
  // the first Route: relay it over that flow (RFC 5626 §5.3); 430 Flow Failed when we hold
  // no such flow any more.
  bool relay_owned_flow(const proxy::PolicyRequest& req, proxy::DecisionFn& done) {
    const core::Message& m = req.message();
    std::optional<std::string> aor;
    m.for_each_value(core::HeaderId::Route, [&](std::string_view v) {
      auto na = core::parse_name_addr(v);
      if (na && w_.identity_.uri_is_us(na->uri))
        if (auto hex = na->uri.param("sb-aor")) aor = location::owner_route_aor(*hex);
      return false;  // the first Route only
    });
    if (!aor) return false;
    const core::Uri& ruri = m.ruri();
    for (const location::Binding& b : w_.location_.lookup(std::string_view(*aor))) {
      auto u = core::parse_uri(b.contact);
      proxy::Target t = proxy::binding_target(b);
      if (!u || !core::uri_equal(*u, ruri) || !t.destination) continue;
      proxy::Decision d;
      d.kind = proxy::Decision::Kind::Relay;
      t.uri = std::string(m.ruri_text());
      d.targets.push_back(std::move(t));
      d.origin = "cluster flow owner";
      done(std::move(d));
      return true;
    }
    done(proxy::Decision::reply(430, "Flow Failed"));
    return true;
  }
  SipWorker& w_;
  proxy::RoutingPolicy& target_;
};

SipWorker::SipWorker(transport::Worker& worker, location::LocationService& location,
                     WorkerGeneration gen, std::unique_ptr<proxy::Resolver> resolver)
    : worker_(worker),
      location_(location),
      gen_(std::move(gen)),
      identity_(identity_from(*gen_.config, worker)),
      registrar_(location, clock_, registrar_settings_from(*gen_.config)),
      services_(registrar_, location, identity_, gen_.config->registrar.proxy_foreign_domain),
      resolver_(std::move(resolver)) {
  if (!resolver_) resolver_ = std::make_unique<proxy::NumericResolver>();
  services_.set_auth(gen_.auth, clock_, worker.id());
  // A location read from a shared store completes on the store's thread: the request carries
  // on here, then the transaction timer is re-armed as after any policy decision.
  services_.set_poster([this](std::function<void()> f) {
    return worker_.post([this, f = std::move(f)](transport::Worker&) {
      f();
      rearm();
    });
  });
  // DNS answers arrive from the loop and start transactions: re-arm their timer after them.
  resolver_->set_after_answers([this] { rearm(); });
  // The policy chain: cluster routing → timing → the script.
  lua_ = std::make_unique<scripts::LuaPolicy>(gen_.script, services_, resolver_.get());
  timed_ = std::make_unique<TimedPolicy>(*this, *lua_);
  cluster_ = std::make_unique<ClusterPolicy>(*this, *timed_);
  const core::Config& cfg = *gen_.config;
  proxy::ProxySettings ps;
  ps.worker_id = worker.id();
  ps.timer_c_ms = cfg.timers.timer_c_ms;
  core_ = std::make_unique<proxy::ProxyCore>(*this, identity_, *resolver_, *cluster_, ps);
  layer_ = std::make_unique<proxy::TransactionLayer>(*this, *core_);
  core_->attach(*layer_);
  configure(cfg);
  uv_timer_init(worker.loop(), &timer_);
  timer_.data = this;
  // A shared location store (Redis) talks to its server from this loop too (docs/cluster.md).
  location_.join_lane(worker.id(), worker.loop());
}

SipWorker::~SipWorker() = default;

void SipWorker::configure(const core::Config& cfg) {
  proxy::Timers t;
  t.t1_ms = cfg.timers.t1_ms;
  t.t2_ms = cfg.timers.t2_ms;
  t.t4_ms = cfg.timers.t4_ms;
  layer_->set_timers(t);
  slack_ms_ = timer_slack_ms(cfg.timers.t1_ms);
  proxy::LayerOptions o;
  o.max_transactions = cfg.limits.max_transactions;
  o.trying_delay_ms = cfg.timers.trying_delay_ms;
  layer_->set_options(o);
  max_headers_ = cfg.limits.max_headers;
  services_.set_trusted(cfg.security.trusted);
  worker_.set_source_limits(source_limits_from(cfg));
}

void SipWorker::apply(WorkerGeneration gen) {
  const core::Config& cfg = *gen.config;
  identity_ = identity_from(cfg, worker_);
  registrar_.set_settings(registrar_settings_from(cfg));
  services_.set_proxy_foreign_register(cfg.registrar.proxy_foreign_domain);
  services_.set_auth(gen.auth, clock_, worker_.id());
  lua_->publish(gen.script);
  configure(cfg);
  gen_ = std::move(gen);
  location_.join_lane(worker_.id(), worker_.loop());  // a reload may have replaced the store
}

WorkerReport SipWorker::report() const {
  WorkerReport r;
  r.id = worker_.id();
  r.generation = gen_.number;
  r.txn = layer_->counters();
  r.proxy = core_->counters();
  r.sip = counters_;
  r.script = lua_->counters();
  r.transport = worker_.stats();
  r.requests_by_method = by_method_;
  for (size_t c = 100; c < by_code_.size(); ++c)
    if (by_code_[c]) r.responses_by_code.emplace_back(static_cast<int>(c), by_code_[c]);
  r.script_buckets = script_buckets_;
  r.script_seconds = script_seconds_;
  r.transactions = layer_->size();
  return r;
}

void SipWorker::on_stop(transport::Worker&) {
  stopping_ = true;
  resolver_->stop();  // closes its c-ares sockets and timer on this loop; pending lookups dropped
  uv_timer_stop(&timer_);
  location_.leave_lane(worker_.id());
  // The handle is a member: it stays valid until the loop ran its close callback, because
  // this object outlives the worker's loop (the runtime destroys it after stop()).
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

bool SipWorker::send(const core::Peer& to, std::string_view bytes, uint64_t txn_id) {
  // A request leaves from the listener its Via names (ProxyCore::make_via picks it the same
  // way); one that starts a client transaction from this worker's reply port on it, which
  // that Via names, so its responses come back here (transport/listener.h).
  if (bytes.starts_with("SIP/2.0 ")) return worker_.send(to, bytes, txn_id);
  auto out = identity_.outgoing(to.protocol, to.endpoint.family());
  int slot = out ? identity_.listeners()[*out].slot : -1;
  return worker_.send(to, bytes, txn_id, slot, txn_id != 0);
}

void SipWorker::on_send_error(transport::Worker&, uint64_t cookie, const core::Peer& to) {
  if (cookie != 0) {
    layer_->on_transport_error(cookie);
  } else {
    SB_LOG_RL(Info, {}, "send to %s failed (stateless)", to.endpoint.to_string().c_str());
  }
  rearm();
}

// DESIGN.md "Security and bad input": a request that cannot be parsed but has a usable Via
// gets its error response (400 naming the fault, 505, 501, 513); anything else is dropped
// and counted. A response is never answered (RFC 4475 §3.1.2.5, §3.1.2.19).
void SipWorker::refuse_unparseable(const transport::Inbound& in, const core::Error& err) {
  std::string reason = core::describe(err);
  bool answer = msg_.is_request() && msg_.via_usable() && msg_.method_text() != "ACK" &&
                !msg_.method_text().empty();
  if (!answer) {
    ++counters_.dropped_unparseable;
    SB_LOG_RL(Warn, msg_.call_id(), "dropped unparseable message from %s: %s",
              in.from.endpoint.to_string().c_str(), reason.c_str());
    return;
  }
  ++counters_.bad_requests;
  SB_LOG_RL(Info, msg_.call_id(), "refused message from %s: %d %s", in.from.endpoint.to_string().c_str(),
            err.status, reason.c_str());
  core::ResponseSpec spec;
  spec.status = err.status;
  spec.reason = reason;
  spec.to_tag = "sb-bad";
  worker_.send(proxy::response_destination(msg_, in.from), core::build_response(msg_, spec), 0);
}

void SipWorker::count(const core::Message& m) {
  if (m.is_request()) ++by_method_[static_cast<size_t>(m.method()) & 15];
  else if (m.status() >= 100 && m.status() < 700) ++by_code_[static_cast<size_t>(m.status())];
}

void SipWorker::on_message(transport::Worker&, transport::Inbound& in) {
  if (stopping_) return;
  if (in.has_frame_error) {
    (void)msg_.parse(in.bytes, {max_headers_});
    refuse_unparseable(in, in.frame_error);
    return;
  }
  const core::Message* m = in.parsed;
  if (!m) {
    core::Status st = msg_.parse(in.bytes, {max_headers_});
    if (!st) {
      refuse_unparseable(in, st.error());
      return;
    }
    m = &msg_;
  }
  // A CANCEL belongs with its INVITE (RFC 3261 §9.2), which is on the worker that read the
  // INVITE; a UA that sent the CANCEL from another source port reached another worker.
  // Round the ring: the last worker before the reader handles it as unmatched (481).
  if (m->method() == core::Method::Cancel && worker_.workers() > 1 && !layer_->knows_cancel(*m)) {
    uint32_t next = (worker_.id() + 1) % worker_.workers();
    in.parsed = m;  // a hand-off carries the parse (m may be our own parse of in.bytes)
    if (next != in.received_by && worker_.hand_off(next, in)) return;
  }
  count(*m);
  layer_->on_message(*m, in.from);
  rearm();
}

void SipWorker::rearm() {
  if (stopping_) return;
  static_assert(proxy::TransactionLayer::kNoDeadline == INT64_MAX, "plan_timer's kNever");
  // Wake at the next multiple of the slack: the timers due within one slack fire in one
  // wake-up instead of one each (at 1000 calls/s the stale timers of finished transactions
  // fall due in nearly every millisecond).
  const TimerArm plan = plan_timer(std::min(layer_->next_deadline(), core_->next_deadline()), armed_,
                                   clock_.now_ms(), slack_ms_);
  if (plan.action == TimerArm::Stop) uv_timer_stop(&timer_);
  if (plan.action == TimerArm::Start)
    uv_timer_start(&timer_, on_uv_timer, static_cast<uint64_t>(plan.delay_ms), 0);
  armed_ = plan.at_ms;
}

void SipWorker::on_uv_timer(uv_timer_t* t) {
  auto* self = static_cast<SipWorker*>(t->data);
  self->armed_ = -1;
  int64_t now = self->clock_.now_ms();
  self->layer_->on_timer(now);
  self->core_->on_timer(now);
  self->rearm();
}

}  // namespace sb::app
