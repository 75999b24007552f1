// PolicyServices backed by the registrar and the location service: what a routing policy
// (Lua or C++) calls for registrar.save and location.lookup.
#pragma once
#include <memory>

#include "core/cidr.h"
#include "core/clock.h"
#include "location/location_service.h"
#include "proxy/credentials.h"
#include "proxy/digest.h"
#include "proxy/local_identity.h"
#include "proxy/registrar.h"
#include "proxy/routing_policy.h"

namespace sb::proxy {

// Digest authentication as configured (config "auth"), shared by the workers of a generation.
// settings.worker is filled in by each worker.
struct AuthSetup {
  digest::Settings settings;
  std::shared_ptr<const UserStore> users;  // null: no users file (scripts give HA1 themselves)
  // The nonce-count table every worker checks against (digest.h); kept across reloads that
  // keep the secret. Null: each worker keeps one of its own (tests).
  std::shared_ptr<digest::SharedNonceCounts> counts;
};

class RegistrarServices final : public PolicyServices {
 public:
  RegistrarServices(Registrar& registrar, location::LocationService& location,
                    const LocalIdentity& identity, bool proxy_foreign_register)
      : registrar_(registrar), location_(location), identity_(identity),
        proxy_foreign_(proxy_foreign_register) {}

  std::vector<Target> lookup(const core::Uri& uri) override;
  bool lookup_wait(std::string_view uri, std::function<void(bool ok)> done) override;
  // How a completion from another thread gets onto this worker's thread (lookup_wait); false
  // when it could not be queued. Unset: lookup_wait never waits.
  void set_poster(std::function<bool(std::function<void()>)> post) { post_ = std::move(post); }
  Decision registrar_save(const PolicyRequest& req) override;
  bool is_local_domain(std::string_view host) const override { return identity_.is_local_domain(host); }
  std::vector<std::string> domains() const override { return identity_.domains(); }
  void set_proxy_foreign_register(bool on) { proxy_foreign_ = on; }
  // Config "security.trusted"; set on start and reload.
  void set_trusted(core::CidrSet trusted) { trusted_ = std::move(trusted); }
  bool is_trusted(const core::Endpoint& source) const override { return trusted_.contains(source); }

  // Digest authentication for this worker (null: not configured). Call on start and reload;
  // the nonce-count table survives a reload that keeps the secret.
  void set_auth(std::shared_ptr<const AuthSetup> setup, const core::Clock& clock, uint32_t worker);
  bool auth_enabled() const override { return auth_ != nullptr; }
  AuthResult auth_verify(PolicyRequest& req, std::string_view realm, const Ha1Set* ha1) override;
  std::optional<Decision> auth_challenge(const PolicyRequest& req, std::string_view realm) override;
  std::optional<std::string> auth_username(const PolicyRequest& req, std::string_view realm) override;
  digest::Authenticator* authenticator() { return auth_.get(); }

 private:
  Registrar& registrar_;
  location::LocationService& location_;
  const LocalIdentity& identity_;
  bool proxy_foreign_;
  core::CidrSet trusted_ = core::CidrSet::loopback();
  std::function<bool(std::function<void()>)> post_;
  std::shared_ptr<const AuthSetup> auth_setup_;
  std::unique_ptr<digest::Authenticator> auth_;
};

// A binding as a branch target. A UA that registered over a stream (TCP/TLS/WS), or as an
// RFC 5626 flow (+sip.instance with reg-id), is reached over the connection/source it
// registered from; a UDP contact is reached at its Contact address (third-party
// registrations put another host there), unless a Path leads through an edge proxy.
Target binding_target(const location::Binding& b);

}  // namespace sb::proxy
