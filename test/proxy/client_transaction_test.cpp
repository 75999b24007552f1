// proxy/client_transaction.cpp: RFC 3261 §17.1.1 / §17.1.2 with RFC 6026 Accepted.
#include <doctest/doctest.h>

#include "transaction_fixture.h"

using namespace sb;
using namespace sb::proxy;
using namespace sb::proxy::test;
using Times = std::vector<int64_t>;
using Events = std::vector<std::string>;
using S = TransactionState;

namespace {
constexpr std::string_view kInviteLine = "INVITE sip:bob@192.0.2.20 SIP/2.0";
constexpr std::string_view kOptionsLine = "OPTIONS sip:bob@192.0.2.20 SIP/2.0";
constexpr std::string_view kAckLine = "ACK sip:bob@192.0.2.20 SIP/2.0";
}  // namespace

TEST_CASE("client INVITE, UDP: Timer A doubles from T1 without cap until Timer B (64*T1)") {
  Fixture f;
  ClientTransaction& t = f.start(downstream().text(), kDownstream);
  const uint64_t id = t.id();
  CHECK(t.state() == S::Calling);
  CHECK(t.is_invite());
  CHECK(t.method() == "INVITE");
  CHECK(t.branch() == "z9hG4bKsb0.1");
  CHECK(f.tu.events.empty());  // start_client never calls the TU

  f.run_until(31'999);
  CHECK(f.env.times_of(kInviteLine) == Times{0, 500, 1500, 3500, 7500, 15500, 31500});
  CHECK(f.tu.events.empty());
  for (const auto& s : f.env.sent) {
    CHECK(s.to.endpoint == kDownstream.endpoint);
    CHECK(s.txn_id == id);
  }

  f.run_until(32'000);
  CHECK(f.tu.events == Events{"client timeout"});
  CHECK(f.layer->find_client(id) == nullptr);
  CHECK(f.tu.terminated == std::vector<uint64_t>{id});
  CHECK(f.layer->size() == 0);
  const auto& c = f.layer->counters();
  CHECK(c.retransmissions_sent == 6);
  CHECK(c.client_timeouts == 1);
  CHECK(c.created_client == 1);
  CHECK(c.active_client_invite == 0);
}

TEST_CASE("client INVITE: timers follow the configured T1") {
  Timers timers;
  timers.t1_ms = 100;
  Fixture f(timers);
  f.start(downstream().text(), kDownstream);
  f.run_until(6'399);
  CHECK(f.env.times_of(kInviteLine) == Times{0, 100, 300, 700, 1500, 3100, 6300});
  CHECK(f.tu.events.empty());
  f.run_until(6'400);
  CHECK(f.tu.events == Events{"client timeout"});
}

TEST_CASE("client INVITE: a provisional stops A and B; RFC 6026 Accepted passes every 2xx") {
  Fixture f;
  const std::string inv = downstream().text();
  ClientTransaction& t = f.start(inv, kDownstream);
  const uint64_t id = t.id();
  f.run_until(200);
  f.deliver(response_to(inv, 180), kDownstream);
  CHECK(t.state() == S::Proceeding);
  CHECK(t.last_status() == 180);
  CHECK(f.tu.events == Events{"response 180"});

  // No retransmission and no Timer B: those timers are stale now (STYLE.md 4).
  f.run_until(40'000);
  CHECK(f.env.count(kInviteLine) == 1);
  CHECK(f.tu.events == Events{"response 180"});
  CHECK(f.layer->counters().stale_timers >= 2);
  REQUIRE(f.layer->find_client(id) == &t);

  f.deliver(response_to(inv, 200, "fork-a"), kDownstream);
  CHECK(t.state() == S::Accepted);
  f.deliver(response_to(inv, 200, "fork-a"), kDownstream);  // retransmission
  f.deliver(response_to(inv, 200, "fork-b"), kDownstream);  // another fork
  f.deliver(response_to(inv, 180, "fork-c"), kDownstream);  // absorbed
  f.deliver(response_to(inv, 486, "fork-d"), kDownstream);  // absorbed
  CHECK(f.tu.events == Events{"response 180", "response 200", "response 200", "response 200"});
  CHECK(f.env.count(kAckLine) == 0);  // the ACK to a 2xx is the UAC's, end to end
  CHECK(f.layer->counters().absorbed == 2);

  // Timer M = 64*T1 from the first 2xx.
  f.run_until(40'000 + 31'999);
  CHECK(f.layer->find_client(id) == &t);
  f.run_until(40'000 + 32'000);
  CHECK(f.layer->find_client(id) == nullptr);
  CHECK(f.tu.terminated == std::vector<uint64_t>{id});
  CHECK(f.tu.count("client timeout") == 0);

  f.deliver(response_to(inv, 200, "fork-a"), kDownstream);
  CHECK(f.tu.events.back() == "stray 200");
}

TEST_CASE("client INVITE: 2xx straight from Calling goes to Accepted and stops A") {
  Fixture f;
  const std::string inv = downstream().text();
  ClientTransaction& t = f.start(inv, kDownstream);
  f.run_until(100);
  f.deliver(response_to(inv, 200), kDownstream);
  CHECK(t.state() == S::Accepted);
  f.run_until(31'000);
  CHECK(f.env.count(kInviteLine) == 1);
  CHECK(f.tu.events == Events{"response 200"});
}

TEST_CASE("client INVITE: a non-2xx final is ACKed by the transaction; D absorbs retransmits") {
  Fixture f;
  Req r = downstream();
  r.extra = "Route: <sip:p2.example.com;lr>\r\n";
  const std::string inv = r.text();
  ClientTransaction& t = f.start(inv, kDownstream);
  const uint64_t id = t.id();
  f.run_until(100);
  f.deliver(response_to(inv, 486, "callee"), kDownstream);
  CHECK(t.state() == S::Completed);
  CHECK(f.tu.events == Events{"response 486"});
  REQUIRE(f.env.count(kAckLine) == 1);
  {
    const SentMessage& ack = f.env.sent.back();
    CHECK(ack.to.endpoint == kDownstream.endpoint);
    Msg m(ack.bytes);
    CHECK(m.m.via_count() == 1);
    CHECK(m.m.top_via().branch == "z9hG4bKsb0.1");
    CHECK(m.m.to().tag() == "callee");
    CHECK(m.m.cseq().method == core::Method::Ack);
    CHECK(m.m.find(core::HeaderId::Route) != nullptr);
  }

  // Timer A is stale; a retransmitted final is ACKed again and not passed up.
  f.run_until(1'000);
  CHECK(f.env.count(kInviteLine) == 1);
  f.deliver(response_to(inv, 486, "callee"), kDownstream);
  CHECK(f.env.count(kAckLine) == 2);
  CHECK(f.tu.events == Events{"response 486"});
  CHECK(f.layer->counters().absorbed == 1);

  // A 2xx after our non-2xx: handled like a late 2xx (stray), the transaction stays.
  f.deliver(response_to(inv, 200, "other-fork"), kDownstream);
  CHECK(f.tu.events.back() == "stray 200");
  CHECK(t.state() == S::Completed);

  // Timer D: 32 s on UDP.
  f.run_until(100 + 31'999);
  CHECK(f.layer->find_client(id) == &t);
  f.run_until(100 + 32'000);
  CHECK(f.layer->find_client(id) == nullptr);
  CHECK(f.tu.terminated == std::vector<uint64_t>{id});

  // After D the same response matches nothing.
  f.deliver(response_to(inv, 486, "callee"), kDownstream);
  CHECK(f.tu.events.back() == "stray 486");
  CHECK(f.env.count(kAckLine) == 2);
}

TEST_CASE("client INVITE over TCP: no Timer A, B still applies, D is zero") {
  Fixture f;
  const std::string inv = downstream("INVITE", "z9hG4bKsb0.1", "TCP").text();
  ClientTransaction& t = f.start(inv, kDownstreamTcp);
  CHECK(t.reliable());
  f.run_until(31'999);
  REQUIRE(f.env.count(kInviteLine) == 1);
  CHECK(f.env.sent[0].to.connection == kDownstreamTcp.connection);
  f.run_until(32'000);
  CHECK(f.tu.events == Events{"client timeout"});

  const std::string inv2 = downstream("INVITE", "z9hG4bKsb0.2", "TCP").text();
  ClientTransaction& t2 = f.start(inv2, kDownstreamTcp);
  const uint64_t id2 = t2.id();
  f.deliver(response_to(inv2, 603), kDownstreamTcp);
  CHECK(t2.state() == S::Completed);
  CHECK(f.env.count(kAckLine) == 1);
  CHECK(f.layer->find_client(id2) == &t2);  // D = 0 fires on the next on_timer, not inside
  f.tick();
  CHECK(f.layer->find_client(id2) == nullptr);
  CHECK(f.tu.terminated.back() == id2);
}

TEST_CASE("client non-INVITE, UDP: Timer E doubles up to T2, Timer F times out at 64*T1") {
  Fixture f;
  ClientTransaction& t = f.start(downstream("OPTIONS").text(), kDownstream);
  CHECK(t.state() == S::Trying);
  CHECK_FALSE(t.is_invite());
  f.run_until(31'999);
  CHECK(f.env.times_of(kOptionsLine) ==
        Times{0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500});
  CHECK(f.tu.events.empty());
  f.run_until(32'000);
  CHECK(f.tu.events == Events{"client timeout"});
  CHECK(f.layer->size() == 0);
}

TEST_CASE("client non-INVITE: in Proceeding E continues at T2 and F still fires") {
  Fixture f;
  const std::string req = downstream("OPTIONS").text();
  ClientTransaction& t = f.start(req, kDownstream);
  f.run_until(200);
  f.deliver(response_to(req, 100), kDownstream);
  CHECK(t.state() == S::Proceeding);
  f.run_until(31'999);
  // The E pending from Trying fires at 500, then every T2 (§17.1.2.2).
  CHECK(f.env.times_of(kOptionsLine) ==
        Times{0, 500, 4500, 8500, 12500, 16500, 20500, 24500, 28500});
  f.run_until(32'000);
  CHECK(f.tu.events == Events{"response 100", "client timeout"});
}

TEST_CASE("client non-INVITE: Timer K absorbs retransmitted finals for T4") {
  Fixture f;
  const std::string req = downstream("OPTIONS").text();
  ClientTransaction& t = f.start(req, kDownstream);
  const uint64_t id = t.id();
  f.run_until(100);
  f.deliver(response_to(req, 200), kDownstream);
  CHECK(t.state() == S::Completed);
  f.run_until(3'000);
  CHECK(f.env.count(kOptionsLine) == 1);  // E stale
  f.deliver(response_to(req, 200), kDownstream);
  f.deliver(response_to(req, 180), kDownstream);
  CHECK(f.tu.events == Events{"response 200"});
  CHECK(f.layer->counters().absorbed == 2);
  f.run_until(100 + 4'999);
  CHECK(f.layer->find_client(id) == &t);
  f.run_until(100 + 5'000);
  CHECK(f.layer->find_client(id) == nullptr);
  f.deliver(response_to(req, 200), kDownstream);
  CHECK(f.tu.events == Events{"response 200", "stray 200"});
  // F (32 s) and the pending E fire later for a gone transaction: stale, nothing sent.
  const uint64_t stale_before = f.layer->counters().stale_timers;
  f.run_until(40'000);
  CHECK(f.layer->counters().stale_timers > stale_before);
  CHECK(f.env.count(kOptionsLine) == 1);
  CHECK(f.tu.count("client timeout") == 0);
}

TEST_CASE("client non-INVITE over TCP: no Timer E, K is zero, F still applies") {
  Fixture f;
  const std::string req = downstream("OPTIONS", "z9hG4bKsb0.1", "TCP").text();
  ClientTransaction& t = f.start(req, kDownstreamTcp);
  const uint64_t id = t.id();
  f.deliver(response_to(req, 200), kDownstreamTcp);
  CHECK(t.state() == S::Completed);
  f.tick();
  CHECK(f.layer->find_client(id) == nullptr);

  f.start(downstream("OPTIONS", "z9hG4bKsb0.2", "TCP").text(), kDownstreamTcp);
  f.run_until(32'000);
  CHECK(f.env.count(kOptionsLine) == 2);  // one each, no retransmission
  CHECK(f.tu.events == Events{"response 200", "client timeout"});
}

TEST_CASE("client transport errors (§17.1.4)") {
  Fixture f;
  SUBCASE("a refused send is reported from the next on_timer, never inside start_client") {
    f.env.fail = true;
    ClientTransaction& t = f.start(downstream().text(), kDownstream);
    const uint64_t id = t.id();
    CHECK(f.tu.events.empty());
    CHECK(t.state() == S::Calling);
    CHECK(f.layer->next_deadline() == f.env.clock_.now_ms());
    f.tick();
    CHECK(f.tu.events == Events{"client transport error"});
    CHECK(f.layer->find_client(id) == nullptr);
    CHECK(f.tu.terminated == std::vector<uint64_t>{id});
    CHECK(f.layer->counters().transport_errors == 1);
  }
  SUBCASE("an asynchronous failure in Proceeding ends the transaction at once") {
    const std::string inv = downstream("INVITE", "z9hG4bKsb0.1", "TCP").text();
    ClientTransaction& t = f.start(inv, kDownstreamTcp);
    const uint64_t id = t.id();
    f.deliver(response_to(inv, 100), kDownstreamTcp);
    f.layer->on_transport_error(id);
    CHECK(f.tu.events == Events{"response 100", "client transport error"});
    CHECK(f.layer->find_client(id) == nullptr);
  }
  SUBCASE("after a final the error is ignored; the timers end the transaction") {
    const std::string inv = downstream().text();
    ClientTransaction& t = f.start(inv, kDownstream);
    const uint64_t id = t.id();
    f.deliver(response_to(inv, 486), kDownstream);
    f.layer->on_transport_error(id);
    CHECK(f.tu.events == Events{"response 486"});
    CHECK(f.layer->find_client(id) == &t);
    f.layer->on_transport_error(9'999);  // unknown id: nothing
    CHECK(f.tu.events == Events{"response 486"});
  }
  SUBCASE("an error reported from inside the transaction's own callback is deferred") {
    const std::string inv = downstream().text();
    ClientTransaction& t = f.start(inv, kDownstream);
    const uint64_t id = t.id();
    f.tu.response_hook = [&](ClientTransaction& txn, const core::Message&) {
      f.layer->on_transport_error(txn.id());
    };
    f.deliver(response_to(inv, 180), kDownstream);
    CHECK(f.layer->find_client(id) == &t);
    CHECK(f.tu.events == Events{"response 180"});
    f.tick();
    CHECK(f.tu.events == Events{"response 180", "client transport error"});
    CHECK(f.layer->find_client(id) == nullptr);
  }
}

TEST_CASE("client: CANCEL shares the INVITE's branch but is matched by CSeq method") {
  Fixture f;
  const std::string inv = downstream().text();
  Msg invite(inv);
  const std::string cancel = build_cancel(invite.m);
  ClientTransaction& ti = f.start(inv, kDownstream);
  ClientTransaction& tc = f.start(cancel, kDownstream);
  CHECK(ti.id() != tc.id());
  CHECK(tc.method() == "CANCEL");
  std::vector<std::string> seen;
  f.tu.response_hook = [&](ClientTransaction& txn, const core::Message& resp) {
    seen.push_back(std::string(txn.method()) + " " + std::to_string(resp.status()));
  };
  f.deliver(response_to(cancel, 200), kDownstream);
  f.deliver(response_to(inv, 487), kDownstream);
  CHECK(seen == std::vector<std::string>{"CANCEL 200", "INVITE 487"});
  CHECK(ti.state() == S::Completed);
  CHECK(tc.state() == S::Completed);
}

TEST_CASE("client: the TU may start a new transaction from a timeout (failover)") {
  Fixture f;
  uint64_t next = 0;
  f.tu.timeout_hook = [&](ClientTransaction&) {
    next = f.start(downstream("INVITE", "z9hG4bKsb0.2").text(), kDownstream).id();
  };
  f.start(downstream().text(), kDownstream);
  f.run_until(32'500);
  REQUIRE(next != 0);
  ClientTransaction* t = f.layer->find_client(next);
  REQUIRE(t != nullptr);
  CHECK(t->state() == S::Calling);
  CHECK(f.layer->size() == 1);
  Times times;
  for (const auto& s : f.env.sent)
    if (s.txn_id == next) times.push_back(s.at_ms);
  CHECK(times == Times{32'000, 32'500});
}

TEST_CASE("client: user data is the TU's") {
  Fixture f;
  int branch_state = 0;
  ClientTransaction& t = f.start(downstream().text(), kDownstream);
  CHECK(t.user_data() == nullptr);
  t.set_user_data(&branch_state);
  CHECK(t.user_data() == &branch_state);
}
