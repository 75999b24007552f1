// The contract between the proxy core and the operator's policy (DESIGN.md "Lua routing").
// The proxy core knows nothing of Lua: it calls a RoutingPolicy; scripts/engine implements it
// with Lua, tests implement it in C++. A policy answers through a callback so it may finish
// later (a Lua coroutine that yields on Redis/DNS), always on the same worker thread.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/address.h"
#include "core/message.h"

namespace sb::proxy {

// One branch destination (§16.5 target set element).
struct Target {
  std::string uri;                         // the Request-URI this branch is sent with
  uint16_t q1000 = 1000;                   // q-value in thousandths (serial forking groups by q)
  std::vector<std::string> route;          // Route values to put on top for this branch (RFC 3327 Path)
  std::optional<core::Peer> destination;   // fixed next hop (a binding's source/flow: NAT, TCP
                                           // reuse, RFC 5626); empty = resolve per RFC 3263
  // Nonzero: what the branch counts as in the best-response selection (§16.7 step 6) when its
  // next hop fails it without a usable response: a timeout, a transport error, or 430 Flow
  // Failed (RFC 5626 §5.3). Set for a flow reached through another cluster node (480).
  int hop_failure_status = 0;
};

struct RelayOptions {
  // Parallel: every target at once. Serial: one target at a time, highest q first, in the
  // given order for equal q (a trunk and its backups). ByQ: RFC 3261 §16.6 forking: one
  // q-group after another, the targets of a group in parallel (registered contacts).
  enum class Mode : uint8_t { Parallel, Serial, ByQ };
  Mode mode = Mode::Parallel;
  int64_t timeout_ms = 0;                  // branch timeout (INVITE: Timer C); 0 = config value
  std::vector<int> failover_codes;         // responses that move a branch to the next server; empty = config default
  bool record_route = false;               // insert Record-Route (§16.6 step 4)
  // §16.7 step 4: on a 3xx, try its Contacts as new branches instead of returning it
  // (at most kMaxRedirectBranches per request, never a URI already tried).
  bool recurse_3xx = false;
};

struct Decision {
  enum class Kind : uint8_t { None, Reply, Relay, Redirect };
  Kind kind = Kind::None;
  // Reply: the response to send (also what registrar.save decides).
  int status = 0;
  std::string reason;
  std::vector<std::string> headers;        // whole "Name: value" lines
  std::string body;
  // Relay: the target set. Empty = relay to the Request-URI / Route as they stand (in-dialog,
  // loose routing).
  std::vector<Target> targets;
  RelayOptions relay;
  // Redirect: 3xx with these Contact values (status defaults to 302).
  std::vector<std::string> contacts;
  // Where a decision came from, for logs ("scripts/default.lua:12"); empty when unknown.
  std::string origin;

  static Decision reply(int status, std::string reason = {}) {
    Decision d;
    d.kind = Kind::Reply;
    d.status = status;
    d.reason = std::move(reason);
    return d;
  }
};

// Edits the policy made to the request; applied when it is relayed.
struct RequestEdits {
  std::optional<std::string> ruri;                               // new Request-URI
  std::vector<std::pair<std::string, std::string>> set_headers;  // replace every header of that name (or add)
  std::vector<std::string> add_headers;                          // whole lines to add
  std::vector<std::string> remove_headers;                       // header names to remove
};

// What a policy sees of one request. Valid until the decision callback has been called.
class PolicyRequest {
 public:
  virtual ~PolicyRequest() = default;
  virtual const core::Message& message() const = 0;
  virtual const core::Peer& source() const = 0;
  virtual RequestEdits& edits() = 0;
  // A request inside a dialog: the To header has a tag (§12.2).
  bool in_dialog() const { return !message().to().tag().empty(); }
  // The request carried a Route naming this proxy (it follows a route set we
  // Record-Routed). Lets a policy refuse "in-dialog" requests that never passed through us.
  virtual bool routed_by_us() const { return false; }
  // The policy's own per-request state (e.g. the script generation the request pins); it
  // lives exactly as long as the request.
  std::shared_ptr<void> policy_state;
  // What PolicyServices::auth_verify found for this request (RFC 3261 §22).
  struct Auth {
    bool verified = false;  // credentials checked and right: `user` is authenticated
    bool stale = false;     // right password, stale nonce: the next challenge says stale=true
    std::string user;
    std::string realm;
  };
  Auth auth;
};

// The best final response when every branch failed (§16.7 step 6), for on_failure.
struct FailureInfo {
  int status = 0;
  std::string reason;
  std::vector<std::string> attempted;      // the target URIs tried, in order
};

using DecisionFn = std::function<void(Decision)>;

inline constexpr int kMaxRedirectBranches = 8;

// auth_verify's answer: the authenticated user, or why not ("no credentials", "wrong
// password", "nonce expired", "replayed nonce-count", ...).
struct AuthResult {
  bool ok = false;
  std::string user;
  std::string reason;
};

// HA1 values a policy fetched itself (e.g. from a database), by algorithm name ("MD5",
// "SHA-256", "SHA-512-256"), lower- or upper-case hex. Used instead of the users file.
using Ha1Set = std::vector<std::pair<std::string, std::string>>;

// Services a policy may use: the registrar and the location service. The proxy side
// implements it; policies get it at construction.
class PolicyServices {
 public:
  virtual ~PolicyServices() = default;
  // The targets registered for an AOR (a sip: or sips: URI, already parsed: the caller has
  // it; it is canonicalised), best first.
  virtual std::vector<Target> lookup(const core::Uri& uri) = 0;
  // A shared location backend (docs/cluster.md) may hold bindings this node's table does not:
  // when it may, start reading `uri`'s AOR and return true; `done(ok)` then runs later on the
  // worker's thread (ok: the table now holds what the store had, ask lookup(); false: the
  // store did not answer within its timeout). False when there is nothing to wait for (a
  // local backend, or the table holds the AOR): ask lookup() now.
  virtual bool lookup_wait(std::string_view uri, std::function<void(bool ok)> done) {
    (void)uri;
    (void)done;
    return false;
  }
  // Process a REGISTER as registrar (RFC 3261 §10.3): the response to send.
  virtual Decision registrar_save(const PolicyRequest& req) = 0;
  // Is this host one of our domains?
  virtual bool is_local_domain(std::string_view host) const = 0;
  virtual std::vector<std::string> domains() const = 0;
  // Is this source in the trusted networks (config "security.trusted")? The default script
  // lets trusted sources register and call without authenticating (docs/security.md).
  virtual bool is_trusted(const core::Endpoint& source) const { (void)source; return false; }

  // Digest authentication (RFC 3261 §22, RFC 7616/8760). The defaults say "not configured".
  virtual bool auth_enabled() const { return false; }
  // Check the request's Digest credentials for `realm` ("" = the configured realm) against
  // the users file, or `ha1` when given. Records the outcome in req.auth and, when right,
  // removes the consumed credentials from the relayed request (req.edits()).
  virtual AuthResult auth_verify(PolicyRequest& req, std::string_view realm, const Ha1Set* ha1) {
    (void)req; (void)realm; (void)ha1;
    return {false, {}, "authentication is not configured (config auth)"};
  }
  // The challenge for `req`: 401 + WWW-Authenticate for REGISTER, 407 + Proxy-Authenticate
  // otherwise, one header per algorithm, stale=true after a stale verify. Without auth
  // configured: nullopt.
  virtual std::optional<Decision> auth_challenge(const PolicyRequest& req, std::string_view realm) {
    (void)req; (void)realm;
    return std::nullopt;
  }
  // The user name the request's credentials for `realm` claim, before verifying (so a policy
  // can fetch that user's HA1 elsewhere); nullopt when there are none.
  virtual std::optional<std::string> auth_username(const PolicyRequest& req, std::string_view realm) {
    (void)req; (void)realm;
    return std::nullopt;
  }
};

class RoutingPolicy {
 public:
  virtual ~RoutingPolicy() = default;
  // A new request (never a retransmission). Call done exactly once, now or later on this worker.
  virtual void on_request(PolicyRequest& req, DecisionFn done) = 0;
  // Every branch failed. Decision::Kind::None means "send the best response as it is".
  virtual void on_failure(PolicyRequest& req, const FailureInfo& best, DecisionFn done) = 0;
};

}  // namespace sb::proxy
