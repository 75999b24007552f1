// PolicyServices backed by the registrar and the location service: what a routing policy
// (Lua or C++) calls for registrar.save and location.lookup.
#pragma once
#include "location/location_service.h"
#include "proxy/local_identity.h"
#include "proxy/registrar.h"
#include "proxy/routing_policy.h"

namespace sb::proxy {

class RegistrarServices final : public PolicyServices {
 public:
  RegistrarServices(Registrar& registrar, location::LocationService& location,
                    const LocalIdentity& identity, bool proxy_foreign_register)
      : registrar_(registrar), location_(location), identity_(identity),
        proxy_foreign_(proxy_foreign_register) {}

  std::vector<Target> lookup(std::string_view uri) override;
  Decision registrar_save(const PolicyRequest& req) override;
  bool is_local_domain(std::string_view host) const override { return identity_.is_local_domain(host); }
  std::vector<std::string> domains() const override { return identity_.domains(); }
  void set_proxy_foreign_register(bool on) { proxy_foreign_ = on; }

 private:
  Registrar& registrar_;
  location::LocationService& location_;
  const LocalIdentity& identity_;
  bool proxy_foreign_;
};

// A binding as a branch target. A UA that registered over a stream (TCP/TLS/WS), or as an
// RFC 5626 flow (+sip.instance with reg-id), is reached over the connection/source it
// registered from; a UDP contact is reached at its Contact address (third-party
// registrations put another host there), unless a Path leads through an edge proxy.
Target binding_target(const location::Binding& b);

}  // namespace sb::proxy
