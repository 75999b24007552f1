// Fakes for the Lua engine tests: a parsed request (PolicyRequest), the proxy's services
// (PolicyServices) with an in-memory location table, script files in a temp directory, and a
// harness that runs a script on a request and returns the decision.
#pragma once
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/address.h"
#include "core/cidr.h"
#include "core/message.h"
#include "core/text.h"
#include "core/uri.h"
#include "proxy/routing_policy.h"
#include "scripts/engine/lua_policy.h"

namespace sb::scripts::test {

class FakeRequest final : public proxy::PolicyRequest {
 public:
  explicit FakeRequest(std::string bytes, std::string_view ip = "192.0.2.10", uint16_t port = 5060,
                       core::Protocol proto = core::Protocol::Udp)
      : bytes_(std::move(bytes)) {
    core::Status st = msg_.parse(bytes_);
    REQUIRE_MESSAGE(st.ok(), "test message does not parse: " << core::describe(st.error()));
    peer_.protocol = proto;
    auto ep = core::Endpoint::parse(ip, port);
    REQUIRE(ep.has_value());
    peer_.endpoint = *ep;
  }
  FakeRequest(const FakeRequest&) = delete;
  FakeRequest& operator=(const FakeRequest&) = delete;

  const core::Message& message() const override { return msg_; }
  const core::Peer& source() const override { return peer_; }
  proxy::RequestEdits& edits() override { return edits_; }

  std::string bytes_;
  core::Message msg_;
  core::Peer peer_;
  proxy::RequestEdits edits_;
};

// A request: `method ruri`, the usual headers, then `extra` lines (each without CRLF).
inline std::string sip_request(std::string_view method, std::string_view ruri,
                               std::vector<std::string> extra = {}, std::string_view to_tag = {},
                               std::string_view body = {}) {
  std::string s;
  s.append(method).append(" ").append(ruri).append(" SIP/2.0\r\n");
  s += "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n";
  s += "Max-Forwards: 70\r\n";
  s += "From: \"Alice Liddell\" <sip:alice@example.com>;tag=9fxced76sl\r\n";
  s += "To: Bob <sip:bob@example.com>";
  if (!to_tag.empty()) s.append(";tag=").append(to_tag);
  s += "\r\n";
  s += "Call-ID: 3848276298220188511@atlanta.example.com\r\n";
  s.append("CSeq: 31862 ").append(method).append("\r\n");
  s += "Contact: <sip:alice@192.0.2.10:5060>\r\n";
  for (const auto& l : extra) s.append(l).append("\r\n");
  s.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n\r\n");
  s.append(body);
  return s;
}

class FakeServices final : public proxy::PolicyServices {
 public:
  // Register a binding for `aor` (any SIP URI; stored under its canonical AOR).
  void bind(std::string_view aor, proxy::Target t) { bindings_[canonical(aor)].push_back(std::move(t)); }

  std::vector<proxy::Target> lookup(const core::Uri& uri) override {
    ++lookups;
    auto it = bindings_.find(core::canonical_aor(uri));
    return it == bindings_.end() ? std::vector<proxy::Target>{} : it->second;
  }
  proxy::Decision registrar_save(const proxy::PolicyRequest& req) override {
    ++saves;
    proxy::Decision d = proxy::Decision::reply(200, "OK");
    d.headers.push_back("Contact: <sip:" + std::string(req.message().from().uri.user) +
                        "@192.0.2.10:5060>;expires=3600");
    return d;
  }
  bool is_local_domain(std::string_view host) const override {
    for (const auto& d : domains_)
      if (core::iequals(d, host)) return true;
    return false;
  }
  std::vector<std::string> domains() const override { return domains_; }
  bool is_trusted(const core::Endpoint& source) const override { return trusted_.contains(source); }
  // With `shared_store` set, an AOR without bindings here is "asked of the store": the wait
  // is queued in `pending_lookups` for the test to complete.
  bool lookup_wait(std::string_view uri, std::function<void(bool ok)> done) override {
    if (!shared_store || bindings_.count(canonical(uri))) return false;
    pending_lookups.push_back(std::move(done));
    return true;
  }
  bool shared_store = false;
  std::vector<std::function<void(bool ok)>> pending_lookups;

  std::vector<std::string> domains_ = {"example.com", "192.0.2.1"};
  // FakeRequest's default source (192.0.2.10) is trusted, so scripts see it as before
  // config "security" existed; tests of untrusted sources use another address.
  core::CidrSet trusted_ = core::CidrSet({*core::parse_cidr("192.0.2.0/24")});
  int saves = 0;
  int lookups = 0;

 private:
  static std::string canonical(std::string_view uri) {
    auto r = core::parse_uri(uri);
    REQUIRE(r.ok());
    return core::canonical_aor(*r);
  }
  std::map<std::string, std::vector<proxy::Target>> bindings_;
};

inline proxy::Target target(std::string uri, uint16_t q1000 = 1000) {
  proxy::Target t;
  t.uri = std::move(uri);
  t.q1000 = q1000;
  return t;
}

// A directory for the scripts a test writes, removed at exit.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sb-scripts-test-XXXXXX";
    char* d = mkdtemp(tmpl);
    REQUIRE(d != nullptr);
    path_ = d;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline const std::string& temp_dir() {
  static TempDir dir;
  return dir.path();
}

// Write a script file; returns its path. Each call gets a new file.
inline std::string write_script(std::string_view text, std::string_view name = "script") {
  static int n = 0;
  std::string path = temp_dir() + "/" + std::string(name) + "_" + std::to_string(++n) + ".lua";
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
  return path;
}

inline std::string source_path(std::string_view rel) {
  return std::string(SB_SOURCE_DIR) + "/" + std::string(rel);
}

inline std::shared_ptr<ScriptGeneration> must_compile(const std::string& path,
                                                      ScriptLimits limits = {},
                                                      const CompileOptions& opts = {}) {
  auto r = compile(path, limits, opts);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? std::string() : r.error()));
  return *r;
}

struct Outcome {
  int calls = 0;
  proxy::Decision d;
};
inline proxy::DecisionFn capture(Outcome& o) {
  return [&o](proxy::Decision d) {
    ++o.calls;
    o.d = std::move(d);
  };
}

// A policy over a script (a file, or Lua text written to a file) with fake services.
struct Harness {
  explicit Harness(const std::string& path, ScriptLimits limits = {},
                   const CompileOptions& opts = {})
      : policy(must_compile(path, limits, opts), services) {}
  static Harness text(std::string_view lua, ScriptLimits limits = {},
                      const CompileOptions& opts = {}) {
    return Harness(write_script(lua), limits, opts);
  }
  Harness(Harness&&) = delete;

  // on_request, which must decide synchronously.
  proxy::Decision request(FakeRequest& r) {
    Outcome o;
    policy.on_request(r, capture(o));
    REQUIRE_MESSAGE(o.calls == 1, "on_request did not decide synchronously");
    return o.d;
  }
  proxy::Decision failure(FakeRequest& r, int status, std::string reason = "",
                          std::vector<std::string> attempted = {}) {
    proxy::FailureInfo best{status, std::move(reason), std::move(attempted)};
    Outcome o;
    policy.on_failure(r, best, capture(o));
    REQUIRE_MESSAGE(o.calls == 1, "on_failure did not decide synchronously");
    return o.d;
  }

  FakeServices services;
  LuaPolicy policy;
};

inline bool has(const std::vector<std::string>& v, std::string_view s) {
  for (const auto& x : v)
    if (x == s) return true;
  return false;
}

}  // namespace sb::scripts::test
