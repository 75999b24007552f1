// The state of one proxied request (RFC 3261 §16: "response context"): the request as
// received, the policy's edits, and its branches. Private to the proxy core.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/message.h"
#include "proxy/resolver.h"
#include "proxy/routing_policy.h"

namespace sb::proxy {

class ResponseContext;

// One branch of the target set (§16.5), owned by its ResponseContext (STYLE.md 8).
struct Branch {
  enum class State : uint8_t { Waiting, Resolving, Calling, Proceeding, Done };
  ResponseContext* ctx = nullptr;
  uint32_t index = 0;
  uint32_t group = 0;            // serial forking: groups run one after another
  Target target;
  ServerList servers;            // from the resolver; failover walks it
  size_t server = 0;             // the server in use
  uint64_t txn_id = 0;           // the live client transaction, 0 when none
  State state = State::Waiting;
  int status = 0;                // final status (408 / 503 when synthesised)
  std::string response;          // the final response as received (3xx-6xx), for §16.7
  bool cancel_wanted = false;    // CANCEL once a provisional arrives (§9.1)
  bool cancel_sent = false;
  bool timed_out = false;        // Timer C fired: its 487 (or silence) counts as 408 (§16.8)
  uint64_t cancelled_txn = 0;    // the client transaction our CANCEL is for
  uint16_t timer_gen = 0;        // Timer C generation
};

class ResponseContext final : public PolicyRequest {
 public:
  ResponseContext(uint64_t id, std::string bytes, const core::Peer& source)
      : id(id), bytes(std::move(bytes)), source_(source) {}

  const core::Message& message() const override { return request; }
  const core::Peer& source() const override { return source_; }
  RequestEdits& edits() override { return edits_; }
  bool routed_by_us() const override { return route_skip > 0; }

  uint64_t id;
  RoutingPolicy* policy = nullptr;  // the policy it started with (a reload keeps it, STYLE.md 6)
  std::string bytes;             // the request as received (owned), after §16.4 strict-route repair
  core::Message request;         // parsed over `bytes`
  core::Peer source_;
  RequestEdits edits_;
  RelayOptions options;
  uint64_t server_txn_id = 0;
  bool server_alive = true;
  bool invite = false;
  bool deciding = false;         // a policy decision is pending
  bool final_sent = false;
  bool got_2xx = false;
  bool got_6xx = false;
  bool cancelled = false;
  int failure_rounds = 0;        // on_failure calls so far (bounded)
  int redirect_branches = 0;     // branches added by 3xx recursion (bounded)
  int live = 0;                  // live client transactions + pending resolutions
  int route_skip = 0;            // Route values naming us, removed when forwarding (§16.4)
  uint32_t current_group = 0;
  uint64_t loop_hash = 0;        // §16.6 step 8, carried in our branches
  std::string to_tag;            // for responses we generate
  std::vector<std::unique_ptr<Branch>> branches;
};

}  // namespace sb::proxy
