// What client and server transactions share: timers, sending, names, and the hop-by-hop
// requests a transaction builds itself (ACK to a non-2xx, and CANCEL for the proxy core).
#include <charconv>

#include "proxy/transaction.h"

#include "transport/response_route.h"

namespace sb::proxy {

std::string_view state_name(TransactionState s) {
  switch (s) {
    case TransactionState::Calling: return "Calling";
    case TransactionState::Trying: return "Trying";
    case TransactionState::Proceeding: return "Proceeding";
    case TransactionState::Completed: return "Completed";
    case TransactionState::Confirmed: return "Confirmed";
    case TransactionState::Accepted: return "Accepted";
    case TransactionState::Terminated: return "Terminated";
  }
  return "?";
}

std::string_view timer_name(TimerKind k) {
  switch (k) {
    case TimerKind::A: return "A";
    case TimerKind::B: return "B";
    case TimerKind::D: return "D";
    case TimerKind::E: return "E";
    case TimerKind::F: return "F";
    case TimerKind::K: return "K";
    case TimerKind::M: return "M";
    case TimerKind::ClientTransportError: return "client transport error";
    case TimerKind::G: return "G";
    case TimerKind::H: return "H";
    case TimerKind::I: return "I";
    case TimerKind::J: return "J";
    case TimerKind::L: return "L";
    case TimerKind::ServerTransportError: return "server transport error";
    case TimerKind::Trying: return "Trying";
  }
  return "?";
}

Transaction::Transaction(TransactionLayer& layer, uint64_t id, bool client, bool invite,
                         const core::Peer& peer)
    : layer_(layer), peer_(peer), id_(id), client_(client), invite_(invite),
      reliable_(core::is_reliable(peer.protocol)) {}

void Transaction::enter(TransactionState s) {
  state_ = s;
  // STYLE.md 4: timers armed in the previous state become stale instead of being cancelled.
  ++generation_;
}

void Transaction::arm(TimerKind k, int64_t after_ms) { arm_at(k, now() + after_ms); }

void Transaction::arm_at(TimerKind k, int64_t deadline_ms) {
  layer_.queue_.schedule(id_, generation_, static_cast<uint8_t>(k), deadline_ms);
}

bool Transaction::send(std::string_view bytes) {
  if (layer_.env_.send(peer_, bytes, id_)) return true;
  // RFC 3261 §17.1.4 / §17.2.4. Reported from the next on_timer, so the TU is never called
  // back from inside start_client() or respond().
  post_transport_error();
  return false;
}

void Transaction::post_transport_error() {
  if (error_posted_) return;
  error_posted_ = true;
  arm(client_ ? TimerKind::ClientTransportError : TimerKind::ServerTransportError, 0);
}

int64_t Transaction::now() const { return layer_.env_.clock().now_ms(); }
const Timers& Transaction::timers() const { return layer_.timers_; }
TransactionUser& Transaction::tu() const { return layer_.tu_; }
TransactionCounters& Transaction::counters() const { return layer_.counters_; }

namespace {

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
}

std::string_view header_value(const core::Message& m, core::HeaderId id) {
  const core::Header* h = m.find(id);
  return h ? h->value : std::string_view{};
}

// The hop-by-hop request shape shared by ACK (§17.1.1.3) and CANCEL (§9.1).
std::string build_hop_request(const core::Message& req, std::string_view method,
                              std::string_view to) {
  std::string_view from = header_value(req, core::HeaderId::From);
  std::string out;
  out.reserve(160 + req.ruri_text().size() + req.top_via().raw.size() + from.size() +
              to.size() + req.call_id().size());
  out.append(method).append(" ").append(req.ruri_text()).append(" SIP/2.0\r\n");
  out.append("Via: ").append(req.top_via().raw).append("\r\n");
  req.for_each(core::HeaderId::Route, [&](const core::Header& h) {
    out.append("Route: ").append(h.value).append("\r\n");
    return true;
  });
  out.append("Max-Forwards: ");
  append_uint(out, req.max_forwards() >= 0 ? static_cast<uint64_t>(req.max_forwards()) : 70);
  out.append("\r\nFrom: ").append(from);
  out.append("\r\nTo: ").append(to);
  out.append("\r\nCall-ID: ").append(req.call_id());
  out.append("\r\nCSeq: ");
  append_uint(out, req.cseq().number);
  out.append(" ").append(method).append("\r\nContent-Length: 0\r\n\r\n");
  return out;
}

}  // namespace

std::string build_ack(const core::Message& request, const core::Message& response) {
  return build_hop_request(request, "ACK", header_value(response, core::HeaderId::To));
}

std::string build_cancel(const core::Message& request) {
  return build_hop_request(request, "CANCEL", header_value(request, core::HeaderId::To));
}

core::Peer response_destination(const core::Message& request, const core::Peer& from) {
  // §18.2.2 / RFC 3581 §4 (maddr, received, rport, the connection for streams): one rule,
  // the transport's.
  return transport::response_destination(request.top_via(), from);
}

}  // namespace sb::proxy
