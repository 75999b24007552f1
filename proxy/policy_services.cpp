#include "proxy/policy_services.h"

#include "core/uri.h"

namespace sb::proxy {

Target binding_target(const location::Binding& b) {
  Target t;
  t.uri = b.contact;
  t.q1000 = b.q;
  t.route = b.path;
  bool flow = !b.instance.empty() && b.reg_id != 0;
  if (b.path.empty() && b.source.endpoint.valid() && (core::is_reliable(b.source.protocol) || flow))
    t.destination = b.source;
  return t;
}

std::vector<Target> RegistrarServices::lookup(std::string_view uri) {
  std::vector<Target> out;
  auto parsed = core::parse_uri(uri);
  if (!parsed || !parsed->is_sip()) return out;
  for (const auto& b : location_.lookup(*parsed)) out.push_back(binding_target(b));
  return out;
}

Decision RegistrarServices::registrar_save(const PolicyRequest& req) {
  RegistrarReply r = registrar_.handle(req.message(), req.source());
  if (r.not_ours()) {
    // §10.3 step 1: not our domain. Proxy it on (config registrar.foreign_domain = "proxy")
    // or refuse it.
    if (proxy_foreign_) {
      Decision d;
      d.kind = Decision::Kind::Relay;
      return d;
    }
    return Decision::reply(403, "Domain Not Served Here");
  }
  Decision d = Decision::reply(r.status, r.reason);
  d.headers = std::move(r.headers);
  return d;
}

}  // namespace sb::proxy
