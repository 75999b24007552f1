// The transaction layer: matching (RFC 3261 §17.1.3, §17.2.3), creation, the bound on
// transactions in flight, timers and the end of a transaction's life.
#include <cassert>

#include "proxy/transaction.h"

namespace sb::proxy {

using S = TransactionState;

TransactionLayer::TransactionLayer(TransactionEnv& env, TransactionUser& tu, Timers timers,
                                   LayerOptions options)
    : env_(env), tu_(tu), timers_(timers), options_(options) {}

TransactionLayer::~TransactionLayer() {
  // The index keys view into the transactions: drop them first.
  client_index_.clear();
  server_index_.clear();
}

void TransactionLayer::on_message(const core::Message& m, const core::Peer& from) {
  if (m.is_response())
    on_response(m, from);
  else
    on_request(m, from);
}

void TransactionLayer::on_response(const core::Message& m, const core::Peer& from) {
  auto it = client_index_.find(client_key(m));
  if (it == client_index_.end()) {
    ++counters_.stray_responses;
    tu_.on_stray_response(m, from);
    return;
  }
  dispatch(*it->second, ResponseEvent{m, from});
}

void TransactionLayer::on_request(const core::Message& m, const core::Peer& from) {
  auto it = server_index_.find(server_key(m));
  if (it != server_index_.end()) {
    dispatch(*it->second, RequestEvent{m, from});
    return;
  }
  if (m.method() == core::Method::Ack) {
    // §17.1.1.3 / §17.2.3: an ACK to a 2xx is its own (transaction-less) request.
    ++counters_.stray_acks;
    tu_.on_request(nullptr, m, from);
    return;
  }
  if (size() >= options_.max_transactions) {
    // STYLE.md 10: no transaction beyond the bound; the TU sheds it (503 + Retry-After).
    ++counters_.overloaded;
    tu_.on_overload(m, from);
    return;
  }
  const uint64_t id = next_id_++;
  std::unique_ptr<ServerTransaction> owned(new ServerTransaction(*this, id, m, from));
  ServerTransaction& t = *owned;
  servers_.emplace(id, std::move(owned));
  server_index_.emplace(t.key_.view(), &t);
  ++counters_.created_server;
  ++(t.invite_ ? counters_.active_server_invite : counters_.active_server_non_invite);
  t.start(m);
  t.busy_ = true;
  tu_.on_request(&t, m, from);
  t.busy_ = false;
}

ClientTransaction& TransactionLayer::start_client(std::string bytes,
                                                  const core::Message& request,
                                                  const core::Peer& to) {
  assert(request.is_request() && request.method() != core::Method::Ack);
  const TransactionKey key = client_key(request);
  return start_client(std::move(bytes), key.branch, key.method, to);
}

ClientTransaction& TransactionLayer::start_client(std::string bytes, std::string_view branch,
                                                  std::string_view method, const core::Peer& to) {
  assert(method != "ACK" && branch.starts_with("z9hG4bK"));
  const uint64_t id = next_id_++;
  TransactionKey key;
  key.branch = branch;
  key.method = method;
  // The key is copied before `bytes` (which it may view) moves.
  std::unique_ptr<ClientTransaction> owned(new ClientTransaction(*this, id, key, to));
  owned->request_ = std::move(bytes);
  ClientTransaction& t = *owned;
  [[maybe_unused]] bool inserted = client_index_.emplace(t.key_.view(), &t).second;
  // core::make_branch is unique per worker; a clash is a TU bug. Without an index entry
  // the transaction still runs its timers; responses go to the first one.
  assert(inserted);
  clients_.emplace(id, std::move(owned));
  ++counters_.created_client;
  ++(t.invite_ ? counters_.active_client_invite : counters_.active_client_non_invite);
  t.start();
  return t;
}

ServerTransaction* TransactionLayer::find_server_invite(const core::Message& cancel) {
  // §9.2: the CANCEL's own matching fields with method INVITE.
  auto it = server_index_.find(server_key(cancel, "INVITE"));
  return it == server_index_.end() ? nullptr : it->second;
}

bool TransactionLayer::knows_cancel(const core::Message& cancel) const {
  return server_index_.count(server_key(cancel)) || server_index_.count(server_key(cancel, "INVITE"));
}

ClientTransaction* TransactionLayer::find_client(uint64_t id) {
  auto it = clients_.find(id);
  return it == clients_.end() ? nullptr : it->second.get();
}

ServerTransaction* TransactionLayer::find_server(uint64_t id) {
  auto it = servers_.find(id);
  return it == servers_.end() ? nullptr : it->second.get();
}

void TransactionLayer::on_transport_error(uint64_t txn_id) {
  // A transaction inside its own handler (the TU reporting from a callback) gets the
  // error from the next on_timer instead of being ended under its caller.
  if (ClientTransaction* c = find_client(txn_id)) {
    if (c->busy_)
      c->post_transport_error();
    else
      dispatch(*c, TransportErrorEvent{});
  } else if (ServerTransaction* s = find_server(txn_id)) {
    if (s->busy_)
      s->post_transport_error();
    else
      dispatch(*s, TransportErrorEvent{});
  }
  // Otherwise the transaction already ended: nothing waits for the error.
}

void TransactionLayer::on_timer(int64_t now) {
  queue_.pop_due(now, [this](const TimerEntry& e) { fire(e); });
}

void TransactionLayer::fire(const TimerEntry& e) {
  const auto kind = static_cast<TimerKind>(e.kind);
  // A transport error report is for the transaction whatever its generation: the state
  // machine decides whether it still matters.
  const bool error =
      kind == TimerKind::ClientTransportError || kind == TimerKind::ServerTransportError;
  if (is_client_timer(kind)) {
    ClientTransaction* t = find_client(e.owner_id);
    if (!t || (!error && t->generation_ != e.generation)) {
      ++counters_.stale_timers;  // STYLE.md 4: a stale timer does nothing
      return;
    }
    if (error) dispatch(*t, TransportErrorEvent{});
    else dispatch(*t, TimerEvent{kind});
  } else {
    ServerTransaction* t = find_server(e.owner_id);
    if (!t || (!error && t->generation_ != e.generation)) {
      ++counters_.stale_timers;
      return;
    }
    if (error) dispatch(*t, TransportErrorEvent{});
    else dispatch(*t, TimerEvent{kind});
  }
}

void TransactionLayer::dispatch(ClientTransaction& t, TransactionEvent&& ev) {
  t.busy_ = true;
  t.handle(std::move(ev));
  t.busy_ = false;
  if (t.state_ == S::Terminated) finish(t);
}

void TransactionLayer::dispatch(ServerTransaction& t, TransactionEvent&& ev) {
  t.busy_ = true;
  t.handle(std::move(ev));
  t.busy_ = false;
  if (t.state_ == S::Terminated) finish(t);
}

void TransactionLayer::finish(ClientTransaction& t) {
  auto it = client_index_.find(t.key_.view());
  if (it != client_index_.end() && it->second == &t) client_index_.erase(it);
  --(t.invite_ ? counters_.active_client_invite : counters_.active_client_non_invite);
  const uint64_t id = t.id_;
  tu_.on_terminated(id);
  clients_.erase(id);
}

void TransactionLayer::finish(ServerTransaction& t) {
  auto it = server_index_.find(t.key_.view());
  if (it != server_index_.end() && it->second == &t) server_index_.erase(it);
  --(t.invite_ ? counters_.active_server_invite : counters_.active_server_non_invite);
  const uint64_t id = t.id_;
  tu_.on_terminated(id);
  servers_.erase(id);
}

}  // namespace sb::proxy
