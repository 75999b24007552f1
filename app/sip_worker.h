// One worker's SIP stack (DESIGN.md "A request's way through"): the transport hands it
// each message it owns; it answers what cannot be parsed (400 naming the fault, 505, 513,
// or a counted drop), feeds the rest to the transaction layer, whose user is the proxy
// core, and drives their timers with one uv timer. It owns the worker's routing policy,
// registrar view and identity, which a reload replaces through apply() on this thread.
#pragma once
#include <uv.h>

#include <array>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "core/clock.h"
#include "core/config.h"
#include "core/message.h"
#include "location/location_service.h"
#include "proxy/local_identity.h"
#include "proxy/policy_services.h"
#include "proxy/proxy_core.h"
#include "proxy/registrar.h"
#include "proxy/resolver.h"
#include "proxy/routing_policy.h"
#include "proxy/transaction.h"
#include "scripts/engine/lua_policy.h"
#include "transport/worker.h"

namespace sb::app {

// What a worker runs with; a reload builds a new one for every worker.
struct WorkerGeneration {
  uint64_t number = 0;
  std::shared_ptr<const core::Config> config;
  std::shared_ptr<scripts::ScriptGeneration> script;  // compiled for this worker (never shared)
  std::shared_ptr<const proxy::AuthSetup> auth;       // config auth + users file; null = off
};

struct SipWorkerCounters {
  uint64_t bad_requests = 0;        // answered 400/505/501/513
  uint64_t dropped_unparseable = 0; // no usable Via, or a bad response: dropped
};

// Buckets of the script time histogram (seconds).
inline constexpr std::array<double, 12> kScriptBuckets = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25};

// One worker's counters, taken on its thread (the runtime sums them).
struct WorkerReport {
  uint32_t id = 0;
  uint64_t generation = 0;
  proxy::TransactionCounters txn;
  proxy::ProxyCounters proxy;
  SipWorkerCounters sip;
  scripts::ScriptCounters script;
  transport::WorkerStats transport;
  std::array<uint64_t, 16> requests_by_method{};  // index: core::Method
  std::vector<std::pair<int, uint64_t>> responses_by_code;
  std::array<uint64_t, kScriptBuckets.size() + 1> script_buckets{};  // last: +Inf
  double script_seconds = 0;
  size_t transactions = 0;
};

class SipWorker final : public transport::MessageHandler, public proxy::TransactionEnv {
 public:
  // `resolver` locates next hops (RFC 3263); null = IP literals only (proxy::NumericResolver).
  SipWorker(transport::Worker& worker, location::LocationService& location, WorkerGeneration gen,
            std::unique_ptr<proxy::Resolver> resolver = nullptr);
  ~SipWorker() override;

  // Live reload, on this worker's thread: new requests use `gen`; requests in flight finish
  // with the script generation they started with.
  void apply(WorkerGeneration gen);
  WorkerReport report() const;

  // transport::MessageHandler
  void on_message(transport::Worker& w, transport::Inbound& in) override;
  void on_send_error(transport::Worker& w, uint64_t cookie, const core::Peer& to) override;
  void on_stop(transport::Worker& w) override;

  // proxy::TransactionEnv
  const core::Clock& clock() const override { return clock_; }
  bool send(const core::Peer& to, std::string_view bytes, uint64_t txn_id) override;

 private:
  class TimedPolicy;
  class ClusterPolicy;
  void configure(const core::Config& cfg);
  void refuse_unparseable(const transport::Inbound& in, const core::Error& err);
  void count(const core::Message& m);
  void rearm();
  static void on_uv_timer(uv_timer_t* t);

  transport::Worker& worker_;
  location::LocationService& location_;  // shared; read-through on a miss (docs/cluster.md)
  core::SystemClock clock_;
  WorkerGeneration gen_;
  proxy::LocalIdentity identity_;      // replaced in place on reload (the core keeps a reference)
  proxy::Registrar registrar_;
  proxy::RegistrarServices services_;
  std::unique_ptr<scripts::LuaPolicy> lua_;  // the script (every generation has one)
  std::unique_ptr<TimedPolicy> timed_;
  std::unique_ptr<ClusterPolicy> cluster_;
  std::unique_ptr<proxy::Resolver> resolver_;
  std::unique_ptr<proxy::ProxyCore> core_;
  std::unique_ptr<proxy::TransactionLayer> layer_;
  core::Message msg_;  // reused for messages that arrive unparsed
  uv_timer_t timer_{};
  int64_t armed_ = -1;     // the wake-up time the uv timer is set for (-1: none)
  int64_t slack_ms_ = 1;   // timer_slack_ms(t1)
  bool stopping_ = false;
  uint32_t max_headers_ = 256;
  SipWorkerCounters counters_;
  std::array<uint64_t, 16> by_method_{};
  std::array<uint64_t, 700> by_code_{};
  std::array<uint64_t, kScriptBuckets.size() + 1> script_buckets_{};
  double script_seconds_ = 0;
};

// What a config sets in the proxy's parts; workers, every reload and `route-test` share these.
// The proxy's view of our listeners: from the configuration (route-test, no transport), or
// from worker `w`'s listeners as bound (kernel-chosen ports, reply ports, transport slots).
proxy::LocalIdentity identity_from(const core::Config& cfg);
proxy::LocalIdentity identity_from(const core::Config& cfg, const transport::Worker& w);
proxy::RegistrarSettings registrar_settings_from(const core::Config& cfg);
scripts::ScriptLimits script_limits_from(const core::Config& cfg);
transport::SourceLimitSettings source_limits_from(const core::Config& cfg);  // config "security"

// A worker's transaction timers fire up to this many ms after their deadline: it wakes at
// multiples of the slack, so the timers falling due within one slack fire in one wake-up.
// t1/50 within 1..10 ms (10 ms at the default T1 of 500 ms: 2 % of a retransmission interval).
inline int64_t timer_slack_ms(int64_t t1_ms) { return t1_ms >= 500 ? 10 : t1_ms >= 100 ? t1_ms / 50 : 1; }
// The time to wake for a deadline: the first multiple of `slack` at or after it.
inline int64_t timer_wake_ms(int64_t deadline_ms, int64_t slack_ms) {
  return (deadline_ms + slack_ms - 1) / slack_ms * slack_ms;
}

// What the worker does with its one uv timer once the transactions' next deadline is known
// (SipWorker::rearm): leave it, stop it, or start it to fire at `at_ms`, `delay_ms` from now.
struct TimerArm {
  enum Action { Keep, Stop, Start } action = Keep;
  int64_t at_ms = -1;   // the wake-up time the timer is armed for afterwards (-1: none)
  int64_t delay_ms = 0;
};
// `next_deadline` is kNever (INT64_MAX) when no timer is pending; `armed_at` is the wake-up
// time the timer is armed for now (-1: not armed).
inline TimerArm plan_timer(int64_t next_deadline, int64_t armed_at, int64_t now_ms, int64_t slack_ms) {
  if (next_deadline == INT64_MAX) return {armed_at >= 0 ? TimerArm::Stop : TimerArm::Keep, -1, 0};
  const int64_t at = timer_wake_ms(next_deadline, slack_ms);
  if (at == armed_at) return {TimerArm::Keep, at, 0};
  return {TimerArm::Start, at, at > now_ms ? at - now_ms : 0};
}

}  // namespace sb::app
