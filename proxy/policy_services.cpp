#include "proxy/policy_services.h"

#include "core/text.h"
#include "core/uri.h"
#include "location/redis_store.h"

namespace sb::proxy {

Target binding_target(const location::Binding& b) {
  Target t;
  t.uri = b.contact;
  t.q1000 = b.q;
  t.route = b.path;
  bool flow = !b.instance.empty() && b.reg_id != 0;
  if (b.path.empty() && b.source.endpoint.valid() && (core::is_reliable(b.source.protocol) || flow)) {
    t.destination = b.source;
    t.destination->flow = true;  // a UDP flow: leave from the socket it was opened to
  }
  // A flow held by another cluster node (docs/cluster.md): that node gone, or answering 430,
  // means the UA is unreachable through it for now, not that we failed (RFC 5626 §5.3).
  if (!b.path.empty() && location::is_owner_route(b.path.front())) t.hop_failure_status = 480;
  return t;
}

std::vector<Target> RegistrarServices::lookup(const core::Uri& uri) {
  std::vector<Target> out;
  if (!uri.is_sip()) return out;
  for (const auto& b : location_.lookup(uri)) out.push_back(binding_target(b));
  return out;
}

bool RegistrarServices::lookup_wait(std::string_view uri, std::function<void(bool ok)> done) {
  if (!post_ || !location_.shared()) return false;
  auto parsed = core::parse_uri(uri);
  if (!parsed || !parsed->is_sip() || !identity_.is_local_domain(parsed->host)) return false;
  std::string aor = core::canonical_aor(*parsed);
  if (location_.has(aor)) return false;
  // The store answers on its own thread; the request carries on on ours.
  return location_.fetch(aor, [post = post_, done = std::move(done)](bool ok) mutable {
    post([done = std::move(done), ok] { done(ok); });
  });
}

Decision RegistrarServices::registrar_save(const PolicyRequest& req) {
  // RFC 3261 §10.3 step 4: an authenticated user binds only the AORs it owns. Checked only
  // for a REGISTER the registrar would process (our Request-URI domain and To domain).
  if (auth_ && req.auth.verified) {
    const core::Message& m = req.message();
    if (m.ruri().is_sip() && registrar_.serves(m.ruri().host) && m.has_to() &&
        m.to().uri.is_sip() && registrar_.serves(m.to().uri.host)) {
      std::string aor = core::canonical_aor(m.to().uri);
      const UserStore* users = auth_setup_->users.get();
      const UserRecord* rec =
          users && users->realm() == req.auth.realm ? users->find(req.auth.user) : nullptr;
      if (!user_owns_aor(rec, req.auth.user, aor))
        return Decision::reply(403, "Forbidden: address-of-record not owned by the authenticated user");
    }
  }
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

void RegistrarServices::set_auth(std::shared_ptr<const AuthSetup> setup, const core::Clock& clock,
                                 uint32_t worker) {
  auth_setup_ = std::move(setup);
  if (!auth_setup_) {
    auth_.reset();
    return;
  }
  digest::Settings s = auth_setup_->settings;
  s.worker = worker;
  if (auth_)
    auth_->set_settings(std::move(s), auth_setup_->counts);
  else
    auth_ = std::make_unique<digest::Authenticator>(std::move(s), clock, auth_setup_->counts);
}

namespace {
std::string_view credentials_header(const core::Message& m) {
  return digest::uses_www(m) ? "Authorization" : "Proxy-Authorization";
}
}  // namespace

AuthResult RegistrarServices::auth_verify(PolicyRequest& req, std::string_view realm,
                                          const Ha1Set* ha1) {
  req.auth = {};
  if (!auth_) return {false, {}, "authentication is not configured (config auth)"};
  std::string r = realm.empty() ? auth_->settings().realm : std::string(realm);
  req.auth.realm = r;
  const UserStore* users = auth_setup_->users.get();
  digest::Ha1Lookup lookup = [&](std::string_view user, std::string_view rlm,
                                 digest::Algorithm a) -> std::optional<std::string> {
    if (ha1) {
      for (const auto& [name, hex] : *ha1)
        if (auto p = digest::parse_algorithm(name); p && *p == a) return hex;
      return std::nullopt;
    }
    // A users file's HA1s were computed with its realm: useless for any other.
    if (!users || users->realm() != rlm) return std::nullopt;
    return users->ha1(user, a);
  };
  const core::Message& m = req.message();
  digest::Verdict v = auth_->verify(m, r, lookup);
  if (!v.ok()) {
    req.auth.stale = v.stale();
    return {false, {}, v.reason};
  }
  req.auth.verified = true;
  req.auth.user = v.credentials.username;

  // RFC 3261 §22.3: the credentials meant for us are not forwarded. RequestEdits removes by
  // name, so every line of that name goes and the others (other realms, for proxies further
  // on) are added back, after the request's remaining headers.
  std::string_view name = credentials_header(m);
  RequestEdits& e = req.edits();
  std::string prefix = std::string(name) + ": ";
  std::erase_if(e.add_headers, [&](const std::string& l) { return l.starts_with(prefix); });
  bool listed = false;
  for (const auto& n : e.remove_headers) listed |= core::iequals(n, name);
  if (!listed) e.remove_headers.emplace_back(name);
  const auto& hs = m.headers();
  core::HeaderId id = core::header_id(name);
  for (size_t i = 0; i < hs.size(); ++i)
    if (hs[i].id == id && i != v.credentials.header_index)
      e.add_headers.push_back(prefix + std::string(hs[i].value));
  return {true, req.auth.user, {}};
}

std::optional<Decision> RegistrarServices::auth_challenge(const PolicyRequest& req,
                                                          std::string_view realm) {
  if (!auth_) return std::nullopt;
  bool www = digest::uses_www(req.message());
  std::string r = realm.empty() ? auth_->settings().realm : std::string(realm);
  bool stale = req.auth.stale && req.auth.realm == r;
  Decision d = Decision::reply(www ? 401 : 407);
  d.headers = auth_->challenge(www, r, stale);
  return d;
}

std::optional<std::string> RegistrarServices::auth_username(const PolicyRequest& req,
                                                            std::string_view realm) {
  if (!auth_) return std::nullopt;
  std::string r = realm.empty() ? auth_->settings().realm : std::string(realm);
  auto c = digest::find_credentials(req.message(), r);
  if (!c || c->username.empty()) return std::nullopt;
  return c->username;
}

}  // namespace sb::proxy
