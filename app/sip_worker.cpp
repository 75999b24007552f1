#include "app/sip_worker.h"

#include "core/log.h"
#include "core/response.h"

namespace sb::app {

SipWorker::SipWorker(transport::Worker& worker, const proxy::LocalIdentity& identity,
                     std::unique_ptr<proxy::RoutingPolicy> policy, SipWorkerSettings settings,
                     std::unique_ptr<proxy::Resolver> resolver)
    : worker_(worker), policy_(std::move(policy)), resolver_(std::move(resolver)),
      settings_(std::move(settings)) {
  if (!resolver_) resolver_ = std::make_unique<proxy::NumericResolver>();
  settings_.proxy.worker_id = worker.id();
  core_ = std::make_unique<proxy::ProxyCore>(*this, identity, *resolver_, *policy_, settings_.proxy);
  layer_ = std::make_unique<proxy::TransactionLayer>(*this, *core_, settings_.timers, settings_.layer);
  core_->attach(*layer_);
  uv_timer_init(worker.loop(), &timer_);
  timer_.data = this;
}

SipWorker::~SipWorker() = default;

void SipWorker::on_stop(transport::Worker&) {
  stopping_ = true;
  uv_timer_stop(&timer_);
  // The handle is a member: it stays valid until the loop ran its close callback, because
  // this object outlives the worker's loop (the runtime destroys it after stop()).
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

bool SipWorker::send(const core::Peer& to, std::string_view bytes, uint64_t txn_id) {
  return worker_.send(to, bytes, txn_id);
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

void SipWorker::on_message(transport::Worker&, transport::Inbound& in) {
  if (stopping_) return;
  if (in.has_frame_error) {
    (void)msg_.parse(in.bytes, {settings_.max_headers});
    refuse_unparseable(in, in.frame_error);
    return;
  }
  const core::Message* m = in.parsed;
  if (!m) {
    core::Status st = msg_.parse(in.bytes, {settings_.max_headers});
    if (!st) {
      refuse_unparseable(in, st.error());
      return;
    }
    m = &msg_;
  }
  layer_->on_message(*m, in.from);
  rearm();
}

void SipWorker::rearm() {
  if (stopping_) return;
  int64_t next = std::min(layer_->next_deadline(), core_->next_deadline());
  if (next == proxy::TransactionLayer::kNoDeadline) {
    if (armed_ >= 0) uv_timer_stop(&timer_);
    armed_ = -1;
    return;
  }
  if (armed_ == next) return;
  int64_t delay = std::max<int64_t>(0, next - clock_.now_ms());
  uv_timer_start(&timer_, on_uv_timer, static_cast<uint64_t>(delay), 0);
  armed_ = next;
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
