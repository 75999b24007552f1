// A binding of an address-of-record to a contact address (RFC 3261 §10), as the location
// service hands it out, and the changes a REGISTER asks for. The table stores bindings in a
// compact form of its own; these are the copies callers get and give.
#pragma once
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/address.h"

namespace sb::location {

// expires_at of a binding that never expires: one the operator added, not a REGISTER.
inline constexpr int64_t kNeverExpires = std::numeric_limits<int64_t>::max();

struct Binding {
  std::string contact;            // the Contact URI as registered, without <>
  // The other contact params as written, without the leading ';' and without q, expires,
  // +sip.instance and reg-id (those have fields of their own), so a 200 can echo them.
  std::string params;
  uint16_t q = 1000;              // thousandths
  int64_t expires_at = 0;         // wall ms; kNeverExpires for a static binding
  std::string call_id;
  uint32_t cseq = 0;
  // Where the REGISTER came from. After a restart the connection id is none: the
  // connection it named belonged to the previous process.
  core::Peer source;
  std::vector<std::string> path;  // RFC 3327 Path values, topmost first
  std::string instance;           // RFC 5626 +sip.instance as written (quoted); "" when none
  uint32_t reg_id = 0;            // RFC 5626 reg-id; 0 when none
  std::string user_agent;
  int64_t received_at = 0;        // wall ms of the REGISTER that created or refreshed it
  // Another cluster node's binding, learned from the shared store (docs/cluster.md).
  bool remote = false;

  bool is_static() const { return expires_at == kNeverExpires; }
  // Whole seconds left at `now_ms`, rounded up (what a 200's ;expires shows).
  uint32_t expires_in(int64_t now_ms) const {
    if (expires_at <= now_ms) return 0;
    if (is_static()) return std::numeric_limits<uint32_t>::max();
    int64_t s = (expires_at - now_ms + 999) / 1000;
    return s > 0xffffffffll ? 0xffffffffu : static_cast<uint32_t>(s);
  }
};

// One Contact of a REGISTER, already checked by the registrar (views into the request).
struct BindingChange {
  std::string_view contact;   // URI without <>
  std::string_view params;    // as Binding::params
  uint16_t q = 1000;
  uint32_t expires = 0;       // seconds from now; 0 removes the binding
  std::string_view instance;  // "" when none
  uint32_t reg_id = 0;        // 0 when none; used only together with an instance
};

// Table limits. An operation that would go past one fails; nothing is evicted.
struct Limits {
  uint32_t max_bindings_per_aor = 10;
  uint32_t max_aors = 1'000'000;
};

// What one REGISTER carries besides its Contacts (RFC 3261 §10.3 steps 6-7).
struct UpdateRequest {
  std::string_view call_id;
  uint32_t cseq = 0;
  core::Peer source;
  std::span<const std::string_view> path;  // Path values, topmost first
  std::string_view user_agent;
  bool remove_all = false;                 // Contact: * with Expires: 0
  // The registrar's limits (they follow its config generation); the service's when unset.
  std::optional<Limits> limits;
};

struct UpdateOutcome {
  std::vector<Binding> bindings;  // every current binding of the AOR after the update, ordered
  uint32_t added = 0;
  uint32_t refreshed = 0;
  uint32_t removed = 0;
};

}  // namespace sb::location
