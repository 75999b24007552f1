// Test harness for the proxy core (RFC 3261 §16): a TransactionLayer and a ProxyCore wired
// together on a FakeClock, an env capturing every send, a scripted resolver, a C++ routing
// policy each test programs, and builders for the messages UAs and downstream servers send.
#pragma once
#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/branch.h"
#include "core/clock.h"
#include "core/message.h"
#include "core/response.h"
#include "core/sip_headers.h"
#include "core/text.h"
#include "proxy/local_identity.h"
#include "proxy/proxy_core.h"
#include "proxy/resolver.h"
#include "proxy/routing_policy.h"
#include "proxy/transaction.h"
#include "transaction_fixture.h"

// Failed CHECKs on vectors print their elements.
namespace doctest {
template <typename T>
struct StringMaker<std::vector<T>> {
  static String convert(const std::vector<T>& v) {
    String out = "{";
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) out += ", ";
      out += StringMaker<T>::convert(v[i]);
    }
    out += "}";
    return out;
  }
};
}  // namespace doctest

namespace sb::proxy::test {

// The proxy's own address (UDP and TCP listeners) and the parties around it.
inline const core::Peer kSelfUdp = make_peer("127.0.0.1", 5060);
inline const core::Peer kCaller = make_peer("192.0.2.10", 5060);
inline const core::Peer kBob = make_peer("192.0.2.20", 5060);
inline const core::Peer kCarol = make_peer("192.0.2.21", 5060);
inline const core::Peer kDave = make_peer("192.0.2.22", 5060);
inline const core::Peer kEdge = make_peer("192.0.2.30", 5070);

inline std::string peer_text(const core::Peer& p) {
  return std::string(core::protocol_name(p.protocol)) + " " + p.endpoint.to_string();
}
inline bool same_peer(const core::Peer& a, const core::Peer& b) {
  return a.protocol == b.protocol && a.endpoint == b.endpoint;
}

// A parsed copy of a message (the text is owned; the object is not movable).
using Parsed = std::unique_ptr<Msg>;
inline Parsed parse(const std::string& text) { return std::make_unique<Msg>(text); }

// Every value of a header (list elements split), in order.
inline std::vector<std::string> values(const core::Message& m, core::HeaderId id) {
  std::vector<std::string> out;
  m.for_each_value(id, [&](std::string_view v) {
    out.emplace_back(v);
    return true;
  });
  return out;
}
inline std::vector<std::string> values(const std::string& text, core::HeaderId id) {
  Msg m(text);
  return values(m.m, id);
}
// The value of every header line with `id` (challenges hold commas: not split).
inline std::vector<std::string> lines(const core::Message& m, core::HeaderId id) {
  std::vector<std::string> out;
  m.for_each(id, [&](const core::Header& h) {
    out.emplace_back(h.value);
    return true;
  });
  return out;
}
// Every value of a header not known to the parser by id, found by its name.
inline std::vector<std::string> values_named(const core::Message& m, std::string_view name) {
  std::vector<std::string> out;
  for (const auto& h : m.headers())
    if (core::iequals(h.name, name)) out.emplace_back(h.value);
  return out;
}

// A request as a UA (or another proxy) sends it.
struct ReqSpec {
  std::string method = "INVITE";
  std::string ruri = "sip:bob@example.com";
  std::string transport = "UDP";
  std::string sent_by = "192.0.2.10:5060";
  std::string branch = "z9hG4bKcaller1";
  std::string via_params;                 // e.g. ";rport"
  std::vector<std::string> lower_vias;    // Via values below the top one
  int max_forwards = 70;                  // -1: no Max-Forwards header
  std::string call_id = "call-1@192.0.2.10";
  std::string from_tag = "ft1";
  std::string to_tag;
  uint32_t cseq = 1;
  std::string cseq_method;                // "" = method
  std::vector<std::string> routes;        // one Route line each
  std::vector<std::string> extra;         // whole header lines without CRLF
  std::string body;

  std::string text() const {
    std::string s = method + " " + ruri + " SIP/2.0\r\n";
    s += "Via: SIP/2.0/" + transport + " " + sent_by;
    if (!branch.empty()) s += ";branch=" + branch;
    s += via_params + "\r\n";
    for (const auto& v : lower_vias) s += "Via: " + v + "\r\n";
    for (const auto& r : routes) s += "Route: " + r + "\r\n";
    if (max_forwards >= 0) s += "Max-Forwards: " + std::to_string(max_forwards) + "\r\n";
    s += "From: \"Alice\" <sip:alice@example.com>;tag=" + from_tag + "\r\n";
    s += "To: <sip:bob@example.com>";
    if (!to_tag.empty()) s += ";tag=" + to_tag;
    s += "\r\nCall-ID: " + call_id + "\r\n";
    s += "CSeq: " + std::to_string(cseq) + " " + (cseq_method.empty() ? method : cseq_method) + "\r\n";
    for (const auto& e : extra) s += e + "\r\n";
    if (!body.empty()) s += "Content-Type: application/sdp\r\n";
    s += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    return s;
  }
};

// A response to `request` as its UAS (or a downstream proxy) builds it (§8.2.6).
inline std::string reply_to(const std::string& request, int status, std::string_view to_tag = "callee",
                            std::vector<std::string> headers = {}) {
  Msg req(request);
  std::vector<std::string_view> lines(headers.begin(), headers.end());
  core::ResponseSpec spec;
  spec.status = status;
  spec.to_tag = to_tag;
  spec.headers = lines;
  return core::build_response(req.m, spec);
}

// Answers with the server lists a test chooses (by host), at once or when released; hosts
// it has no list for go to the NumericResolver (IP literals).
class ScriptedResolver final : public Resolver {
 public:
  std::map<std::string, std::vector<core::Peer>> answers;
  std::set<std::string> nxdomain;  // hosts that do not exist
  bool async = false;
  struct Report {
    core::Peer server;
    ServerFault fault;
    int64_t retry_after_ms;
  };
  std::vector<Report> reports;
  std::vector<std::string> asked;  // the URIs asked for, in order
  std::vector<std::pair<ServerList, std::function<void(ServerList)>>> pending;

  void resolve(const core::Uri& uri, std::function<void(ServerList)> done) override {
    asked.emplace_back(uri.raw);
    ServerList list;
    auto it = answers.find(std::string(uri.host));
    if (it != answers.end()) {
      list.servers = it->second;
    } else if (nxdomain.count(std::string(uri.host))) {
      list.error = "no such name";
      list.no_such_name = true;
    } else {
      NumericResolver numeric;
      numeric.resolve(uri, [&](ServerList l) { list = std::move(l); });
    }
    if (async) {
      pending.emplace_back(std::move(list), std::move(done));
    } else {
      done(std::move(list));
    }
  }
  void report(const core::Peer& server, ServerFault fault, int64_t retry_after_ms) override {
    reports.push_back({server, fault, retry_after_ms});
  }
  // Answer every pending question (including ones asked meanwhile).
  void release() {
    while (!pending.empty()) {
      auto p = std::move(pending.front());
      pending.erase(pending.begin());
      p.second(std::move(p.first));
    }
  }
};

// A C++ routing policy: each test sets what it decides. By default it relays to the
// Request-URI as it stands and lets on_failure send the best response.
class TestPolicy final : public RoutingPolicy {
 public:
  std::function<Decision(PolicyRequest&)> decide;
  std::function<Decision(PolicyRequest&, const FailureInfo&)> fail;
  bool async = false;          // keep the callbacks in `held` instead of answering
  std::vector<DecisionFn> held;
  bool async_failure = false;  // the same for on_failure, in `held_failures`
  std::vector<DecisionFn> held_failures;
  std::vector<std::string> seen;     // Request-URIs of the requests seen, in order
  std::vector<FailureInfo> failures;

  void on_request(PolicyRequest& req, DecisionFn done) override {
    seen.emplace_back(req.message().ruri_text());
    if (async) {
      held.push_back(std::move(done));
      return;
    }
    Decision d;
    if (decide) {
      d = decide(req);
    } else {
      d.kind = Decision::Kind::Relay;
    }
    done(std::move(d));
  }
  void on_failure(PolicyRequest& req, const FailureInfo& best, DecisionFn done) override {
    failures.push_back(best);
    if (async_failure) {
      held_failures.push_back(std::move(done));
      return;
    }
    Decision d;
    if (fail) d = fail(req, best);
    done(std::move(d));
  }
};

inline Decision relay_to(std::vector<std::string> uris, bool record_route = false) {
  Decision d;
  d.kind = Decision::Kind::Relay;
  d.relay.record_route = record_route;
  for (auto& u : uris) {
    Target t;
    t.uri = std::move(u);
    d.targets.push_back(std::move(t));
  }
  return d;
}

// Captures every send; refuses those to the endpoints in `refuse` (an immediate failure).
class ProxyEnv final : public TransactionEnv {
 public:
  core::FakeClock clock_;
  std::vector<SentMessage> sent;
  int64_t t0 = clock_.now_ms();
  std::vector<core::Peer> refuse;

  const core::Clock& clock() const override { return clock_; }
  bool send(const core::Peer& to, std::string_view bytes, uint64_t txn_id) override {
    for (const auto& r : refuse)
      if (same_peer(r, to)) return false;
    sent.push_back({to, std::string(bytes), txn_id, clock_.now_ms() - t0});
    return true;
  }
};

struct ProxyFixture {
  ProxyEnv env;
  LocalIdentity identity;
  ScriptedResolver resolver;
  TestPolicy policy;
  ProxySettings settings;
  std::unique_ptr<ProxyCore> core;
  std::unique_ptr<TransactionLayer> layer;

  static ProxySettings default_settings() {
    ProxySettings s;
    s.worker_id = 3;  // not 0, so a test sees the worker really is encoded in our branches
    return s;
  }

  explicit ProxyFixture(ProxySettings s = default_settings(), Timers timers = {},
                        LayerOptions options = {})
      : identity(listeners(), {"example.com"}), settings(std::move(s)) {
    core = std::make_unique<ProxyCore>(env, identity, resolver, policy, settings);
    layer = std::make_unique<TransactionLayer>(env, *core, timers, options);
    core->attach(*layer);
  }
  ~ProxyFixture() {
    // The layer calls the core back while it goes: destroy it first.
    layer.reset();
    core.reset();
  }

  static std::vector<LocalListener> listeners() {
    LocalListener udp;
    udp.protocol = core::Protocol::Udp;
    udp.address = udp.host = "127.0.0.1";
    udp.port = 5060;
    udp.family = AF_INET;
    LocalListener tcp = udp;
    tcp.protocol = core::Protocol::Tcp;
    return {udp, tcp};
  }

  int64_t elapsed() const { return env.clock_.now_ms() - env.t0; }

  // Advance to `t` ms since start, firing the layer's and the core's timers at their
  // deadlines on the way.
  void run_until(int64_t t) {
    const int64_t target = env.t0 + t;
    for (;;) {
      int64_t d = std::min(layer->next_deadline(), core->next_deadline());
      if (d > target) break;
      if (d > env.clock_.now_ms()) env.clock_.advance(d - env.clock_.now_ms());
      layer->on_timer(env.clock_.now_ms());
      core->on_timer(env.clock_.now_ms());
    }
    if (target > env.clock_.now_ms()) env.clock_.advance(target - env.clock_.now_ms());
  }
  void run_for(int64_t ms) { run_until(elapsed() + ms); }
  // Fire what is due now (zero-length timers, deferred transport errors).
  void tick() {
    layer->on_timer(env.clock_.now_ms());
    core->on_timer(env.clock_.now_ms());
  }
  // Long enough for every transaction to end (Timer D, H, I, J, K, L, M all < 64*T1).
  void settle() { run_for(70'000); }
  bool idle() const { return core->contexts() == 0 && layer->size() == 0; }

  void deliver(const std::string& text, const core::Peer& from) {
    core::Message m;
    core::Status st = m.parse(text);
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : core::describe(st.error())));
    layer->on_message(m, from);
  }

  // Sends from index `from` on (what happened since a mark).
  size_t mark() const { return env.sent.size(); }
  std::vector<const SentMessage*> sent_since(size_t from) const {
    std::vector<const SentMessage*> out;
    for (size_t i = from; i < env.sent.size(); ++i) out.push_back(&env.sent[i]);
    return out;
  }
  // The first lines of everything sent to `to`, in order.
  std::vector<std::string> lines_to(const core::Peer& to, size_t since = 0) const {
    std::vector<std::string> out;
    for (size_t i = since; i < env.sent.size(); ++i)
      if (same_peer(env.sent[i].to, to)) out.push_back(env.sent[i].line());
    return out;
  }
  // The requests with `method` sent to `to`, in order.
  std::vector<std::string> requests_to(const core::Peer& to, std::string_view method,
                                       size_t since = 0) const {
    std::vector<std::string> out;
    std::string prefix = std::string(method) + " ";
    for (size_t i = since; i < env.sent.size(); ++i)
      if (same_peer(env.sent[i].to, to) && env.sent[i].bytes.compare(0, prefix.size(), prefix) == 0)
        out.push_back(env.sent[i].bytes);
    return out;
  }
  // The last request with `method` sent to `to`; fails the test when there is none.
  std::string last_request(const core::Peer& to, std::string_view method) const {
    auto all = requests_to(to, method);
    REQUIRE_MESSAGE(!all.empty(), "no " << method << " sent to " << peer_text(to));
    return all.back();
  }
  // Responses sent to `to` with this status (first lines compared by code).
  std::vector<std::string> responses_to(const core::Peer& to, int status, size_t since = 0) const {
    std::vector<std::string> out;
    std::string prefix = "SIP/2.0 " + std::to_string(status) + " ";
    for (size_t i = since; i < env.sent.size(); ++i)
      if (same_peer(env.sent[i].to, to) && env.sent[i].bytes.compare(0, prefix.size(), prefix) == 0)
        out.push_back(env.sent[i].bytes);
    return out;
  }
  // The final responses (>= 200) sent to `to`, as status codes in order.
  std::vector<int> finals_to(const core::Peer& to, size_t since = 0) const {
    std::vector<int> out;
    for (size_t i = since; i < env.sent.size(); ++i) {
      const auto& s = env.sent[i];
      if (!same_peer(s.to, to) || s.bytes.compare(0, 8, "SIP/2.0 ") != 0) continue;
      int code = std::stoi(s.bytes.substr(8, 3));
      if (code >= 200) out.push_back(code);
    }
    return out;
  }
};

}  // namespace sb::proxy::test
