// The registrar (RFC 3261 §10.3, Path RFC 3327, outbound RFC 5626): turns a REGISTER into
// changes of the location service and tells the caller what to answer. It builds no
// message: the app answers with core::build_response(req, {status, reason, to_tag, headers}).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/address.h"
#include "core/clock.h"
#include "core/message.h"
#include "location/location_service.h"

namespace sb::proxy {

struct RegistrarSettings {
  uint32_t min_expires = 60;       // shorter (nonzero) requests get 423 (§10.3 step 7)
  uint32_t max_expires = 3600;     // longer requests are shortened to this
  uint32_t default_expires = 3600; // when neither the Contact nor Expires says
  uint32_t max_bindings_per_aor = 10;
  uint32_t max_aors = 1'000'000;
  std::vector<std::string> domains;  // served domains: lower-case, IPv6 without brackets
};

struct RegistrarReply {
  enum class Outcome : uint8_t {
    Reply,    // answer with status/reason/headers
    NotOurs,  // §10.3 step 1: the Request-URI's domain is not served here. The app proxies
              // the REGISTER, or refuses it with status/reason (403 "domain not served here").
  };
  Outcome outcome = Outcome::Reply;
  int status = 500;
  std::string reason;                // short; names the fault for 4xx/5xx
  std::vector<std::string> headers;  // whole "Name: value" lines to add to the response

  bool not_ours() const { return outcome == Outcome::NotOurs; }
  // The headers as views, the shape core::ResponseSpec::headers takes.
  std::vector<std::string_view> header_views() const {
    return {headers.begin(), headers.end()};
  }
};

// §10.3 steps 3-4: authenticate the UAC and authorize it for `aor`. Returns the reply that
// stops the REGISTER (401 with a challenge, 403), or nullopt to go on. Runs before any
// Contact is looked at, with the canonical AOR.
using RegisterAuthorizer =
    std::function<std::optional<RegistrarReply>(const core::Message& reg, std::string_view aor)>;

class Registrar {
 public:
  // Per config generation: cheap to build; `location` and `clock` outlive it.
  Registrar(location::LocationService& location, const core::Clock& clock,
            RegistrarSettings settings);

  void set_authorizer(RegisterAuthorizer authorizer) { authorizer_ = std::move(authorizer); }
  const RegistrarSettings& settings() const { return settings_; }
  // Live reload: new settings for the REGISTERs that follow (call on the owning thread).
  void set_settings(RegistrarSettings settings) { settings_ = std::move(settings); }

  // Process one REGISTER that came from `source` (§10.3 steps 1-8).
  //   not_ours        Request-URI not a SIP(S) URI of a served domain
  //   420 + Unsupported   Require names an extension other than path / outbound
  //   400             To not a SIP/SIPS URI; bad Contact; '*' not alone or without Expires: 0
  //   404             the AOR's domain is not served here (§10.3 step 5)
  //   423 + Min-Expires   a nonzero expiry below min_expires (and below one hour)
  //   439             outbound asked through a first hop whose Path lacks ;ob (RFC 5626 §6)
  //   500             out-of-order CSeq for a binding (§10.3 step 7); nothing changed
  //   403             the AOR would hold more than max_bindings_per_aor (a policy refusal)
  //   503 + Retry-After   the table holds max_aors already
  //   200 + Contact (each current binding, with ;expires) + Date [+ Path] [+ Require: outbound]
  RegistrarReply handle(const core::Message& reg, const core::Peer& source) const;

  // True when `host` (IPv6 without brackets) is one of our domains, any case.
  bool serves(std::string_view host) const;

 private:
  location::LocationService& location_;
  const core::Clock& clock_;
  RegistrarSettings settings_;
  RegisterAuthorizer authorizer_;
};

// Appends "Tue, 14 Nov 2023 22:13:20 GMT" (RFC 3261 §20.17, an RFC 1123 date in GMT) to
// `out`: a 200 to a REGISTER builds its Date line in one string.
void append_rfc1123_date(std::string& out, int64_t wall_ms);

}  // namespace sb::proxy
