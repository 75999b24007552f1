// One worker's SIP stack (DESIGN.md "A request's way through"): the transport hands it
// each message it owns; it answers what cannot be parsed (400 naming the fault, 505, 513,
// or a counted drop), feeds the rest to the transaction layer, whose user is the proxy
// core, and drives their timers with one uv timer. Lives on its worker's thread only.
#pragma once
#include <uv.h>

#include <memory>

#include "core/clock.h"
#include "core/message.h"
#include "proxy/proxy_core.h"
#include "proxy/resolver.h"
#include "proxy/routing_policy.h"
#include "proxy/transaction.h"
#include "transport/worker.h"

namespace sb::app {

struct SipWorkerSettings {
  proxy::Timers timers;
  proxy::LayerOptions layer;
  proxy::ProxySettings proxy;
  uint32_t max_headers = 256;
};

struct SipWorkerCounters {
  uint64_t bad_requests = 0;        // answered 400/505/501/513
  uint64_t dropped_unparseable = 0; // no usable Via, or a bad response: dropped
};

class SipWorker final : public transport::MessageHandler, public proxy::TransactionEnv {
 public:
  // `resolver` locates next hops (RFC 3263); null = IP literals only (proxy::NumericResolver).
  SipWorker(transport::Worker& worker, const proxy::LocalIdentity& identity,
            std::unique_ptr<proxy::RoutingPolicy> policy, SipWorkerSettings settings,
            std::unique_ptr<proxy::Resolver> resolver = nullptr);
  ~SipWorker() override;

  // transport::MessageHandler
  void on_message(transport::Worker& w, transport::Inbound& in) override;
  void on_send_error(transport::Worker& w, uint64_t cookie, const core::Peer& to) override;
  void on_stop(transport::Worker& w) override;

  // proxy::TransactionEnv
  const core::Clock& clock() const override { return clock_; }
  bool send(const core::Peer& to, std::string_view bytes, uint64_t txn_id) override;

  const SipWorkerCounters& counters() const { return counters_; }
  const proxy::TransactionLayer& layer() const { return *layer_; }
  const proxy::ProxyCore& proxy() const { return *core_; }

 private:
  void refuse_unparseable(const transport::Inbound& in, const core::Error& err);
  void rearm();
  static void on_uv_timer(uv_timer_t* t);

  transport::Worker& worker_;
  core::SystemClock clock_;
  std::unique_ptr<proxy::RoutingPolicy> policy_;
  std::unique_ptr<proxy::Resolver> resolver_;
  SipWorkerSettings settings_;
  std::unique_ptr<proxy::ProxyCore> core_;
  std::unique_ptr<proxy::TransactionLayer> layer_;
  core::Message msg_;  // reused for messages handed off unparsed
  uv_timer_t timer_{};
  int64_t armed_ = -1;
  bool stopping_ = false;
  SipWorkerCounters counters_;
};

}  // namespace sb::app
