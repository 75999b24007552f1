// Test harness for the transaction layer: a FakeClock, an env capturing every send, a TU
// recording every callback, and builders for the messages the tests exchange.
#pragma once
#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.h"
#include "core/message.h"
#include "core/response.h"
#include "proxy/transaction.h"

namespace sb::proxy::test {

inline core::Peer make_peer(std::string_view ip, uint16_t port,
                            core::Protocol proto = core::Protocol::Udp, uint32_t conn = 0) {
  core::Peer p;
  p.protocol = proto;
  // No doctest assertion here: the constants below are built before any test runs.
  if (auto ep = core::Endpoint::parse(ip, port)) p.endpoint = *ep;
  if (conn != 0) p.connection = core::ConnectionId{0, conn};
  return p;
}

// The upstream UA (server transaction tests) and the downstream hop (client tests).
inline const core::Peer kUpstream = make_peer("192.0.2.10", 5060);
inline const core::Peer kDownstream = make_peer("192.0.2.20", 5060);
inline const core::Peer kUpstreamTcp = make_peer("192.0.2.10", 40123, core::Protocol::Tcp, 7);
inline const core::Peer kDownstreamTcp = make_peer("192.0.2.20", 5060, core::Protocol::Tcp, 8);

// A parsed message owning its text (neither copied nor moved, so the views stay valid).
struct Msg {
  std::string text;
  core::Message m;
  explicit Msg(std::string t) : text(std::move(t)) {
    core::Status st = m.parse(text);
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : core::describe(st.error())));
  }
  Msg(const Msg&) = delete;
  Msg& operator=(const Msg&) = delete;
};

// A request as a UA sends it (upstream of us) or as we send it (top Via ours).
struct Req {
  std::string_view method = "INVITE";
  std::string_view ruri = "sip:bob@example.com";
  std::string_view transport = "UDP";
  std::string_view sent_by = "192.0.2.10:5060";
  std::string_view branch = "z9hG4bKup1";
  std::string_view via_params = "";      // more Via params, e.g. ";rport"
  std::string_view lower_vias = "";      // whole "Via: ..." lines below the top one
  std::string_view call_id = "call-1@192.0.2.10";
  std::string_view from_tag = "ft1";
  std::string_view to_tag = "";
  uint32_t cseq = 1;
  std::string_view cseq_method = "";     // "" = method
  std::string_view extra = "";           // whole header lines, each ending in CRLF

  std::string text() const {
    std::string s;
    s.append(method).append(" ").append(ruri).append(" SIP/2.0\r\n");
    s.append("Via: SIP/2.0/").append(transport).append(" ").append(sent_by);
    if (!branch.empty()) s.append(";branch=").append(branch);
    s.append(via_params).append("\r\n");
    s.append(lower_vias);
    s.append("Max-Forwards: 70\r\n");
    s.append("From: \"Alice\" <sip:alice@example.com>;tag=").append(from_tag).append("\r\n");
    s.append("To: <sip:bob@example.com>");
    if (!to_tag.empty()) s.append(";tag=").append(to_tag);
    s.append("\r\nCall-ID: ").append(call_id).append("\r\n");
    s.append("CSeq: ").append(std::to_string(cseq)).append(" ");
    s.append(cseq_method.empty() ? method : cseq_method).append("\r\n");
    s.append(extra);
    s.append("Content-Length: 0\r\n\r\n");
    return s;
  }
};

// A response to `request_text` built as a UAS would (§8.2.6).
inline std::string response_to(const std::string& request_text, int status,
                               std::string_view to_tag = "tt1") {
  core::Message req;
  REQUIRE(req.parse(request_text).ok());
  core::ResponseSpec spec;
  spec.status = status;
  spec.to_tag = to_tag;
  return core::build_response(req, spec);
}

inline std::string first_line(std::string_view bytes) {
  return std::string(bytes.substr(0, bytes.find("\r\n")));
}

struct SentMessage {
  core::Peer to;
  std::string bytes;
  uint64_t txn_id;
  int64_t at_ms;  // since the fixture started
  std::string line() const { return first_line(bytes); }
};

class CaptureEnv final : public TransactionEnv {
 public:
  core::FakeClock clock_;
  std::vector<SentMessage> sent;
  int64_t t0 = clock_.now_ms();
  bool fail = false;  // refuse every send (an immediate transport failure)

  const core::Clock& clock() const override { return clock_; }
  bool send(const core::Peer& to, std::string_view bytes, uint64_t txn_id) override {
    if (fail) return false;
    sent.push_back({to, std::string(bytes), txn_id, clock_.now_ms() - t0});
    return true;
  }
  // Times (since start) at which a message with this first line was sent.
  std::vector<int64_t> times_of(std::string_view line) const {
    std::vector<int64_t> out;
    for (const auto& s : sent)
      if (s.line() == line) out.push_back(s.at_ms);
    return out;
  }
  size_t count(std::string_view line) const { return times_of(line).size(); }
};

class Recorder final : public TransactionUser {
 public:
  // One string per callback: "request INVITE", "request ACK (none)", "response 180",
  // "stray 200", "client timeout", "client transport error", "server timeout",
  // "server transport error", "ack", "overload INVITE".
  std::vector<std::string> events;
  std::vector<uint64_t> terminated;
  uint64_t last_server = 0;  // id of the last server transaction handed to on_request
  std::function<void(ServerTransaction*, const core::Message&)> request_hook;
  std::function<void(ClientTransaction&, const core::Message&)> response_hook;
  std::function<void(ClientTransaction&)> timeout_hook;

  void on_request(ServerTransaction* txn, const core::Message& req,
                  const core::Peer&) override {
    std::string e = "request " + std::string(req.method_text());
    if (!txn) e += " (none)";
    events.push_back(e);
    if (txn) last_server = txn->id();
    if (request_hook) request_hook(txn, req);
  }
  void on_response(ClientTransaction& txn, const core::Message& resp) override {
    events.push_back("response " + std::to_string(resp.status()));
    if (response_hook) response_hook(txn, resp);
  }
  void on_stray_response(const core::Message& resp, const core::Peer&) override {
    events.push_back("stray " + std::to_string(resp.status()));
  }
  void on_client_timeout(ClientTransaction& txn) override {
    CHECK(txn.state() == TransactionState::Terminated);
    events.push_back("client timeout");
    if (timeout_hook) timeout_hook(txn);
  }
  void on_client_transport_error(ClientTransaction& txn) override {
    CHECK(txn.state() == TransactionState::Terminated);
    events.push_back("client transport error");
  }
  void on_server_timeout(ServerTransaction& txn) override {
    CHECK(txn.state() == TransactionState::Terminated);
    events.push_back("server timeout");
  }
  void on_server_transport_error(ServerTransaction& txn) override {
    CHECK(txn.state() == TransactionState::Terminated);
    events.push_back("server transport error");
  }
  void on_ack(ServerTransaction& txn, const core::Message&) override {
    CHECK(txn.state() == TransactionState::Accepted);
    events.push_back("ack");
  }
  void on_overload(const core::Message& req, const core::Peer&) override {
    events.push_back("overload " + std::string(req.method_text()));
  }
  void on_terminated(uint64_t txn_id) override { terminated.push_back(txn_id); }

  size_t count(std::string_view e) const {
    size_t n = 0;
    for (const auto& x : events) n += x == e;
    return n;
  }
};

struct Fixture {
  CaptureEnv env;
  Recorder tu;
  std::unique_ptr<TransactionLayer> layer;

  explicit Fixture(Timers timers = {}, LayerOptions options = {})
      : layer(std::make_unique<TransactionLayer>(env, tu, timers, options)) {}

  int64_t elapsed() const { return env.clock_.now_ms() - env.t0; }

  // Advance to `t` ms since start, firing every timer at its exact deadline on the way.
  void run_until(int64_t t) {
    const int64_t target = env.t0 + t;
    while (layer->next_deadline() <= target) {
      const int64_t d = layer->next_deadline();
      if (d > env.clock_.now_ms()) env.clock_.advance(d - env.clock_.now_ms());
      layer->on_timer(env.clock_.now_ms());
    }
    if (target > env.clock_.now_ms()) env.clock_.advance(target - env.clock_.now_ms());
  }
  // Fire what is due now (zero-length timers) without moving the clock.
  void tick() { layer->on_timer(env.clock_.now_ms()); }

  void deliver(const std::string& text, const core::Peer& from) {
    core::Message m;
    core::Status st = m.parse(text);
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? std::string() : core::describe(st.error())));
    layer->on_message(m, from);
  }

  ClientTransaction& start(const std::string& text, const core::Peer& to) {
    Msg req(text);
    return layer->start_client(text, req.m, to);
  }

  ServerTransaction* server() { return layer->find_server(tu.last_server); }
};

// The request we forward downstream: our Via on top of the upstream one.
inline Req downstream(std::string_view method = "INVITE",
                      std::string_view branch = "z9hG4bKsb0.1",
                      std::string_view transport = "UDP") {
  Req r;
  r.method = method;
  r.ruri = "sip:bob@192.0.2.20";
  r.transport = transport;
  r.sent_by = "198.51.100.1:5060";
  r.branch = branch;
  r.lower_vias = "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKup1\r\n";
  return r;
}

}  // namespace sb::proxy::test
