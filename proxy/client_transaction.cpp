// Client transactions: RFC 3261 §17.1.1 (INVITE, with RFC 6026 Accepted) and §17.1.2
// (non-INVITE).
#include <algorithm>
#include <cassert>

#include "proxy/transaction.h"

namespace sb::proxy {

using S = TransactionState;

ClientTransaction::ClientTransaction(TransactionLayer& layer, uint64_t id,
                                     const TransactionKey& key, const core::Peer& to)
    : Transaction(layer, id, /*client=*/true, key.method == "INVITE", to) {
  key_.assign(key);
}

void ClientTransaction::start() {
  const Timers& t = timers();
  interval_ = t.t1_ms;
  if (invite_) {
    // §17.1.1.2: Timer A retransmits on unreliable transports only; Timer B bounds Calling.
    enter(S::Calling);
    if (!reliable_) arm(TimerKind::A, interval_);
    arm(TimerKind::B, 64 * t.t1_ms);
  } else {
    // §17.1.2.2: the same with E and F; their deadlines are kept for Proceeding.
    enter(S::Trying);
    f_deadline_ = now() + 64 * t.t1_ms;
    arm_at(TimerKind::F, f_deadline_);
    if (!reliable_) {
      e_deadline_ = now() + interval_;
      arm_at(TimerKind::E, e_deadline_);
    }
  }
  send(request_);
}

bool ClientTransaction::handle(TransactionEvent&& ev) {
  return std::visit([this](auto& e) { return on_event(e); }, ev);
}

bool ClientTransaction::on_event(const ResponseEvent& e) {
  return invite_ ? on_invite_response(e) : on_non_invite_response(e);
}

bool ClientTransaction::on_invite_response(const ResponseEvent& e) {
  const int status = e.response.status();
  switch (state_) {
    case S::Calling:
    case S::Proceeding:
      last_status_ = status;
      if (status < 200) {
        // §17.1.1.2: a provisional stops Timer A and B (the proxy's Timer C takes over).
        if (state_ == S::Calling) enter(S::Proceeding);
      } else if (status < 300) {
        // RFC 6026 §8.4: Accepted; Timer M keeps the transaction to pass further 2xx up.
        enter(S::Accepted);
        arm(TimerKind::M, 64 * timers().t1_ms);
      } else {
        // §17.1.1.2: ACK the failure ourselves, then absorb its retransmissions for Timer D.
        enter(S::Completed);
        arm(TimerKind::D, reliable_ ? 0 : timers().d_ms);
        send_ack(e.response);
      }
      tu().on_response(*this, e.response);
      return true;
    case S::Completed:
      if (status >= 300) {
        // §17.1.1.2: a retransmitted final is ACKed again and not passed up.
        ++counters().absorbed;
        ++counters().retransmissions_sent;
        send(ack_);
        return true;
      }
      if (status >= 200) {
        // A 2xx after our non-2xx (a downstream fork): as late as one after Terminated.
        ++counters().stray_responses;
        tu().on_stray_response(e.response, e.from);
        return true;
      }
      ++counters().absorbed;
      return true;
    case S::Accepted:
      if (status >= 200 && status < 300) {
        // RFC 6026 §8.4: every 2xx goes to the TU (retransmissions and other forks).
        last_status_ = status;
        tu().on_response(*this, e.response);
        return true;
      }
      ++counters().absorbed;
      return true;
    default:
      return false;
  }
}

bool ClientTransaction::on_non_invite_response(const ResponseEvent& e) {
  const int status = e.response.status();
  switch (state_) {
    case S::Trying:
    case S::Proceeding:
      last_status_ = status;
      if (status < 200) {
        if (state_ == S::Trying) {
          // §17.1.2.2: Timers E and F keep running in Proceeding; re-arm them in the new
          // generation at their old deadlines.
          enter(S::Proceeding);
          if (!reliable_) arm_at(TimerKind::E, e_deadline_);
          arm_at(TimerKind::F, f_deadline_);
        }
      } else {
        // §17.1.2.2: Timer K absorbs retransmitted finals (T4, 0 on reliable transports).
        enter(S::Completed);
        arm(TimerKind::K, reliable_ ? 0 : timers().t4_ms);
      }
      tu().on_response(*this, e.response);
      return true;
    case S::Completed:
      ++counters().absorbed;
      return true;
    default:
      return false;
  }
}

void ClientTransaction::send_ack(const core::Message& response) {
  // The request was parsed when it was started; re-reading our own copy costs less than
  // keeping its fields for every INVITE that never fails.
  core::Message req;
  [[maybe_unused]] core::Status st = req.parse(request_);
  assert(st.ok());
  ack_ = build_ack(req, response);
  send(ack_);
}

bool ClientTransaction::on_event(const TimerEvent& e) {
  const Timers& t = timers();
  switch (e.kind) {
    case TimerKind::A:
      if (state_ != S::Calling) return false;
      // §17.1.1.2: retransmit, the interval doubling without a cap until Timer B.
      ++counters().retransmissions_sent;
      interval_ *= 2;
      arm(TimerKind::A, interval_);
      send(request_);
      return true;
    case TimerKind::E:
      if (state_ != S::Trying && state_ != S::Proceeding) return false;
      // §17.1.2.2: doubling up to T2 in Trying; T2 once a provisional arrived.
      ++counters().retransmissions_sent;
      interval_ = state_ == S::Trying ? std::min(interval_ * 2, t.t2_ms) : t.t2_ms;
      e_deadline_ = now() + interval_;
      arm_at(TimerKind::E, e_deadline_);
      send(request_);
      return true;
    case TimerKind::B:
    case TimerKind::F:
      if (e.kind == TimerKind::B ? state_ != S::Calling
                                 : state_ != S::Trying && state_ != S::Proceeding)
        return false;
      // §17.1.1.2 / §17.1.2.2: no (final) response in time: tell the TU (a 408 for it).
      ++counters().client_timeouts;
      enter(S::Terminated);
      tu().on_client_timeout(*this);
      return true;
    case TimerKind::D:
    case TimerKind::K:
      if (state_ != S::Completed) return false;
      enter(S::Terminated);
      return true;
    case TimerKind::M:
      if (state_ != S::Accepted) return false;
      enter(S::Terminated);
      return true;
    default:
      return false;
  }
}

bool ClientTransaction::on_event(const TransportErrorEvent&) {
  error_posted_ = false;
  switch (state_) {
    case S::Calling:
    case S::Trying:
    case S::Proceeding:
      // §17.1.4: the TU learns of it (and fails over, RFC 3263) and the transaction ends.
      ++counters().transport_errors;
      enter(S::Terminated);
      tu().on_client_transport_error(*this);
      return true;
    default:
      // After a final the TU waits for nothing from us; Timer D / K / M end the transaction.
      return false;
  }
}

}  // namespace sb::proxy
