// Server transactions: RFC 3261 §17.2.1 (INVITE, with RFC 6026 Accepted) and §17.2.2
// (non-INVITE).
#include <algorithm>
#include <cassert>
#include <utility>

#include "core/response.h"
#include "proxy/transaction.h"

namespace sb::proxy {

using S = TransactionState;

ServerTransaction::ServerTransaction(TransactionLayer& layer, uint64_t id,
                                     const core::Message& request, const core::Peer& from)
    : Transaction(layer, id, /*client=*/false, request.method() == core::Method::Invite,
                  response_destination(request, from)) {
  key_.assign(server_key(request));
}

void ServerTransaction::start(const core::Message& request) {
  if (!invite_) {
    enter(S::Trying);  // §17.2.2
    return;
  }
  enter(S::Proceeding);  // §17.2.1
  if (layer_.options_.send_100_trying) {
    // §16.2 / §17.2.1: a 100 stops the upstream's Timer A retransmissions; at once, or when
    // the TU has not answered within trying_delay_ms. Built now: the request is not kept.
    // Once sent it is not kept either: a retransmitted INVITE gets one built from itself
    // (the same Via, From, To, Call-ID and CSeq), so a transaction waiting for its callee
    // holds no copy.
    last_status_ = 100;
    trying_ = true;
    if (layer_.options_.trying_delay_ms > 0) {
      last_response_ = build_trying(request);
      trying_pending_ = true;
      arm(TimerKind::Trying, layer_.options_.trying_delay_ms);
    } else {
      send(build_trying(request));
    }
  }
}

std::string ServerTransaction::build_trying(const core::Message& request) {
  core::ResponseSpec spec;
  spec.status = 100;
  return core::build_response(request, spec);
}

void ServerTransaction::send_pending_trying() {
  trying_pending_ = false;
  send(last_response_);
  std::string().swap(last_response_);  // sent: from now on rebuilt from a retransmission
}

bool ServerTransaction::respond(int status, std::string bytes) {
  [[maybe_unused]] const bool was_terminated = state_ == S::Terminated;
  const bool done = handle(SendResponseEvent{status, std::move(bytes)});
  // Only timers and transport errors end a transaction (see transaction.h).
  assert(was_terminated || state_ != S::Terminated);
  return done;
}

bool ServerTransaction::handle(TransactionEvent&& ev) {
  return std::visit([this](auto& e) { return on_event(e); }, ev);
}

bool ServerTransaction::resend_last(const core::Message* request) {
  if (trying_) {
    // A retransmitted INVITE gets the deferred 100 now: it is the first sending, not a resend.
    if (trying_pending_) {
      send_pending_trying();
      return true;
    }
    if (!request) return false;
    ++counters().retransmissions_sent;
    send(build_trying(*request));
    return true;
  }
  if (last_response_.empty()) return false;
  ++counters().retransmissions_sent;
  send(last_response_);
  return true;
}

bool ServerTransaction::on_event(const RequestEvent& e) {
  const bool ack = e.request.method() == core::Method::Ack;
  if (invite_) {
    switch (state_) {
      case S::Proceeding:
        // §17.2.1: a retransmitted INVITE gets the latest provisional again. An ACK before
        // any final acknowledges nothing we sent.
        ++counters().absorbed;
        return ack ? false : resend_last(&e.request);
      case S::Completed:
        ++counters().absorbed;
        if (!ack) return resend_last();  // §17.2.1: the final again
        // §17.2.1: the ACK ends the retransmissions; Timer I absorbs further ACKs. The ACK
        // to a non-2xx stays in the transaction (hop-by-hop).
        enter(S::Confirmed);
        arm(TimerKind::I, reliable_ ? 0 : timers().t4_ms);
        return true;
      case S::Confirmed:
        ++counters().absorbed;
        return true;
      case S::Accepted:
        // RFC 6026 §8.7: an ACK goes up to the TU; an INVITE retransmission is absorbed
        // (2xx retransmissions are the UAS's business, we forward those it sends).
        if (ack) {
          tu().on_ack(*this, e.request);
          return true;
        }
        ++counters().absorbed;
        return true;
      default:
        return false;
    }
  }
  // §17.2.2: Trying discards a retransmission; Proceeding and Completed resend the
  // latest response.
  switch (state_) {
    case S::Trying:
      ++counters().absorbed;
      return true;
    case S::Proceeding:
    case S::Completed:
      ++counters().absorbed;
      return resend_last();
    default:
      return false;
  }
}

bool ServerTransaction::on_event(SendResponseEvent& e) {
  if (e.status < 100 || e.status > 699) return false;
  return invite_ ? on_invite_response(e) : on_non_invite_response(e);
}

bool ServerTransaction::on_invite_response(SendResponseEvent& e) {
  const Timers& t = timers();
  switch (state_) {
    case S::Proceeding:
      trying_pending_ = false;  // answered in time: the 100 is not needed (§17.2.1)
      trying_ = false;
      last_status_ = e.status;
      last_response_ = std::move(e.bytes);
      if (e.status >= 200 && e.status < 300) {
        // RFC 6026 §8.5: Accepted; Timer L keeps the transaction for ACKs, INVITE
        // retransmissions and further 2xx.
        enter(S::Accepted);
        arm(TimerKind::L, 64 * t.t1_ms);
      } else if (e.status >= 300) {
        // §17.2.1: Timer G retransmits (unreliable only) until the ACK; H gives up on it.
        enter(S::Completed);
        interval_ = t.t1_ms;
        if (!reliable_) arm(TimerKind::G, interval_);
        arm(TimerKind::H, 64 * t.t1_ms);
      }
      send(last_response_);
      return true;
    case S::Accepted:
      // RFC 6026 §8.7: 2xx the TU passes in Accepted are sent (a forking proxy forwards
      // every 2xx); nothing else is.
      if (e.status < 200 || e.status >= 300) return false;
      last_status_ = e.status;
      send(e.bytes);
      return true;
    default:
      return false;
  }
}

bool ServerTransaction::on_non_invite_response(SendResponseEvent& e) {
  switch (state_) {
    case S::Trying:
    case S::Proceeding:
      last_status_ = e.status;
      last_response_ = std::move(e.bytes);
      if (e.status < 200) {
        if (state_ == S::Trying) enter(S::Proceeding);
      } else {
        // §17.2.2: Timer J absorbs request retransmissions (64*T1, 0 on reliable transports).
        enter(S::Completed);
        arm(TimerKind::J, reliable_ ? 0 : 64 * timers().t1_ms);
      }
      send(last_response_);
      return true;
    default:
      return false;
  }
}

bool ServerTransaction::on_event(const TimerEvent& e) {
  switch (e.kind) {
    case TimerKind::G:
      if (state_ != S::Completed) return false;
      // §17.2.1: resend the final, the interval doubling up to T2.
      interval_ = std::min(interval_ * 2, timers().t2_ms);
      arm(TimerKind::G, interval_);
      return resend_last();
    case TimerKind::H:
      if (state_ != S::Completed) return false;
      // §17.2.1: the ACK never came.
      ++counters().server_timeouts;
      enter(S::Terminated);
      tu().on_server_timeout(*this);
      return true;
    case TimerKind::I:
      if (state_ != S::Confirmed) return false;
      enter(S::Terminated);
      return true;
    case TimerKind::J:
      if (state_ != S::Completed || invite_) return false;
      enter(S::Terminated);
      return true;
    case TimerKind::L:
      if (state_ != S::Accepted) return false;
      enter(S::Terminated);
      return true;
    case TimerKind::Trying:
      // §17.2.1: nothing went upstream within trying_delay_ms: the 100 goes now.
      if (state_ != S::Proceeding || !trying_pending_) return false;
      send_pending_trying();
      return true;
    default:
      return false;
  }
}

bool ServerTransaction::on_event(const TransportErrorEvent&) {
  error_posted_ = false;
  switch (state_) {
    case S::Trying:
    case S::Proceeding:
    case S::Completed:
    case S::Accepted:
      // §17.2.4: the response cannot reach the client; the TU learns of it.
      ++counters().transport_errors;
      enter(S::Terminated);
      tu().on_server_transport_error(*this);
      return true;
    default:
      // Confirmed: everything was sent and acknowledged.
      return false;
  }
}

}  // namespace sb::proxy
