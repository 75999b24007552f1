// A routing policy in C++ that does what scripts/default.lua does: registrar for our
// domains, in-dialog requests along their Route, calls to registered users (forked by q,
// record-routed), 404 for unknown users, 403 for foreign domains (not an open relay).
// Used by tests, and when no script is configured.
#pragma once
#include "proxy/routing_policy.h"

namespace sb::proxy {

class BuiltinPolicy final : public RoutingPolicy {
 public:
  explicit BuiltinPolicy(PolicyServices& services) : services_(services) {}
  void on_request(PolicyRequest& req, DecisionFn done) override;
  void on_failure(PolicyRequest& req, const FailureInfo& best, DecisionFn done) override;

 private:
  PolicyServices& services_;
};

}  // namespace sb::proxy
