// The SIP transaction layer (RFC 3261 §17, RFC 6026), one per worker, single-threaded.
//
// It never does I/O: it sends through a TransactionEnv the worker implements and reads time
// from the env's clock, and its timers live in a TimerQueue the worker drives
// (next_deadline() / on_timer()). So every state machine runs in tests on a FakeClock with
// an in-memory env.
//
// Callback rules (what the TU may rely on):
//  - The TU is called back only from on_message, on_timer and on_transport_error, never from
//    inside start_client() or ServerTransaction::respond(). A send the env refuses is
//    reported from the next on_timer (its deadline is "now"), exactly like an asynchronous
//    failure reported through on_transport_error.
//  - A transaction ends (Terminated) only from a timer or a transport error. on_terminated(id)
//    is the last callback about it; the object is destroyed when that call returns, so the
//    TU must drop its references there. Timers of zero length (D, I, J, K on reliable
//    transports) fire on the next on_timer, not inside the call that started them.
//  - A transaction's callbacks are the last thing its handler does, so the TU may call back
//    into the layer (start_client, respond) from any of them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include "core/address.h"
#include "core/clock.h"
#include "core/message.h"
#include "proxy/flat_tables.h"
#include "proxy/timer_queue.h"
#include "proxy/transaction_key.h"

namespace sb::proxy {

// RFC 3261 §17.1.1.1 and Table 4: the base values every timer derives from (config "timers").
struct Timers {
  int64_t t1_ms = 500;     // RTT estimate
  int64_t t2_ms = 4000;    // cap on non-INVITE request and INVITE response retransmit intervals
  int64_t t4_ms = 5000;    // how long a message may stay in the network
  int64_t d_ms = 32000;    // Timer D on unreliable transports: "at least 32 s" (§17.1.1.2)
};

struct LayerOptions {
  // STYLE.md 10: a new request beyond this many transactions goes to on_overload instead.
  size_t max_transactions = 100'000;
  // RFC 3261 §16.2 / §17.2.1: a stateful proxy answers an INVITE with 100 Trying.
  bool send_100_trying = true;
  // §17.2.1: the 100 may be left out when the TU answers (a provisional or final) within
  // 200 ms. It is sent only if nothing was after this long (Timer Trying; 0: at once), which
  // saves a datagram per call when the callee rings quickly. Keep it below the upstream's
  // T1 (Timer A), so the INVITE is not retransmitted meanwhile.
  int64_t trying_delay_ms = 0;
};

// The states of RFC 3261 §17 and RFC 6026 (Accepted).
enum class TransactionState : uint8_t {
  Calling, Trying, Proceeding, Completed, Confirmed, Accepted, Terminated
};
std::string_view state_name(TransactionState s);

// Timer names of RFC 3261 §17 / RFC 6026, plus the deferred report of a refused send.
enum class TimerKind : uint8_t {
  A, B, D, E, F, K, M, ClientTransportError,  // client transactions
  G, H, I, J, L, ServerTransportError,        // server transactions
  Trying,                                     // the deferred 100 Trying (LayerOptions)
};
std::string_view timer_name(TimerKind k);
inline bool is_client_timer(TimerKind k) { return k <= TimerKind::ClientTransportError; }

// The events a transaction's one entry point takes (STYLE.md 3). Views in them are valid
// only during the call.
struct RequestEvent {
  const core::Message& request;
  const core::Peer& from;
};
struct ResponseEvent {
  const core::Message& response;
  const core::Peer& from;
};
struct TimerEvent {
  TimerKind kind;
};
struct TransportErrorEvent {};
struct SendResponseEvent {
  int status;
  std::string bytes;
};
using TransactionEvent =
    std::variant<RequestEvent, ResponseEvent, TimerEvent, TransportErrorEvent, SendResponseEvent>;

// Plain counters, read by the worker's metrics. Gauges are "alive now", the rest totals.
struct TransactionCounters {
  uint64_t active_client_invite = 0;
  uint64_t active_client_non_invite = 0;
  uint64_t active_server_invite = 0;
  uint64_t active_server_non_invite = 0;
  uint64_t created_client = 0;
  uint64_t created_server = 0;
  // Requests re-sent by Timer A/E, responses by Timer G or for a retransmitted request,
  // ACKs re-sent for a retransmitted non-2xx final.
  uint64_t retransmissions_sent = 0;
  // Received messages consumed without reaching the TU: request and response
  // retransmissions, ACKs to non-2xx finals.
  uint64_t absorbed = 0;
  uint64_t stray_responses = 0;  // no client transaction matched (on_stray_response)
  uint64_t stray_acks = 0;       // ACK matching no transaction (on_request with nullptr)
  uint64_t client_timeouts = 0;  // Timer B / F
  uint64_t server_timeouts = 0;  // Timer H
  uint64_t transport_errors = 0;
  uint64_t overloaded = 0;       // new requests refused by max_transactions
  uint64_t stale_timers = 0;     // timers fired for a gone transaction or an old generation
};

// What the worker provides.
class TransactionEnv {
 public:
  virtual ~TransactionEnv() = default;
  virtual const core::Clock& clock() const = 0;
  // Send `bytes` to `to` (over `to.connection` for streams). False on an immediate failure;
  // a later one (TCP connect refused) comes back as TransactionLayer::on_transport_error.
  virtual bool send(const core::Peer& to, std::string_view bytes, uint64_t txn_id) = 0;
};

class ClientTransaction;
class ServerTransaction;

// What the proxy core implements. Called synchronously, see the rules at the top.
class TransactionUser {
 public:
  virtual ~TransactionUser() = default;
  // A new request. `txn` is its new server transaction, or nullptr for an ACK that matched
  // none (an ACK to a 2xx, its own transaction, §17.1.1.3: forward it statelessly).
  virtual void on_request(ServerTransaction* txn, const core::Message& req,
                          const core::Peer& from) = 0;
  // Every response the TU must see: provisionals, the final, and in Accepted every further
  // 2xx (retransmissions and other forks' 2xx, RFC 6026 §8.4).
  virtual void on_response(ClientTransaction& txn, const core::Message& resp) = 0;
  // A response matching no client transaction (§16.7 / §18.1.2: the TU forwards it by Via
  // or drops it). Also a 2xx reaching an INVITE client transaction already Completed by a
  // non-2xx: it is as late as one after the transaction ended, so it takes the same way.
  virtual void on_stray_response(const core::Message& resp, const core::Peer& from) = 0;
  // Timer B (INVITE, no response at all) or F (non-INVITE, no final) fired (§17.1.1.2,
  // §17.1.2.2). The transaction is Terminated.
  virtual void on_client_timeout(ClientTransaction& txn) = 0;
  // The request could not be sent (§17.1.4). Reported only before a final response; the
  // transaction is Terminated.
  virtual void on_client_transport_error(ClientTransaction& txn) = 0;
  // Timer H fired: a non-2xx final to an INVITE was never ACKed (§17.2.1). Terminated.
  virtual void on_server_timeout(ServerTransaction& txn) = 0;
  // A response could not be sent (§17.2.4). Terminated.
  virtual void on_server_transport_error(ServerTransaction& txn) = 0;
  // An ACK matching an INVITE server transaction in Accepted (RFC 6026 §8.7: pass it up).
  virtual void on_ack(ServerTransaction& txn, const core::Message& ack) = 0;
  // A new request refused by max_transactions; the TU answers 503 + Retry-After statelessly.
  virtual void on_overload(const core::Message& req, const core::Peer& from) = 0;
  // The transaction is gone when this returns (see the rules at the top).
  virtual void on_terminated(uint64_t txn_id) = 0;
};

class TransactionLayer;

// What client and server transactions share. Not polymorphic: the layer knows which is which.
class Transaction {
 public:
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  uint64_t id() const { return id_; }
  TransactionState state() const { return state_; }
  bool is_invite() const { return invite_; }
  // The CSeq method, e.g. "INVITE", "CANCEL", "BYE".
  std::string_view method() const { return key_.view().method; }
  // Where this transaction sends: the next hop (client) or the response target (server).
  const core::Peer& peer() const { return peer_; }
  bool reliable() const { return reliable_; }
  // The status of the last response received (client) or sent (server), 0 before any.
  int last_status() const { return last_status_; }
  // Bumped on every state change; a timer armed in an older generation is stale.
  uint32_t generation() const { return generation_; }
  // An opaque slot for the TU (e.g. its ResponseContext branch), untouched by the layer.
  void* user_data() const { return user_data_; }
  void set_user_data(void* p) { user_data_ = p; }

 protected:
  Transaction(TransactionLayer& layer, uint64_t id, bool client, bool invite,
              const core::Peer& peer);
  ~Transaction() = default;

  void enter(TransactionState s);
  // Arm a timer `after_ms` from now (0: on the next on_timer), in the current generation.
  void arm(TimerKind k, int64_t after_ms);
  void arm_at(TimerKind k, int64_t deadline_ms);
  // Hand bytes to the env. On an immediate failure, schedule the transport error report.
  bool send(std::string_view bytes);
  // Deliver a TransportErrorEvent from the next on_timer (once, however many failures).
  void post_transport_error();
  int64_t now() const;
  const Timers& timers() const;
  TransactionUser& tu() const;
  TransactionCounters& counters() const;

  TransactionLayer& layer_;
  StoredKey key_;
  uint64_t key_hash_ = 0;  // TransactionKeyHash of key_: its index entry
  core::Peer peer_;
  uint64_t id_;
  void* user_data_ = nullptr;
  int64_t interval_ = 0;  // the current Timer A / E / G interval
  uint32_t generation_ = 0;
  int last_status_ = 0;
  TransactionState state_ = TransactionState::Terminated;
  bool client_;
  bool invite_;
  bool reliable_;
  bool error_posted_ = false;  // a transport error report is pending
  bool busy_ = false;          // inside its entry point (re-entry guard)

  friend class TransactionLayer;
};

// RFC 3261 §17.1.1 (INVITE, with RFC 6026 Accepted) and §17.1.2 (non-INVITE).
class ClientTransaction final : public Transaction {
 public:
  std::string_view branch() const { return key_.view().branch; }
  // The request as sent (and retransmitted).
  std::string_view request() const { return request_; }

 private:
  friend class TransactionLayer;
  ClientTransaction(TransactionLayer& layer, uint64_t id, const TransactionKey& key,
                    const core::Peer& to);
  void start();
  // The one entry point (STYLE.md 3). True when the event did something.
  bool handle(TransactionEvent&& ev);
  bool on_event(const RequestEvent&) { return false; }
  bool on_event(SendResponseEvent&) { return false; }
  bool on_event(const ResponseEvent& e);
  bool on_event(const TimerEvent& e);
  bool on_event(const TransportErrorEvent& e);
  bool on_invite_response(const ResponseEvent& e);
  bool on_non_invite_response(const ResponseEvent& e);
  void send_ack(const core::Message& response);

  std::string request_;
  std::string ack_;          // the ACK to a non-2xx final, kept for its retransmissions
  int64_t e_deadline_ = 0;   // Timer E and F outlive Trying -> Proceeding (§17.1.2.2)
  int64_t f_deadline_ = 0;
};

// RFC 3261 §17.2.1 (INVITE, with RFC 6026 Accepted) and §17.2.2 (non-INVITE).
class ServerTransaction final : public Transaction {
 public:
  // Send a response the TU built (RFC 3261 §17.2.1, §17.2.2). Provisionals while no final
  // was sent; one final; in Accepted further 2xx (a forking proxy forwards every 2xx,
  // RFC 6026 §8.7). Returns false when the state takes no such response (it is dropped).
  bool respond(int status, std::string bytes);
  // The last response sent, resent for retransmitted requests and by Timer G. Empty while
  // the last one is our 100 Trying once sent: that one is rebuilt from the retransmission.
  std::string_view last_response() const { return last_response_; }

 private:
  friend class TransactionLayer;
  ServerTransaction(TransactionLayer& layer, uint64_t id, const core::Message& request,
                    const core::Peer& from);
  void start(const core::Message& request);
  bool handle(TransactionEvent&& ev);
  bool on_event(const ResponseEvent&) { return false; }
  bool on_event(const RequestEvent& e);
  bool on_event(const TimerEvent& e);
  bool on_event(const TransportErrorEvent& e);
  bool on_event(SendResponseEvent& e);
  bool on_invite_response(SendResponseEvent& e);
  bool on_non_invite_response(SendResponseEvent& e);
  // The last response again, for a retransmitted `request` (nullptr: Timer G).
  bool resend_last(const core::Message* request = nullptr);
  static std::string build_trying(const core::Message& request);
  void send_pending_trying();

  std::string last_response_;
  bool trying_ = false;          // the last response is our 100 (kept only until sent)
  bool trying_pending_ = false;  // last_response_ is that 100, not sent yet (trying_delay_ms)
};

class TransactionLayer {
 public:
  static constexpr int64_t kNoDeadline = TimerQueue::kNever;

  TransactionLayer(TransactionEnv& env, TransactionUser& tu, Timers timers = {},
                   LayerOptions options = {});
  ~TransactionLayer();
  TransactionLayer(const TransactionLayer&) = delete;
  TransactionLayer& operator=(const TransactionLayer&) = delete;

  // The one entry point for a message that parsed without error. Responses go to their
  // client transaction (§17.1.3), requests to their server transaction (§17.2.3) or make a
  // new one. `m` and `from` need live only during the call.
  void on_message(const core::Message& m, const core::Peer& from);

  // Send a request the TU built and start its client transaction. `request` is `bytes`
  // parsed (or any parse of the same text): the layer copies what it needs from it before
  // taking `bytes`. The top Via must carry a branch from core::make_branch (unique, magic
  // cookie); the transaction is keyed by that branch and the CSeq method. Not for ACK (an
  // ACK to a 2xx is no transaction: the TU sends it through the env). Never calls the TU.
  ClientTransaction& start_client(std::string bytes, const core::Message& request,
                                  const core::Peer& to);
  // The same, keyed by the top Via `branch` and CSeq `method` of `bytes` as the caller
  // built them (no parse of what it just wrote). The views may point into `bytes`.
  ClientTransaction& start_client(std::string bytes, std::string_view branch,
                                  std::string_view method, const core::Peer& to);

  // RFC 3261 §9.2: the INVITE server transaction a CANCEL targets (matched as in §17.2.3
  // with method INVITE); nullptr when there is none.
  ServerTransaction* find_server_invite(const core::Message& cancel);
  // Whether a CANCEL means anything here: its own server transaction (a retransmission) or
  // the INVITE it targets exists on this layer.
  bool knows_cancel(const core::Message& cancel);

  // An asynchronous send failure reported by the transport for a transaction's send.
  void on_transport_error(uint64_t txn_id);

  // When on_timer must next run (kNoDeadline when no timer is pending).
  int64_t next_deadline() const { return queue_.next_deadline(); }
  // Fire every timer due at `now`.
  void on_timer(int64_t now);

  ClientTransaction* find_client(uint64_t id);
  ServerTransaction* find_server(uint64_t id);
  size_t size() const { return clients_.size() + servers_.size(); }
  size_t pending_timers() const { return queue_.size(); }
  const TransactionCounters& counters() const { return counters_; }
  const Timers& timers() const { return timers_; }
  // Live reload: timer values and limits for what follows (timers already armed keep theirs).
  void set_timers(Timers timers) { timers_ = timers; }
  void set_options(LayerOptions options) { options_ = options; }

 private:
  friend class Transaction;
  friend class ClientTransaction;
  friend class ServerTransaction;

  void on_response(const core::Message& m, const core::Peer& from);
  ServerTransaction* find_server(const TransactionKey& key, uint64_t hash);
  void on_request(const core::Message& m, const core::Peer& from);
  void fire(const TimerEntry& t);
  void dispatch(ClientTransaction& t, TransactionEvent&& ev);
  void dispatch(ServerTransaction& t, TransactionEvent&& ev);
  void finish(ClientTransaction& t);
  void finish(ServerTransaction& t);

  TransactionEnv& env_;
  TransactionUser& tu_;
  Timers timers_;
  LayerOptions options_;
  TimerQueue queue_;
  IdTable<ClientTransaction> clients_;
  IdTable<ServerTransaction> servers_;
  // Keys view into the transactions' StoredKeys; an entry goes before its transaction.
  HashIndex<ClientTransaction> client_index_;
  HashIndex<ServerTransaction> server_index_;
  TransactionCounters counters_;
  uint64_t next_id_ = 1;
};

// RFC 3261 §17.1.1.3: the ACK a client transaction sends for a 300-699 final: the
// request's Request-URI, Call-ID, From, CSeq number and Route headers, its top Via alone,
// the response's To, CSeq method ACK.
std::string build_ack(const core::Message& request, const core::Message& response);
// RFC 3261 §9.1: the CANCEL for a pending request: the same fields, with the request's To
// and CSeq method CANCEL. For the proxy core (§16.10); sent as its own client transaction.
std::string build_cancel(const core::Message& request);
// RFC 3261 §18.2.2 / RFC 3581 §4: where responses to a request go. Streams: back over the
// connection it came on. UDP: maddr, else the source address, at the source port when the top Via has
// rport, else at the sent-by port (default 5060); maddr when it is an IP literal.
core::Peer response_destination(const core::Message& request, const core::Peer& from);

}  // namespace sb::proxy
