// proxy/transaction_layer.cpp: matching (§17.1.3, §17.2.3), CANCEL (§9.2), strays, the bound
// on transactions, stale timers, the end of a transaction's life.
#include <doctest/doctest.h>

#include "transaction_fixture.h"

using namespace sb;
using namespace sb::proxy;
using namespace sb::proxy::test;
using Events = std::vector<std::string>;
using S = TransactionState;

TEST_CASE("layer: RFC 2543 requests match by Call-ID, CSeq, From tag and top Via") {
  Fixture f;
  Req r;
  r.branch = "";
  const std::string inv = r.text();
  f.deliver(inv, kUpstream);
  ServerTransaction* t = f.server();
  REQUIRE(t != nullptr);
  const uint64_t id = t->id();

  f.deliver(inv, kUpstream);  // retransmission: absorbed, the 100 again
  CHECK(f.tu.events == Events{"request INVITE"});
  CHECK(f.env.count("SIP/2.0 100 Trying") == 2);

  t->respond(486, response_to(inv, 486, "srv"));
  Req ack = r;
  ack.method = "ACK";
  ack.to_tag = "srv";  // the To tag differs from the INVITE's: not part of the key
  f.deliver(ack.text(), kUpstream);
  CHECK(t->state() == S::Confirmed);
  CHECK(f.tu.events == Events{"request INVITE"});

  Req other_from = r;
  other_from.from_tag = "ft2";
  f.deliver(other_from.text(), kUpstream);
  Req other_cseq = r;
  other_cseq.cseq = 2;
  f.deliver(other_cseq.text(), kUpstream);
  Req other_via = r;
  other_via.sent_by = "192.0.2.10:5062";
  f.deliver(other_via.text(), kUpstream);
  CHECK(f.tu.count("request INVITE") == 4);
  CHECK(f.layer->find_server(id) == t);
  CHECK(f.layer->size() == 4);
}

TEST_CASE("layer: RFC 3261 requests match by branch, sent-by and method") {
  Fixture f;
  Req r;
  f.deliver(r.text(), kUpstream);
  const uint64_t id = f.tu.last_server;

  Req same_upper = r;
  same_upper.branch = "z9hG4bKUP1";
  f.deliver(same_upper.text(), kUpstream);
  CHECK(f.tu.events == Events{"request INVITE"});  // the same transaction

  Req other_sent_by = r;
  other_sent_by.sent_by = "192.0.2.11:5060";
  f.deliver(other_sent_by.text(), kUpstream);
  CHECK(f.tu.events == Events{"request INVITE", "request INVITE"});
  CHECK(f.tu.last_server != id);

  // Same branch, other method: its own transaction (a CANCEL is one too, §9.2).
  Req cancel = r;
  cancel.method = "CANCEL";
  f.deliver(cancel.text(), kUpstream);
  CHECK(f.tu.events.back() == "request CANCEL");
  CHECK(f.server()->method() == "CANCEL");
  CHECK(f.layer->size() == 3);
}

TEST_CASE("layer: find_server_invite matches a CANCEL to its INVITE (§9.2)") {
  Fixture f;
  Req r;
  f.deliver(r.text(), kUpstream);
  ServerTransaction* invite = f.server();

  Req c = r;
  c.method = "CANCEL";
  Msg cancel(c.text());
  CHECK(f.layer->find_server_invite(cancel.m) == invite);

  Req unknown = c;
  unknown.branch = "z9hG4bKnothere";
  Msg no(unknown.text());
  CHECK(f.layer->find_server_invite(no.m) == nullptr);

  Req other_host = c;
  other_host.sent_by = "192.0.2.66:5060";
  Msg oh(other_host.text());
  CHECK(f.layer->find_server_invite(oh.m) == nullptr);

  // RFC 2543 INVITE and CANCEL.
  Req old = r;
  old.branch = "";
  old.call_id = "old@192.0.2.10";
  f.deliver(old.text(), kUpstream);
  ServerTransaction* old_invite = f.server();
  Req old_cancel = old;
  old_cancel.method = "CANCEL";
  Msg oc(old_cancel.text());
  CHECK(f.layer->find_server_invite(oc.m) == old_invite);

  // Once the INVITE transaction ended, nothing matches.
  invite->respond(200, response_to(r.text(), 200, "srv"));
  f.run_until(32'000);
  CHECK(f.layer->find_server_invite(cancel.m) == nullptr);
}

TEST_CASE("layer: strays go to the TU") {
  Fixture f;
  Req a;
  a.method = "ACK";
  a.to_tag = "x";
  a.branch = "z9hG4bKnew";  // an ACK to a 2xx: a new branch, end to end
  f.deliver(a.text(), kUpstream);
  CHECK(f.tu.events == Events{"request ACK (none)"});
  CHECK(f.layer->size() == 0);

  f.deliver(response_to(downstream().text(), 200), kDownstream);
  CHECK(f.tu.events == Events{"request ACK (none)", "stray 200"});
  CHECK(f.layer->counters().stray_acks == 1);
  CHECK(f.layer->counters().stray_responses == 1);
}

TEST_CASE("layer: beyond max_transactions new requests go to on_overload") {
  LayerOptions opts;
  opts.max_transactions = 2;
  Fixture f({}, opts);
  Req a, b, c;
  b.branch = "z9hG4bKb";
  c.branch = "z9hG4bKc";
  c.method = "OPTIONS";
  f.deliver(a.text(), kUpstream);
  f.deliver(b.text(), kUpstream);
  f.deliver(c.text(), kUpstream);
  CHECK(f.tu.events == Events{"request INVITE", "request INVITE", "overload OPTIONS"});
  CHECK(f.layer->size() == 2);
  CHECK(f.layer->counters().overloaded == 1);

  // Retransmissions and stray ACKs still work at the bound.
  f.deliver(a.text(), kUpstream);
  Req ack;
  ack.method = "ACK";
  ack.branch = "z9hG4bKother";
  f.deliver(ack.text(), kUpstream);
  CHECK(f.tu.events.back() == "request ACK (none)");
  CHECK(f.tu.count("overload OPTIONS") == 1);
  CHECK(f.layer->size() == 2);

  // Once one ends there is room again.
  ServerTransaction* tb = f.server();  // b, the last one created
  tb->respond(200, response_to(b.text(), 200, "srv"));
  f.run_until(32'000);
  CHECK(f.layer->size() == 1);
  f.deliver(c.text(), kUpstream);
  CHECK(f.tu.events.back() == "request OPTIONS");
}

TEST_CASE("layer: a spiral (our own request back to us) is a new server transaction") {
  Fixture f;
  Req d = downstream();
  const std::string out = d.text();
  ClientTransaction& ct = f.start(out, kDownstream);
  // The request arrives at us again with our Via on top.
  f.deliver(out, make_peer("198.51.100.1", 5060));
  CHECK(f.tu.events == Events{"request INVITE"});
  CHECK(f.layer->size() == 2);
  // Its 100 Trying goes back to us and is a response for the client transaction.
  REQUIRE(f.env.sent.back().line() == "SIP/2.0 100 Trying");
  f.deliver(f.env.sent.back().bytes, kDownstream);
  CHECK(f.tu.events == Events{"request INVITE", "response 100"});
  CHECK(ct.state() == S::Proceeding);
}

TEST_CASE("layer: every transaction ends with on_terminated; gauges return to zero") {
  Fixture f;
  Req inv;
  Req opt;
  opt.method = "OPTIONS";
  opt.branch = "z9hG4bKo";
  f.deliver(inv.text(), kUpstream);
  ServerTransaction* si = f.server();
  f.deliver(opt.text(), kUpstream);
  ServerTransaction* so = f.server();
  f.start(downstream().text(), kDownstream);
  f.start(downstream("OPTIONS", "z9hG4bKsb0.2").text(), kDownstream);
  const auto& c = f.layer->counters();
  CHECK(c.active_server_invite == 1);
  CHECK(c.active_server_non_invite == 1);
  CHECK(c.active_client_invite == 1);
  CHECK(c.active_client_non_invite == 1);
  CHECK(f.layer->size() == 4);
  si->respond(500, response_to(inv.text(), 500, "srv"));
  so->respond(200, response_to(opt.text(), 200, "srv"));
  f.run_until(40'000);
  CHECK(f.layer->size() == 0);
  CHECK(f.tu.terminated.size() == 4);
  CHECK(c.active_server_invite == 0);
  CHECK(c.active_server_non_invite == 0);
  CHECK(c.active_client_invite == 0);
  CHECK(c.active_client_non_invite == 0);
  // Nothing is cancelled: Timer A armed at 31.5 s for 63.5 s is still queued, stale.
  CHECK(f.layer->pending_timers() == 1);
  const uint64_t stale = c.stale_timers;
  f.run_until(63'500);
  CHECK(c.stale_timers == stale + 1);
  CHECK(f.layer->next_deadline() == TransactionLayer::kNoDeadline);
  CHECK(f.layer->pending_timers() == 0);
}

TEST_CASE("layer: destroying the layer with live transactions calls no one") {
  Fixture f;
  f.deliver(Req{}.text(), kUpstream);
  f.start(downstream().text(), kDownstream);
  const size_t events = f.tu.events.size();
  f.layer.reset();
  CHECK(f.tu.events.size() == events);
  CHECK(f.tu.terminated.empty());
}

TEST_CASE("layer: one on_timer fires every due timer, however many batches they fill") {
  Fixture f;
  for (int i = 0; i < 100; ++i)
    f.start(downstream("OPTIONS", "z9hG4bKsb0.n" + std::to_string(i)).text(), kDownstream);
  CHECK(f.layer->size() == 100);
  // Past Timer F (64·T1) in one step: each transaction's Timer E and then its Timer F are due.
  f.env.clock_.advance(40'000);
  f.tick();
  CHECK(f.tu.count("client timeout") == 100);
  CHECK(f.layer->size() == 0);
  CHECK(f.layer->counters().active_client_non_invite == 0);
}
