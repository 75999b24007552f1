// proxy/server_transaction.cpp: RFC 3261 §17.2.1 / §17.2.2 with RFC 6026 Accepted.
#include <doctest/doctest.h>

#include "transaction_fixture.h"

using namespace sb;
using namespace sb::proxy;
using namespace sb::proxy::test;
using Times = std::vector<int64_t>;
using Events = std::vector<std::string>;
using S = TransactionState;

namespace {

Req ack_for(Req r, std::string_view to_tag = "srv") {
  r.method = "ACK";
  r.to_tag = to_tag;
  return r;
}

}  // namespace

TEST_CASE("server INVITE: 100 Trying at once; retransmissions get the last provisional") {
  Fixture f;
  const std::string inv = Req{}.text();
  f.deliver(inv, kUpstream);
  CHECK(f.tu.events == Events{"request INVITE"});
  ServerTransaction* t = f.server();
  REQUIRE(t != nullptr);
  CHECK(t->state() == S::Proceeding);
  CHECK(t->is_invite());
  REQUIRE(f.env.sent.size() == 1);
  CHECK(f.env.sent[0].line() == "SIP/2.0 100 Trying");
  CHECK(f.env.sent[0].to.endpoint.to_string() == "192.0.2.10:5060");
  CHECK(f.env.sent[0].txn_id == t->id());
  {
    Msg trying(f.env.sent[0].bytes);
    CHECK(trying.m.top_via().branch == "z9hG4bKup1");
    CHECK(trying.m.to().tag().empty());  // §8.2.6.2: no tag on a 100
  }

  f.deliver(inv, kUpstream);
  CHECK(f.env.count("SIP/2.0 100 Trying") == 2);
  CHECK(f.tu.events == Events{"request INVITE"});

  CHECK(t->respond(180, response_to(inv, 180, "srv")));
  f.deliver(inv, kUpstream);
  CHECK(f.env.count("SIP/2.0 180 Ringing") == 2);
  CHECK(f.env.count("SIP/2.0 100 Trying") == 2);
  CHECK(f.tu.events == Events{"request INVITE"});
  const auto& c = f.layer->counters();
  CHECK(c.absorbed == 2);
  CHECK(c.retransmissions_sent == 2);
  CHECK(c.active_server_invite == 1);
}

TEST_CASE("server INVITE: the 100 is not kept once sent; a retransmission gets the same 100 again") {
  Fixture f;
  Req a;
  a.extra = "Timestamp: 54\r\n";  // §8.2.6.1: copied into the 100
  const std::string inv = a.text();
  f.deliver(inv, kUpstream);
  ServerTransaction* t = f.server();
  REQUIRE(t != nullptr);
  REQUIRE(f.env.sent.size() == 1);
  CHECK(t->last_status() == 100);
  CHECK(t->last_response().empty());  // no copy held while the callee is reached
  f.deliver(inv, kUpstream);
  REQUIRE(f.env.sent.size() == 2);
  CHECK(f.env.sent[1].bytes == f.env.sent[0].bytes);
  CHECK(f.layer->counters().retransmissions_sent == 1);
  // Once the TU answered, its response is kept and resent.
  CHECK(t->respond(180, response_to(inv, 180, "srv")));
  CHECK(t->last_response().starts_with("SIP/2.0 180 Ringing"));
  f.deliver(inv, kUpstream);
  CHECK(f.env.count("SIP/2.0 180 Ringing") == 2);
  CHECK(f.env.count("SIP/2.0 100 Trying") == 2);
}

TEST_CASE("server INVITE, 100 deferred: kept until sent, then dropped") {
  LayerOptions opts;
  opts.trying_delay_ms = 200;
  Fixture f({}, opts);
  const std::string inv = Req{}.text();
  f.deliver(inv, kUpstream);
  ServerTransaction* t = f.server();
  REQUIRE(t != nullptr);
  CHECK(t->last_response().starts_with("SIP/2.0 100 Trying"));
  f.run_until(200);
  REQUIRE(f.env.sent.size() == 1);
  CHECK(t->last_response().empty());
  f.deliver(inv, kUpstream);
  REQUIRE(f.env.sent.size() == 2);
  CHECK(f.env.sent[1].bytes == f.env.sent[0].bytes);
}

TEST_CASE("server INVITE: without the 100 flag nothing is sent until the TU responds") {
  LayerOptions opts;
  opts.send_100_trying = false;
  Fixture f({}, opts);
  const std::string inv = Req{}.text();
  f.deliver(inv, kUpstream);
  f.deliver(inv, kUpstream);
  CHECK(f.env.sent.empty());
  CHECK(f.tu.events == Events{"request INVITE"});
  CHECK(f.layer->counters().absorbed == 1);
}

TEST_CASE("server INVITE, 100 deferred: an answer within the delay leaves the 100 out (§17.2.1)") {
  LayerOptions opts;
  opts.trying_delay_ms = 200;
  Fixture f({}, opts);
  const std::string inv = Req{}.text();
  f.deliver(inv, kUpstream);
  ServerTransaction* t = f.server();
  REQUIRE(t != nullptr);
  CHECK(f.env.sent.empty());  // not at once
  f.run_until(150);
  CHECK(t->respond(180, response_to(inv, 180, "srv")));
  f.run_until(1'000);
  CHECK(f.env.count("SIP/2.0 100 Trying") == 0);
  CHECK(f.env.times_of("SIP/2.0 180 Ringing") == Times{150});
  // A retransmission now gets the 180, as ever.
  f.deliver(inv, kUpstream);
  CHECK(f.env.count("SIP/2.0 180 Ringing") == 2);
  CHECK(f.env.count("SIP/2.0 100 Trying") == 0);
}

TEST_CASE("server INVITE, 100 deferred: sent when the delay passes with no answer, or at a retransmission") {
  LayerOptions opts;
  opts.trying_delay_ms = 200;
  Fixture f({}, opts);
  Req a;
  const std::string inv = a.text();
  f.deliver(inv, kUpstream);
  f.run_until(199);
  CHECK(f.env.sent.empty());
  f.run_until(200);
  CHECK(f.env.times_of("SIP/2.0 100 Trying") == Times{200});
  CHECK(f.layer->counters().retransmissions_sent == 0);
  f.deliver(inv, kUpstream);
  CHECK(f.env.count("SIP/2.0 100 Trying") == 2);
  CHECK(f.layer->counters().retransmissions_sent == 1);

  // A retransmitted INVITE before the delay: the 100 goes then, once; the timer does nothing.
  Req b;
  b.branch = "z9hG4bKup2";
  b.call_id = "second";
  const std::string inv2 = b.text();
  f.run_until(1'000);
  f.deliver(inv2, kUpstream);
  f.run_until(1'100);
  f.deliver(inv2, kUpstream);
  f.run_until(2'000);
  Msg first(f.env.sent.back().bytes);
  CHECK(first.m.call_id() == "second");
  CHECK(f.env.count("SIP/2.0 100 Trying") == 3);
  CHECK(f.env.times_of("SIP/2.0 100 Trying") == Times{200, 200, 1'100});
  CHECK(f.layer->counters().retransmissions_sent == 1);  // the deferred 100's first sending is none
  // A final before the delay: no 100 either, and the timer is stale.
  Req c;
  c.branch = "z9hG4bKup3";
  c.call_id = "third";
  const std::string inv3 = c.text();
  f.deliver(inv3, kUpstream);
  ServerTransaction* t3 = f.server();
  REQUIRE(t3 != nullptr);
  CHECK(t3->respond(486, response_to(inv3, 486, "srv")));
  f.run_until(2'500);
  CHECK(f.env.count("SIP/2.0 100 Trying") == 3);
}

TEST_CASE("server INVITE, UDP: Timer G doubles up to T2 until Timer H (64*T1)") {
  Fixture f;
  const std::string inv = Req{}.text();
  f.deliver(inv, kUpstream);
  ServerTransaction* t = f.server();
  const uint64_t id = t->id();
  CHECK(t->respond(486, response_to(inv, 486, "srv")));
  CHECK(t->state() == S::Completed);
  CHECK_FALSE(t->respond(200, response_to(inv, 200, "srv")));  // one final only
  f.run_until(31'999);
  CHECK(f.env.times_of("SIP/2.0 486 Busy Here") ==
        Times{0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500});
  CHECK(f.env.count("SIP/2.0 200 OK") == 0);
  f.run_until(32'000);
  CHECK(f.tu.events == Events{"request INVITE", "server timeout"});
  CHECK(f.layer->find_server(id) == nullptr);
  CHECK(f.tu.terminated == std::vector<uint64_t>{id});
  CHECK(f.layer->counters().server_timeouts == 1);
}

TEST_CASE("server INVITE: ACK confirms; Timer I absorbs ACKs; after I a new transaction") {
  Fixture f;
  Req r;
  const std::string inv = r.text();
  f.deliver(inv, kUpstream);
  ServerTransaction* t = f.server();
  const uint64_t id = t->id();
  t->respond(486, response_to(inv, 486, "srv"));
  f.run_until(600);
  CHECK(f.env.count("SIP/2.0 486 Busy Here") == 2);

  // Completed: a retransmitted INVITE gets the final again.
  f.deliver(inv, kUpstream);
  CHECK(f.env.count("SIP/2.0 486 Busy Here") == 3);

  f.deliver(ack_for(r).text(), kUpstream);
  CHECK(t->state() == S::Confirmed);
  CHECK(f.tu.events == Events{"request INVITE"});  // the ACK to a non-2xx stays here

  // G and H are stale: no more retransmissions, no timeout.
  f.run_until(4'000);
  CHECK(f.env.count("SIP/2.0 486 Busy Here") == 3);
  f.deliver(ack_for(r).text(), kUpstream);
  f.deliver(inv, kUpstream);
  CHECK(f.env.count("SIP/2.0 486 Busy Here") == 3);
  CHECK(f.tu.events == Events{"request INVITE"});

  // Timer I = T4 from the ACK.
  f.run_until(600 + 4'999);
  CHECK(f.layer->find_server(id) == t);
  f.run_until(600 + 5'000);
  CHECK(f.layer->find_server(id) == nullptr);
  CHECK(f.tu.count("server timeout") == 0);

  f.deliver(inv, kUpstream);
  CHECK(f.tu.events == Events{"request INVITE", "request INVITE"});
  CHECK(f.tu.last_server != id);
}

TEST_CASE("server INVITE: RFC 6026 Accepted") {
  Fixture f;
  Req r;
  const std::string inv = r.text();
  f.deliver(inv, kUpstream);
  ServerTransaction* t = f.server();
  const uint64_t id = t->id();
  CHECK(t->respond(200, response_to(inv, 200, "fork-a")));
  CHECK(t->state() == S::Accepted);
  const size_t sent = f.env.sent.size();

  // An INVITE retransmission is absorbed: not passed up, no 2xx resent by us.
  f.deliver(inv, kUpstream);
  CHECK(f.env.sent.size() == sent);
  CHECK(f.tu.events == Events{"request INVITE"});

  // Further 2xx (another fork) are sent; nothing else is.
  CHECK(t->respond(200, response_to(inv, 200, "fork-b")));
  CHECK_FALSE(t->respond(486, response_to(inv, 486, "fork-c")));
  CHECK_FALSE(t->respond(180, response_to(inv, 180, "fork-c")));
  CHECK(f.env.count("SIP/2.0 200 OK") == 2);
  CHECK(f.env.count("SIP/2.0 486 Busy Here") == 0);

  // An ACK matching the transaction goes up (RFC 6026 §8.7).
  f.deliver(ack_for(r, "fork-a").text(), kUpstream);
  CHECK(f.tu.events == Events{"request INVITE", "ack"});

  // Timer L = 64*T1; no 2xx retransmission on our own meanwhile.
  f.run_until(31'999);
  CHECK(f.env.count("SIP/2.0 200 OK") == 2);
  CHECK(f.layer->find_server(id) == t);
  f.run_until(32'000);
  CHECK(f.layer->find_server(id) == nullptr);
  CHECK(f.tu.terminated == std::vector<uint64_t>{id});

  // After L the ACK matches nothing: the TU forwards it statelessly.
  f.deliver(ack_for(r, "fork-a").text(), kUpstream);
  CHECK(f.tu.events.back() == "request ACK (none)");
}

TEST_CASE("server INVITE over TCP: no Timer G, H still waits for the ACK, I is zero") {
  Fixture f;
  Req r;
  r.transport = "TCP";
  const std::string inv = r.text();
  f.deliver(inv, kUpstreamTcp);
  ServerTransaction* t = f.server();
  CHECK(t->reliable());
  REQUIRE(f.env.sent.size() == 1);
  CHECK(f.env.sent[0].to.connection == kUpstreamTcp.connection);
  CHECK(f.env.sent[0].to.endpoint.port() == 5060);  // the sent-by port, should it reconnect
  t->respond(486, response_to(inv, 486, "srv"));
  f.run_until(31'999);
  CHECK(f.env.count("SIP/2.0 486 Busy Here") == 1);
  f.run_until(32'000);
  CHECK(f.tu.events == Events{"request INVITE", "server timeout"});

  Req r2 = r;
  r2.branch = "z9hG4bKup2";
  const std::string inv2 = r2.text();
  f.deliver(inv2, kUpstreamTcp);
  t = f.server();
  const uint64_t id = t->id();
  t->respond(404, response_to(inv2, 404, "srv"));
  f.deliver(ack_for(r2).text(), kUpstreamTcp);
  CHECK(t->state() == S::Confirmed);
  CHECK(f.layer->find_server(id) == t);  // I = 0 fires on the next on_timer
  f.tick();
  CHECK(f.layer->find_server(id) == nullptr);
}

TEST_CASE("server non-INVITE, UDP: Trying, Proceeding, Completed and Timer J") {
  Fixture f;
  Req r;
  r.method = "OPTIONS";
  const std::string req = r.text();
  f.deliver(req, kUpstream);
  ServerTransaction* t = f.server();
  const uint64_t id = t->id();
  CHECK(t->state() == S::Trying);
  CHECK_FALSE(t->is_invite());
  CHECK(f.env.sent.empty());  // no 100 for non-INVITE

  f.deliver(req, kUpstream);  // Trying: discarded
  CHECK(f.env.sent.empty());
  CHECK(f.tu.events == Events{"request OPTIONS"});

  CHECK(t->respond(100, response_to(req, 100)));
  CHECK(t->state() == S::Proceeding);
  f.deliver(req, kUpstream);  // Proceeding: the provisional again
  CHECK(f.env.count("SIP/2.0 100 Trying") == 2);

  f.run_until(1'000);
  CHECK(t->respond(200, response_to(req, 200, "srv")));
  CHECK(t->state() == S::Completed);
  CHECK_FALSE(t->respond(500, response_to(req, 500, "srv")));
  f.deliver(req, kUpstream);  // Completed: the final again
  CHECK(f.env.count("SIP/2.0 200 OK") == 2);
  CHECK(f.env.count("SIP/2.0 500 Server Internal Error") == 0);
  CHECK(f.tu.events == Events{"request OPTIONS"});

  // No retransmission on our own; Timer J = 64*T1 from the final.
  f.run_until(1'000 + 31'999);
  CHECK(f.env.count("SIP/2.0 200 OK") == 2);
  CHECK(f.layer->find_server(id) == t);
  f.run_until(1'000 + 32'000);
  CHECK(f.layer->find_server(id) == nullptr);

  f.deliver(req, kUpstream);
  CHECK(f.tu.events == Events{"request OPTIONS", "request OPTIONS"});
}

TEST_CASE("server non-INVITE over TCP: J is zero; a response from inside on_request") {
  Fixture f;
  Req r;
  r.method = "OPTIONS";
  r.transport = "TCP";
  const std::string req = r.text();
  f.tu.request_hook = [&](ServerTransaction* txn, const core::Message&) {
    REQUIRE(txn != nullptr);
    CHECK(txn->respond(200, response_to(req, 200, "srv")));
  };
  f.deliver(req, kUpstreamTcp);
  ServerTransaction* t = f.server();
  REQUIRE(t != nullptr);
  CHECK(t->state() == S::Completed);
  CHECK(f.env.count("SIP/2.0 200 OK") == 1);
  f.tick();
  CHECK(f.layer->find_server(f.tu.last_server) == nullptr);
  CHECK(f.tu.terminated.size() == 1);
}

TEST_CASE("server transport errors (§17.2.4)") {
  Fixture f;
  const std::string inv = Req{}.text();
  SUBCASE("the 100 cannot be sent: reported from the next on_timer") {
    f.env.fail = true;
    f.deliver(inv, kUpstream);
    const uint64_t id = f.tu.last_server;
    CHECK(f.tu.events == Events{"request INVITE"});
    f.tick();
    CHECK(f.tu.events == Events{"request INVITE", "server transport error"});
    CHECK(f.layer->find_server(id) == nullptr);
    CHECK(f.tu.terminated == std::vector<uint64_t>{id});
  }
  SUBCASE("the final cannot be sent: respond() does not call back") {
    f.deliver(inv, kUpstream);
    ServerTransaction* t = f.server();
    const uint64_t id = t->id();
    f.env.fail = true;
    CHECK(t->respond(486, response_to(inv, 486, "srv")));
    CHECK(f.tu.events == Events{"request INVITE"});
    f.tick();
    CHECK(f.tu.events == Events{"request INVITE", "server transport error"});
    CHECK(f.layer->find_server(id) == nullptr);
  }
  SUBCASE("an asynchronous failure in Accepted ends it; in Confirmed it is ignored") {
    f.deliver(inv, kUpstream);
    ServerTransaction* t = f.server();
    t->respond(200, response_to(inv, 200, "srv"));
    f.layer->on_transport_error(t->id());
    CHECK(f.tu.events == Events{"request INVITE", "server transport error"});
    CHECK(f.layer->size() == 0);

    Req r2;
    r2.branch = "z9hG4bKup2";
    f.deliver(r2.text(), kUpstream);
    t = f.server();
    t->respond(486, response_to(r2.text(), 486, "srv"));
    f.deliver(ack_for(r2).text(), kUpstream);
    CHECK(t->state() == S::Confirmed);
    f.layer->on_transport_error(t->id());
    CHECK(t->state() == S::Confirmed);
    CHECK(f.tu.count("server transport error") == 1);
  }
}

TEST_CASE("server: responses go to the Via's sent-by port unless rport (§18.2.2, RFC 3581)") {
  Fixture f;
  Req r;
  r.sent_by = "192.0.2.10:5070";
  f.deliver(r.text(), make_peer("192.0.2.10", 40000));
  REQUIRE(f.env.sent.size() == 1);
  CHECK(f.env.sent[0].to.endpoint.to_string() == "192.0.2.10:5070");
  CHECK(f.server()->peer().endpoint.to_string() == "192.0.2.10:5070");

  Req nat = r;
  nat.branch = "z9hG4bKup2";
  nat.via_params = ";rport";
  f.deliver(nat.text(), make_peer("203.0.113.5", 40000));
  REQUIRE(f.env.sent.size() == 2);
  CHECK(f.env.sent[1].to.endpoint.to_string() == "203.0.113.5:40000");
}

TEST_CASE("server: respond rejects a status outside 100-699") {
  Fixture f;
  const std::string inv = Req{}.text();
  f.deliver(inv, kUpstream);
  CHECK_FALSE(f.server()->respond(99, "junk"));
  CHECK_FALSE(f.server()->respond(700, "junk"));
  CHECK(f.server()->state() == S::Proceeding);
  CHECK(f.env.sent.size() == 1);
}
