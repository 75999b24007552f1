// The state of one proxied request (RFC 3261 §16: "response context"): the request as
// received, the policy's edits, and its branches. Private to the proxy core.
//
// Memory (docs/performance.md "Memory"): a context lives as long as its INVITE waits for an
// answer, so it keeps the request's bytes but its parsed form only while something reads it
// (the policy deciding, branches going out); see request().
#pragma once
#include <cassert>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
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
  ServerList servers;            // from the resolver (empty for a fixed destination)
  size_t server = 0;             // the server in use
  uint64_t txn_id = 0;           // the live client transaction, 0 when none
  uint64_t cancelled_txn = 0;    // the client transaction our CANCEL is for
  std::string response;          // the final response as received (3xx-6xx), for §16.7
  int status = 0;                // final status (408 / 503 when synthesised)
  uint16_t timer_gen = 0;        // Timer C generation
  State state = State::Waiting;
  bool cancel_wanted = false;    // CANCEL once a provisional arrives (§9.1)
  bool cancel_sent = false;
  bool timed_out = false;        // Timer C fired: its 487 (or silence) counts as 408 (§16.8)

  // The servers failover walks: the target's fixed destination (a registered flow) alone,
  // else the resolver's list (RFC 3263). The destination is not copied into a list.
  size_t server_count() const { return target.destination ? 1 : servers.servers.size(); }
  const core::Peer& server_at(size_t i) const {
    return target.destination ? *target.destination : servers.servers[i];
  }
};

class ResponseContext final : public PolicyRequest {
 public:
  // `received` parsed over bytes the caller keeps; the context keeps its own copy of them
  // and the parse moved onto it (core::Message::rebase: no second parse). `spare`: a Message
  // to reuse for that (its header vector keeps its capacity), or null.
  ResponseContext(uint64_t id, const core::Message& received, const core::Peer& source,
                  std::unique_ptr<core::Message> spare)
      : id(id), source_(source) {
    set_bytes(received.raw());
    parsed_ = spare ? std::move(spare) : std::make_unique<core::Message>();
    parsed_->rebase(received, bytes());
  }

  const core::Message& message() const override { return request(); }
  const core::Peer& source() const override { return source_; }
  RequestEdits& edits() override { return edits_; }
  bool routed_by_us() const override { return route_skip > 0; }

  // The request as received (after §16.4 strict-route repair), parsed. Parsed again from
  // the bytes when it was released: a context waiting for answers holds no parsed form,
  // and the steps that read it later (a CANCEL's 487, on_failure, failover, serial forking)
  // are rare. A reference is valid until the next release_request().
  const core::Message& request() const {
    if (!parsed_) {
      parsed_ = std::make_unique<core::Message>();
      // It parsed once under the worker's header limit; the same bytes parse the same way.
      core::ParseOptions opts;
      opts.max_headers = 0x7fff;
      [[maybe_unused]] core::Status st = parsed_->parse(bytes(), opts);
      assert(st.ok());
    }
    return *parsed_;
  }
  bool request_parsed() const { return parsed_ != nullptr; }
  // Drop the parsed form (the caller may keep the object for the next context).
  std::unique_ptr<core::Message> release_request() { return std::move(parsed_); }
  std::string_view bytes() const { return {bytes_.get(), size_}; }
  // New bytes for the request (strict routing undone, §16.4), which must parse.
  void replace_bytes(std::string_view b) {
    set_bytes(b);
    if (!parsed_) parsed_ = std::make_unique<core::Message>();
    [[maybe_unused]] core::Status st = parsed_->parse(bytes());
    assert(st.ok());
  }

  uint64_t id;
  RoutingPolicy* policy = nullptr;  // the policy it started with (a reload keeps it, STYLE.md 6)
  core::Peer source_;
  RequestEdits edits_;
  RelayOptions options;
  uint64_t server_txn_id = 0;
  std::vector<std::unique_ptr<Branch>> branches;
  uint32_t loop_hash = 0;        // §16.6 step 8 (32 bits), carried in our branches
  uint32_t current_group = 0;
  int live = 0;                  // live client transactions + pending resolutions
  int route_skip = 0;            // Route values naming us, removed when forwarding (§16.4)
  int16_t failure_rounds = 0;    // on_failure calls so far (bounded)
  int16_t redirect_branches = 0; // branches added by 3xx recursion (bounded)
  bool server_alive = true;
  bool invite = false;
  bool deciding = false;         // a policy decision is pending
  bool final_sent = false;
  bool got_2xx = false;
  bool got_6xx = false;
  bool cancelled = false;

 private:
  void set_bytes(std::string_view b) {
    // Exactly the request's size, no string capacity or small-buffer slack.
    bytes_ = std::make_unique_for_overwrite<char[]>(b.size());
    if (!b.empty()) std::memcpy(bytes_.get(), b.data(), b.size());
    size_ = static_cast<uint32_t>(b.size());
  }

  std::unique_ptr<char[]> bytes_;  // the request as received (owned)
  uint32_t size_ = 0;
  mutable std::unique_ptr<core::Message> parsed_;  // over bytes_, when held
};

}  // namespace sb::proxy
