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
  // The indexes point at the transactions: drop them first.
  client_index_.clear();
  server_index_.clear();
}

namespace {

uint64_t hash_of(const TransactionKey& k) { return TransactionKeyHash{}(k); }

}  // namespace

void TransactionLayer::on_message(const core::Message& m, const core::Peer& from) {
  if (m.is_response())
    on_response(m, from);
  else
    on_request(m, from);
}

void TransactionLayer::on_response(const core::Message& m, const core::Peer& from) {
  const TransactionKey key = client_key(m);
  ClientTransaction* t = client_index_.find(hash_of(key), [&](ClientTransaction* c) { return c->key_.view() == key; });
  if (!t) {
    ++counters_.stray_responses;
    tu_.on_stray_response(m, from);
    return;
  }
  dispatch(*t, ResponseEvent{m, from});
}

void TransactionLayer::on_request(const core::Message& m, const core::Peer& from) {
  const TransactionKey key = server_key(m);
  const uint64_t hash = hash_of(key);
  if (ServerTransaction* found = find_server(key, hash)) {
    dispatch(*found, RequestEvent{m, from});
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
  t.key_hash_ = hash;
  servers_.insert(std::move(owned));
  server_index_.insert(hash, &t);
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
  t.key_hash_ = hash_of(t.key_.view());
  // core::make_branch is unique per worker; a clash is a TU bug (responses would go to the
  // first one).
  assert(!client_index_.find(t.key_hash_, [&](ClientTransaction* c) { return c->key_.view() == t.key_.view(); }));
  client_index_.insert(t.key_hash_, &t);
  clients_.insert(std::move(owned));
  ++counters_.created_client;
  ++(t.invite_ ? counters_.active_client_invite : counters_.active_client_non_invite);
  t.start();
  return t;
}

ServerTransaction* TransactionLayer::find_server_invite(const core::Message& cancel) {
  // §9.2: the CANCEL's own matching fields with method INVITE.
  const TransactionKey key = server_key(cancel, "INVITE");
  return find_server(key, hash_of(key));
}

bool TransactionLayer::knows_cancel(const core::Message& cancel) {
  const TransactionKey own = server_key(cancel), invite = server_key(cancel, "INVITE");
  return find_server(own, hash_of(own)) || find_server(invite, hash_of(invite));
}

ServerTransaction* TransactionLayer::find_server(const TransactionKey& key, uint64_t hash) {
  return server_index_.find(hash, [&](ServerTransaction* t) { return t->key_.view() == key; });
}

ClientTransaction* TransactionLayer::find_client(uint64_t id) {
  return clients_.find(id);
}

ServerTransaction* TransactionLayer::find_server(uint64_t id) {
  return servers_.find(id);
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
  // Most timers that fall due are stale: their transaction ended or moved on. Telling so
  // reads its id-table slot and then the transaction, each a cache miss once the tables hold
  // 10^5 transactions; a timer of the current generation mostly ends its transaction (Timers
  // B, F, H, I, J, K, L, M), and finish() erases it from the key index, a third slot. One
  // timer after the other, those misses came one after the other (docs/performance.md). A
  // batch has each of them loaded for all its timers before the first fires. Timers that
  // firing arms for `now` come in the next batch.
  constexpr size_t kBatch = 32;
  TimerEntry due[kBatch];
  const Transaction* owner[kBatch];  // valid until the first timer fires
  while (size_t n = queue_.pop_due(now, due, kBatch)) {
    for (size_t i = 0; i < n; ++i) {
      if (is_client_timer(static_cast<TimerKind>(due[i].kind))) clients_.prefetch(due[i].owner_id);
      else servers_.prefetch(due[i].owner_id);
    }
    for (size_t i = 0; i < n; ++i) {
      if (is_client_timer(static_cast<TimerKind>(due[i].kind))) owner[i] = find_client(due[i].owner_id);
      else owner[i] = find_server(due[i].owner_id);
      if (owner[i]) __builtin_prefetch(&owner[i]->generation_);
    }
    for (size_t i = 0; i < n; ++i) {
      const Transaction* t = owner[i];
      if (!t || t->generation_ != due[i].generation) continue;
      if (t->client_) client_index_.prefetch(t->key_hash_);
      else server_index_.prefetch(t->key_hash_);
    }
    for (size_t i = 0; i < n; ++i) fire(due[i]);  // finds each owner again: one may be gone
  }
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
  client_index_.erase(t.key_hash_, &t);
  --(t.invite_ ? counters_.active_client_invite : counters_.active_client_non_invite);
  const uint64_t id = t.id_;
  tu_.on_terminated(id);
  clients_.take(id);
}

void TransactionLayer::finish(ServerTransaction& t) {
  server_index_.erase(t.key_hash_, &t);
  --(t.invite_ ? counters_.active_server_invite : counters_.active_server_non_invite);
  const uint64_t id = t.id_;
  tu_.on_terminated(id);
  servers_.take(id);
}

}  // namespace sb::proxy
