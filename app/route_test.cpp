#include "app/route_test.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "app/sip_worker.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/message.h"
#include "core/text.h"
#include "location/location_service.h"
#include "proxy/local_identity.h"
#include "proxy/policy_services.h"
#include "proxy/registrar.h"
#include "scripts/engine/lua_policy.h"

namespace sb::app {

namespace {

class OfflineRequest final : public proxy::PolicyRequest {
 public:
  OfflineRequest(const core::Message& m, core::Peer src) : m_(m), src_(src) {}
  const core::Message& message() const override { return m_; }
  const core::Peer& source() const override { return src_; }
  proxy::RequestEdits& edits() override { return edits_; }

 private:
  const core::Message& m_;
  core::Peer src_;
  proxy::RequestEdits edits_;
};

// Files written by hand often end lines with LF only: SIP wants CRLF.
std::string to_crlf(const std::string& in) {
  std::string out;
  out.reserve(in.size() + 64);
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r')) out += '\r';
    out += in[i];
  }
  // A message needs its empty line.
  if (out.find("\r\n\r\n") == std::string::npos) out += out.ends_with("\r\n") ? "\r\n" : "\r\n\r\n";
  return out;
}

void print_decision(const proxy::Decision& d, const proxy::RequestEdits& e) {
  using K = proxy::Decision::Kind;
  if (e.ruri) std::printf("request-uri: %s\n", e.ruri->c_str());
  for (const auto& [n, v] : e.set_headers) std::printf("set header: %s: %s\n", n.c_str(), v.c_str());
  for (const auto& n : e.remove_headers) std::printf("remove header: %s\n", n.c_str());
  for (const auto& l : e.add_headers) std::printf("add header: %s\n", l.c_str());
  switch (d.kind) {
    case K::None:
      std::printf("decision: none\n");
      break;
    case K::Reply:
      std::printf("decision: reply %d %s\n", d.status, d.reason.c_str());
      for (const auto& h : d.headers) std::printf("  %s\n", h.c_str());
      break;
    case K::Redirect:
      std::printf("decision: redirect %d\n", d.status ? d.status : 302);
      for (const auto& c : d.contacts) std::printf("  Contact: %s\n", c.c_str());
      break;
    case K::Relay: {
      const char* mode = d.relay.mode == proxy::RelayOptions::Mode::Serial ? "serial"
                         : d.relay.mode == proxy::RelayOptions::Mode::ByQ ? "q" : "parallel";
      std::printf("decision: relay (mode %s%s", mode, d.relay.record_route ? ", record-route" : "");
      if (d.relay.timeout_ms) std::printf(", timeout %lld ms", static_cast<long long>(d.relay.timeout_ms));
      std::printf(")\n");
      if (d.targets.empty()) std::printf("  1. as addressed (Request-URI / Route)\n");
      int i = 1;
      for (const auto& t : d.targets) {
        std::printf("  %d. %s q=%.3g", i++, t.uri.c_str(), t.q1000 / 1000.0);
        if (t.destination)
          std::printf(" via %s %s", std::string(core::protocol_name(t.destination->protocol)).c_str(),
                      t.destination->endpoint.to_string().c_str());
        for (const auto& r : t.route) std::printf(" route %s", r.c_str());
        std::printf("\n");
      }
      break;
    }
  }
  if (!d.origin.empty()) std::printf("origin: %s\n", d.origin.c_str());
}

}  // namespace

int route_test(const RouteTestOptions& opts) {
  auto cfg = opts.config_path.empty() ? core::load_default_config() : core::load_config_file(opts.config_path);
  if (!cfg.ok()) {
    for (const auto& e : cfg.errors) std::fprintf(stderr, "config: %s\n", e.c_str());
    return 1;
  }
  std::ifstream in(opts.message_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "route-test: cannot read %s\n", opts.message_path.c_str());
    return 1;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string bytes = to_crlf(ss.str());
  core::Message msg;
  if (auto st = msg.parse(bytes); !st) {
    std::fprintf(stderr, "route-test: %s: %s\n", opts.message_path.c_str(), core::describe(st.error()).c_str());
    return 1;
  }
  if (!msg.is_request()) {
    std::fprintf(stderr, "route-test: %s is a response; scripts route requests\n", opts.message_path.c_str());
    return 1;
  }
  core::Peer source;
  auto proto = core::protocol_from_name(opts.transport);
  size_t colon = opts.source.rfind(':');
  auto port = colon == std::string::npos ? std::nullopt
                                         : core::parse_uint(std::string_view(opts.source).substr(colon + 1), 65535);
  auto ep = port ? core::Endpoint::parse(opts.source.substr(0, colon), static_cast<uint16_t>(*port)) : std::nullopt;
  if (!proto || !ep) {
    std::fprintf(stderr, "route-test: bad --source/--transport\n");
    return 2;
  }
  source.protocol = *proto;
  source.endpoint = *ep;

  const core::Config& c = *cfg.config;
  core::SystemClock clock;
  location::LocationService location(clock, {}, nullptr);
  (void)location.start();
  for (const auto& b : opts.bindings) {
    size_t eq = b.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "route-test: --binding wants AOR=CONTACT, got %s\n", b.c_str());
      return 2;
    }
    std::string aor_text = b.substr(0, eq);  // the parsed URI views this text
    auto aor_uri = core::parse_uri(aor_text);
    if (!aor_uri || !aor_uri->is_sip()) {
      std::fprintf(stderr, "route-test: bad AOR in --binding %s\n", b.c_str());
      return 2;
    }
    location::BindingChange change;
    std::string contact = b.substr(eq + 1);
    change.contact = contact;
    if (auto st = location.add_static(core::canonical_aor(*aor_uri), change); !st) {
      std::fprintf(stderr, "route-test: --binding %s: %s\n", b.c_str(), core::describe(st.error()).c_str());
      return 2;
    }
  }
  proxy::LocalIdentity identity = identity_from(c);
  proxy::Registrar registrar(location, clock, registrar_settings_from(c));
  proxy::RegistrarServices services(registrar, location, identity, c.registrar.proxy_foreign_domain);
  services.set_trusted(c.security.trusted);

  auto gen = scripts::compile(c.script.path, script_limits_from(c));
  if (!gen.ok()) {
    std::fprintf(stderr, "script: %s\n", gen.error().c_str());
    return 1;
  }
  scripts::LuaPolicy policy(gen.value(), services);
  OfflineRequest req(msg, source);
  bool decided = false;
  proxy::Decision decision;
  policy.on_request(req, [&](proxy::Decision d) {
    decided = true;
    decision = std::move(d);
  });
  location.stop();
  if (!decided) {
    std::fprintf(stderr, "route-test: the script is waiting on an asynchronous call; offline runs cannot resume it\n");
    return 1;
  }
  std::printf("script: %s\n", c.script.path.c_str());
  print_decision(decision, req.edits());
  if (policy.counters().errors || policy.counters().no_decision) {
    if (!policy.last_error().empty()) std::fprintf(stderr, "script error: %s\n", policy.last_error().c_str());
    return 1;
  }
  return 0;
}

}  // namespace sb::app
