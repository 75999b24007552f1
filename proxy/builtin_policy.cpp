#include "proxy/builtin_policy.h"

namespace sb::proxy {

void BuiltinPolicy::on_request(PolicyRequest& req, DecisionFn done) {
  const core::Message& m = req.message();
  if (m.method() == core::Method::Register) {
    done(services_.registrar_save(req));
    return;
  }
  Decision relay;
  relay.kind = Decision::Kind::Relay;
  if (req.in_dialog()) {  // follow the Route set (loose routing, §16.12)
    done(std::move(relay));
    return;
  }
  if (!services_.is_local_domain(m.ruri().host)) {
    done(Decision::reply(403, "Not A Relay For This Domain"));
    return;
  }
  relay.targets = services_.lookup(m.ruri());
  if (relay.targets.empty()) {
    done(Decision::reply(404, "Not Found"));
    return;
  }
  relay.relay.record_route = m.method() == core::Method::Invite || m.method() == core::Method::Subscribe;
  done(std::move(relay));
}

void BuiltinPolicy::on_failure(PolicyRequest&, const FailureInfo&, DecisionFn done) {
  done(Decision{});  // send the best response as it is
}

}  // namespace sb::proxy
