// The stateful proxy (RFC 3261 §16): the transaction user of one worker. It validates a
// new request, asks the RoutingPolicy for a decision, forks it to the target set (parallel,
// or serial by q groups), picks the best response, fails over to the next server of a
// target, and cancels what is left. Single-threaded: one ProxyCore per worker.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/local_identity.h"
#include "proxy/resolver.h"
#include "proxy/routing_policy.h"
#include "proxy/timer_queue.h"
#include "proxy/transaction.h"

namespace sb::proxy {

struct ProxySettings {
  uint32_t worker_id = 0;
  int64_t timer_c_ms = 185000;                 // §16.6 step 11: > 3 minutes in production
  std::vector<int> failover_codes = {503, 408};  // responses (408 = timeout) moving a branch on
  bool failover_on_transport_error = true;
};

struct ProxyCounters {
  uint64_t requests = 0;           // new requests seen (not retransmissions)
  uint64_t local_replies = 0;      // answered by us (policy reply, validation, OPTIONS)
  uint64_t relayed = 0;            // requests relayed statefully
  uint64_t branches = 0;           // client transactions started for branches
  uint64_t failovers = 0;          // a branch moved to its target's next server
  uint64_t cancels_sent = 0;
  uint64_t loops = 0;              // 482
  uint64_t stateless_requests = 0; // ACK to 2xx and the like
  uint64_t stateless_responses = 0;
  uint64_t no_decision = 0;        // policy made none → 500
  uint64_t overloaded = 0;         // 503 + Retry-After
  uint64_t timer_c = 0;
  // Refusals the policy decided (docs/security.md "Counters"): 401/407 challenges and 403.
  uint64_t policy_challenged = 0;
  uint64_t policy_forbidden = 0;
};

class ResponseContext;
struct Branch;

class ProxyCore final : public TransactionUser {
 public:
  ProxyCore(TransactionEnv& env, const LocalIdentity& identity, Resolver& resolver,
            RoutingPolicy& policy, ProxySettings settings);
  ~ProxyCore() override;
  ProxyCore(const ProxyCore&) = delete;
  ProxyCore& operator=(const ProxyCore&) = delete;

  // The layer this core sends through; set once, before any message.
  void attach(TransactionLayer& layer) { layer_ = &layer; }
  // The policy for new requests from now on (live reload keeps in-flight ones on theirs).
  void set_policy(RoutingPolicy& policy) { policy_ = &policy; }
  // Timer C and other proxy timers (the worker arms one uv timer to the earlier of this and
  // the layer's deadline).
  int64_t next_deadline() const { return timers_.next_deadline(); }
  void on_timer(int64_t now);

  const ProxyCounters& counters() const { return counters_; }
  size_t contexts() const { return contexts_.size(); }
  // Contexts holding their request parsed right now (a pending decision or resolution, or a
  // later step that needed it); the others keep only its bytes. For tests and bench/memory.
  size_t parsed_contexts() const;

  // TransactionUser
  void on_request(ServerTransaction* txn, const core::Message& req, const core::Peer& from) override;
  void on_response(ClientTransaction& txn, const core::Message& resp) override;
  void on_stray_response(const core::Message& resp, const core::Peer& from) override;
  void on_client_timeout(ClientTransaction& txn) override;
  void on_client_transport_error(ClientTransaction& txn) override;
  void on_server_timeout(ServerTransaction& txn) override;
  void on_server_transport_error(ServerTransaction& txn) override;
  void on_ack(ServerTransaction& txn, const core::Message& ack) override;
  void on_overload(const core::Message& req, const core::Peer& from) override;
  void on_terminated(uint64_t txn_id) override;

 private:
  friend class ResponseContext;
  void reply(ServerTransaction& txn, const core::Message& req, int status, std::string_view reason,
             std::span<const std::string> headers = {}, std::string_view body = {},
             std::string_view to_tag = {});
  bool is_loop(const core::Message& req, uint64_t hash) const;
  uint64_t loop_hash(const core::Message& req) const;
  void answer_options_to_self(ServerTransaction& txn, const core::Message& req);
  void handle_cancel(ServerTransaction& txn, const core::Message& cancel);
  void apply_decision(uint64_t ctx_id, Decision d, bool from_failure);
  void start_branches(ResponseContext& ctx);
  void start_branch(ResponseContext& ctx, Branch& b);
  void send_branch(ResponseContext& ctx, Branch& b);
  void branch_failed(ResponseContext& ctx, Branch& b, int status, bool failover_allowed);
  void check_complete(ResponseContext& ctx);
  void send_best(ResponseContext& ctx);
  void arm_timer_c(const ResponseContext& ctx, Branch& b);
  bool is_failover_code(const ResponseContext& ctx, int status) const;
  bool may_fail_over(const ResponseContext& ctx, const Branch& b) const;
  void report_fault(const Branch& b, ServerFault fault, int64_t retry_after);
  void cancel_branch(ResponseContext& ctx, Branch& b);
  void send_cancel(ResponseContext& ctx, Branch& b, ClientTransaction& ct);
  void give_up(ResponseContext& ctx, Branch& b);
  void undo_strict_routing(ResponseContext& ctx);
  void cancel_pending(ResponseContext& ctx, const Branch* except);
  void forward_response(ResponseContext& ctx, const core::Message& resp);
  void forward_stateless_request(const core::Message& req, const core::Peer& from);
  // §16.11: `m` with our Via on top, to `peer` (the first server of its next hop).
  void send_stateless(const core::Message& m, const core::Peer& peer, const core::Peer& src, int skip,
                      uint64_t branch_hash, const std::string& strict_ruri);
  void forward_stateless_response(const core::Message& resp);
  void maybe_destroy(ResponseContext& ctx);
  void trim(ResponseContext& ctx);
  ResponseContext* find_context(uint64_t id);
  std::string record_route_value(size_t listener) const;
  // A new branch of this worker: unique, with the request's loop hash (§16.6 step 8).
  void append_new_branch(std::string& out, uint64_t loop);
  // The To tag of responses this worker generates ("sb<worker>.<unique>", hex).
  std::string local_tag(uint64_t unique) const;

  TransactionEnv& env_;
  const LocalIdentity& identity_;
  Resolver& resolver_;
  RoutingPolicy* policy_;
  ProxySettings settings_;
  TransactionLayer* layer_ = nullptr;
  TimerQueue timers_;
  std::unordered_map<uint64_t, std::unique_ptr<ResponseContext>> contexts_;
  uint64_t next_context_ = 1;
  // A parsed request no context holds any more, reused by the next one (ResponseContext).
  std::unique_ptr<core::Message> spare_request_;
  int in_policy_ = 0;  // nesting of policy calls (on_request, on_failure) on the stack
  uint64_t next_branch_ = 1;
  ProxyCounters counters_;
};

}  // namespace sb::proxy
