// proxy/proxy_core.cpp: the stateful proxy of RFC 3261 §16 on a FakeClock and an in-memory
// transport: validation, forwarding, response selection, failover, forking, CANCEL, the
// stateless paths, Timer C, the policy's decisions and the life of a response context.
#include <doctest/doctest.h>

#include "location/redis_store.h"
#include "proxy/policy_services.h"
#include "proxy_fixture.h"

using namespace sb;
using namespace sb::proxy;
using namespace sb::proxy::test;
using H = core::HeaderId;
using Strings = std::vector<std::string>;
using Codes = std::vector<int>;

namespace {

Decision relay_one(std::string uri, bool rr = false) { return relay_to({std::move(uri)}, rr); }

core::Via via_of(const std::string& value) {
  auto v = core::parse_via(value);
  REQUIRE(v.ok());
  return v.value();
}

// The top Via branch of a message.
std::string top_branch(const std::string& text) {
  Msg m(text);
  return std::string(m.m.top_via().branch);
}

std::string cseq_method(const std::string& text) {
  Msg m(text);
  return std::string(m.m.cseq().method_text);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// §16.3 request validation

TEST_CASE("proxy core: §16.3 a Request-URI scheme we cannot route gets 416") {
  ProxyFixture f;
  ReqSpec r;
  r.method = "OPTIONS";
  r.ruri = "http://example.com/bob";
  f.deliver(r.text(), kCaller);
  CHECK(f.finals_to(kCaller) == Codes{416});
  CHECK(f.policy.seen.empty());
  CHECK(f.core->counters().local_replies == 1);
  CHECK(f.core->contexts() == 0);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: §16.3 Max-Forwards 0 gets 483, 1 is forwarded with 0") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  ReqSpec r;
  r.max_forwards = 0;
  f.deliver(r.text(), kCaller);
  CHECK(f.lines_to(kCaller) == Strings{"SIP/2.0 100 Trying", "SIP/2.0 483 Too Many Hops"});
  CHECK(f.policy.seen.empty());
  CHECK(f.requests_to(kBob, "INVITE").empty());

  ReqSpec one;
  one.max_forwards = 1;
  one.branch = "z9hG4bKcaller2";
  one.call_id = "call-2";
  f.deliver(one.text(), kCaller);
  Msg fwd(f.last_request(kBob, "INVITE"));
  CHECK(fwd.m.max_forwards() == 0);
}

TEST_CASE("proxy core: §16.3 Proxy-Require we do not support gets 420 with Unsupported") {
  ProxyFixture f;
  ReqSpec r;
  r.extra = {"Proxy-Require: foo, bar"};
  f.deliver(r.text(), kCaller);
  auto resp = f.responses_to(kCaller, 420);
  REQUIRE(resp.size() == 1);
  Msg m(resp[0]);
  CHECK(values(m.m, H::Unsupported) == Strings{"foo", "bar"});
  CHECK(f.policy.seen.empty());
}

TEST_CASE("proxy core: §16.3 step 4 a spiral is relayed, a loop gets 482") {
  ProxyFixture f;
  // Every pass is relayed to ourselves at one URI: the second pass has a new Request-URI
  // (a spiral), the third one the same as the second (a loop).
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@127.0.0.1:5060"); };
  ReqSpec r;
  f.deliver(r.text(), kCaller);
  std::string pass1 = f.last_request(kSelfUdp, "INVITE");
  f.deliver(pass1, kSelfUdp);
  CHECK(f.policy.seen == Strings{"sip:bob@example.com", "sip:bob@127.0.0.1:5060"});
  CHECK(f.core->counters().loops == 0);
  auto out = f.requests_to(kSelfUdp, "INVITE");
  REQUIRE(out.size() == 2);
  std::string pass2 = out[1];
  CHECK(values(pass2, H::Via).size() == 3);

  size_t m0 = f.mark();
  f.deliver(pass2, kSelfUdp);
  CHECK(f.core->counters().loops == 1);
  CHECK(f.policy.seen.size() == 2);
  auto loop = f.responses_to(kSelfUdp, 482, m0);
  REQUIRE(loop.size() == 1);
  CHECK(top_branch(loop[0]) == top_branch(pass2));
  CHECK(f.requests_to(kSelfUdp, "INVITE", m0).empty());

  // The same loop through another proxy: our Via is no longer the top one, and is found.
  std::string via_other = pass2;
  via_other.insert(via_other.find("\r\n") + 2,
                   "Via: SIP/2.0/UDP 192.0.2.20:5070;branch=z9hG4bKother.proxy\r\n");
  size_t m1 = f.mark();
  f.deliver(via_other, kSelfUdp);
  CHECK(f.core->counters().loops == 2);
  CHECK(f.responses_to(make_peer("127.0.0.1", 5070), 482, m1).size() == 1);  // received, Via port
  CHECK(f.requests_to(kSelfUdp, "INVITE", m1).empty());
}

TEST_CASE("proxy core: OPTIONS to the proxy itself is answered 200 with Allow") {
  ProxyFixture f;
  int n = 0;
  for (std::string uri : {"sip:127.0.0.1:5060", "sip:example.com", "sip:127.0.0.1;transport=tcp"}) {
    CAPTURE(uri);
    ReqSpec r;
    r.method = "OPTIONS";
    r.ruri = uri;
    r.branch = "z9hG4bKopt" + std::to_string(++n);
    size_t m0 = f.mark();
    f.deliver(r.text(), kCaller);
    auto ok = f.responses_to(kCaller, 200, m0);
    REQUIRE(ok.size() == 1);
    Msg m(ok[0]);
    auto allow = values(m.m, H::Allow);
    CHECK(std::find(allow.begin(), allow.end(), "INVITE") != allow.end());
    CHECK(std::find(allow.begin(), allow.end(), "OPTIONS") != allow.end());
    CHECK(!m.m.to().tag().empty());
  }
  CHECK(f.policy.seen.empty());
  // With a user part it is for someone: the policy decides.
  ReqSpec user;
  user.method = "OPTIONS";
  user.ruri = "sip:bob@example.com";
  user.branch = "z9hG4bKoptbob";
  f.deliver(user.text(), kCaller);
  CHECK(f.policy.seen == Strings{"sip:bob@example.com"});
}

// ---------------------------------------------------------------------------------------
// §16.6 forwarding

TEST_CASE("proxy core: §16.6 the forwarded request: Via, Max-Forwards, R-URI, RR, Route, edits") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest& req) {
    req.edits().set_headers.push_back({"Subject", "rewritten"});
    req.edits().remove_headers.push_back("X-Secret");
    req.edits().add_headers.push_back("X-Added: yes");
    return relay_one("sip:bob@192.0.2.20", true);
  };
  ReqSpec r;
  r.sent_by = "10.0.0.5:5060";  // behind a NAT
  r.via_params = ";rport";
  r.routes = {"<sip:127.0.0.1:5060;lr>"};
  r.extra = {"Subject: original", "X-Secret: s3cr3t", "Subject: second"};
  r.body = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\n";
  const core::Peer nat = make_peer("203.0.113.7", 40000);
  f.deliver(r.text(), nat);
  // RFC 3581: the 100 goes to the source address and port.
  CHECK(f.lines_to(nat) == Strings{"SIP/2.0 100 Trying"});

  auto sent = f.requests_to(kBob, "INVITE");
  REQUIRE(sent.size() == 1);
  Msg fwd(sent[0]);  // the forwarded request parses
  const core::Message& m = fwd.m;
  CHECK(m.ruri_text() == "sip:bob@192.0.2.20");
  auto vias = values(m, H::Via);
  REQUIRE(vias.size() == 2);
  core::Via top = via_of(vias[0]);
  CHECK(top.transport == "UDP");
  CHECK(top.sent_by == "127.0.0.1:5060");
  CHECK(top.rfc3261_branch());
  CHECK(core::branch_worker(top.branch) == 3u);
  // RFC 3581 §4: rport filled in with the source port, received with the source address.
  CHECK(vias[1] == "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKcaller1;rport=40000;received=203.0.113.7");
  CHECK(m.max_forwards() == 69);
  CHECK(values(m, H::RecordRoute) == Strings{"<sip:127.0.0.1:5060;lr>"});
  CHECK(values(m, H::Route).empty());  // §16.4: the Route naming us is consumed
  CHECK(values_named(m, "Subject") == Strings{"rewritten"});
  CHECK(values_named(m, "X-Secret").empty());
  CHECK(values_named(m, "X-Added") == Strings{"yes"});
  CHECK(m.body() == r.body);
  CHECK(m.content_length() == static_cast<int64_t>(r.body.size()));
  CHECK(f.core->counters().relayed == 1);
  CHECK(f.core->counters().branches == 1);
  CHECK(f.core->contexts() == 1);

  // The 200 comes back through us with the Record-Route (§12.1.1) and without our Via.
  f.deliver(reply_to(sent[0], 200), kBob);
  auto ok = f.responses_to(nat, 200);
  REQUIRE(ok.size() == 1);
  Msg okm(ok[0]);
  CHECK(values(okm.m, H::Via) == Strings{vias[1]});
  CHECK(values(okm.m, H::RecordRoute) == Strings{"<sip:127.0.0.1:5060;lr>"});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: §16.6 a request without Max-Forwards leaves with 70") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  ReqSpec r;
  r.max_forwards = -1;
  f.deliver(r.text(), kCaller);
  Msg fwd(f.last_request(kBob, "INVITE"));
  CHECK(fwd.m.max_forwards() == 70);
  // RFC 3581 §4: with rport the received param is added even when it equals the sent-by.
  ReqSpec rp;
  rp.via_params = ";rport";
  rp.branch = "z9hG4bKrport";
  rp.call_id = "rport-call";
  f.deliver(rp.text(), kCaller);
  Msg fwd2(f.last_request(kBob, "INVITE"));
  CHECK(values(fwd2.m, H::Via)[1] ==
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKrport;rport=5060;received=192.0.2.10");
}

TEST_CASE("proxy core: §16.6 step 4 double Record-Route when the branch leaves over TCP") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20;transport=tcp", true); };
  ReqSpec r;
  f.deliver(r.text(), kCaller);
  const core::Peer bob_tcp = make_peer("192.0.2.20", 5060, core::Protocol::Tcp);
  Msg fwd(f.last_request(bob_tcp, "INVITE"));
  CHECK(via_of(values(fwd.m, H::Via)[0]).sent_by == "127.0.0.1:5060");
  CHECK(via_of(values(fwd.m, H::Via)[0]).transport == "TCP");
  // The callee's side (top) is the TCP interface, the caller's the UDP one.
  CHECK(values(fwd.m, H::RecordRoute) ==
        Strings{"<sip:127.0.0.1:5060;transport=tcp;lr>", "<sip:127.0.0.1:5060;lr>"});

  // An in-dialog request from the caller carries both (reversed): both are consumed and it
  // leaves over TCP to the remote target.
  ReqSpec bye;
  bye.method = "BYE";
  bye.ruri = "sip:bob@192.0.2.20;transport=tcp";
  bye.branch = "z9hG4bKbye1";
  bye.to_tag = "callee";
  bye.cseq = 2;
  bye.routes = {"<sip:127.0.0.1:5060;lr>", "<sip:127.0.0.1:5060;transport=tcp;lr>"};
  f.policy.decide = [](PolicyRequest& req) {
    CHECK(req.in_dialog());
    Decision d;
    d.kind = Decision::Kind::Relay;  // follow Route / R-URI
    return d;
  };
  f.deliver(bye.text(), kCaller);
  Msg b(f.last_request(bob_tcp, "BYE"));
  CHECK(values(b.m, H::Route).empty());
  CHECK(b.m.ruri_text() == "sip:bob@192.0.2.20;transport=tcp");
  CHECK(values(b.m, H::RecordRoute).empty());
}

TEST_CASE("proxy core: §16.6 a target's Path goes on top of Route and is the next hop") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    Decision d = relay_one("sip:bob@192.0.2.40:5080");
    d.targets[0].route = {"<sip:192.0.2.30:5070;lr>"};
    return d;
  };
  ReqSpec r;
  r.routes = {"<sip:127.0.0.1;lr>", "<sip:192.0.2.99;lr>"};
  f.deliver(r.text(), kCaller);
  CHECK(f.requests_to(make_peer("192.0.2.40", 5080), "INVITE").empty());
  CHECK(f.requests_to(make_peer("192.0.2.99", 5060), "INVITE").empty());
  Msg fwd(f.last_request(kEdge, "INVITE"));
  CHECK(fwd.m.ruri_text() == "sip:bob@192.0.2.40:5080");
  CHECK(values(fwd.m, H::Route) == Strings{"<sip:192.0.2.30:5070;lr>", "<sip:192.0.2.99;lr>"});
}

TEST_CASE("proxy core: a request without a Path follows its remaining Route (loose routing)") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.40"); };
  ReqSpec r;
  r.routes = {"<sip:127.0.0.1;lr>, <sip:192.0.2.99:5090;lr>"};
  f.deliver(r.text(), kCaller);
  Msg fwd(f.last_request(make_peer("192.0.2.99", 5090), "INVITE"));
  CHECK(values(fwd.m, H::Route) == Strings{"<sip:192.0.2.99:5090;lr>"});
  CHECK(fwd.m.ruri_text() == "sip:bob@192.0.2.40");
}

TEST_CASE("proxy core: a target with a fixed destination goes there (NAT binding)") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    Decision d = relay_one("sip:bob@10.1.1.1:5060");
    d.targets[0].destination = kDave;
    return d;
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  Msg fwd(f.last_request(kDave, "INVITE"));
  CHECK(fwd.m.ruri_text() == "sip:bob@10.1.1.1:5060");
  CHECK(f.resolver.asked.empty());
}

// ---------------------------------------------------------------------------------------
// §16.7 responses

TEST_CASE("proxy core: §16.7 100 is absorbed, 180 and 200 go upstream without our Via") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  ReqSpec r;
  f.deliver(r.text(), kCaller);
  std::string fwd = f.last_request(kBob, "INVITE");
  const size_t m0 = f.mark();
  f.deliver(reply_to(fwd, 100), kBob);
  CHECK(f.lines_to(kCaller, m0).empty());
  f.deliver(reply_to(fwd, 180), kBob);
  CHECK(f.lines_to(kCaller, m0) == Strings{"SIP/2.0 180 Ringing"});
  const std::string caller_via = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKcaller1";
  CHECK(values(f.responses_to(kCaller, 180)[0], H::Via) == Strings{caller_via});
  f.deliver(reply_to(fwd, 200), kBob);
  auto ok = f.responses_to(kCaller, 200);
  REQUIRE(ok.size() == 1);
  Msg okm(ok[0]);
  CHECK(values(okm.m, H::Via) == Strings{caller_via});
  CHECK(okm.m.to().tag() == "callee");
  // A retransmitted 200 from the UAS is forwarded too (the UAS's retransmission, §13.3.1.4).
  f.deliver(reply_to(fwd, 200), kBob);
  CHECK(f.responses_to(kCaller, 200).size() == 2);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: §16.7 step 10 every 2xx of a parallel fork is forwarded, the rest CANCELled") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    return relay_to({"sip:bob@192.0.2.20", "sip:carol@192.0.2.21"});
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  std::string to_bob = f.last_request(kBob, "INVITE");
  std::string to_carol = f.last_request(kCarol, "INVITE");
  CHECK(top_branch(to_bob) != top_branch(to_carol));
  f.deliver(reply_to(to_bob, 180, "b"), kBob);
  f.deliver(reply_to(to_carol, 180, "c"), kCarol);
  CHECK(f.responses_to(kCaller, 180).size() == 2);
  f.deliver(reply_to(to_bob, 200, "b"), kBob);
  CHECK(f.requests_to(kBob, "CANCEL").empty());
  auto cancels = f.requests_to(kCarol, "CANCEL");
  REQUIRE(cancels.size() == 1);
  // §9.1: the CANCEL has the INVITE's branch and Request-URI.
  CHECK(top_branch(cancels[0]) == top_branch(to_carol));
  CHECK(Msg(cancels[0]).m.ruri_text() == "sip:carol@192.0.2.21");
  CHECK(f.core->counters().cancels_sent == 1);
  // Carol answered 200 before our CANCEL reached her: forwarded too.
  f.deliver(reply_to(cancels[0], 200, "c"), kCarol);  // 200 to the CANCEL: absorbed
  f.deliver(reply_to(to_carol, 200, "c"), kCarol);
  auto oks = f.responses_to(kCaller, 200);
  REQUIRE(oks.size() == 2);
  CHECK(Msg(oks[0]).m.to().tag() == "b");
  CHECK(Msg(oks[1]).m.to().tag() == "c");
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: §9.1 a branch still Calling is CANCELled once its provisional arrives") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    return relay_to({"sip:bob@192.0.2.20", "sip:carol@192.0.2.21"});
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  std::string to_bob = f.last_request(kBob, "INVITE");
  std::string to_carol = f.last_request(kCarol, "INVITE");
  f.deliver(reply_to(to_bob, 200, "b"), kBob);
  CHECK(f.requests_to(kCarol, "CANCEL").empty());  // Carol sent nothing yet
  f.run_for(1000);
  CHECK(f.requests_to(kCarol, "CANCEL").empty());
  const size_t m0 = f.mark();
  f.deliver(reply_to(to_carol, 180, "c"), kCarol);
  CHECK(f.requests_to(kCarol, "CANCEL").size() == 1);
  CHECK(f.lines_to(kCaller, m0).empty());  // her 180 is not forwarded after the 200
  f.deliver(reply_to(to_carol, 487, "c"), kCarol);
  CHECK(f.requests_to(kCarol, "ACK").size() == 1);  // the client transaction ACKs it
  CHECK(f.finals_to(kCaller) == Codes{200});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: §16.7 step 6 a 6xx wins over a 4xx and stops new branches") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    return relay_to({"sip:bob@192.0.2.20", "sip:carol@192.0.2.21"});
  };
  f.policy.fail = [](PolicyRequest&, const FailureInfo&) { return relay_one("sip:vm@192.0.2.22"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  std::string to_bob = f.last_request(kBob, "INVITE");
  std::string to_carol = f.last_request(kCarol, "INVITE");
  f.deliver(reply_to(to_carol, 603, "c"), kCarol);
  CHECK(f.finals_to(kCaller).empty());  // Bob is still pending
  f.deliver(reply_to(to_bob, 404, "b"), kBob);
  auto dec = f.responses_to(kCaller, 603);
  REQUIRE(dec.size() == 1);
  CHECK(f.finals_to(kCaller) == Codes{603});
  CHECK(values(dec[0], H::Via).size() == 1);
  CHECK(f.policy.failures.empty());  // §16.7 step 5: no new branches after a 6xx
  CHECK(f.requests_to(kDave, "INVITE").empty());
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: §16.7 step 6 the lowest class wins") {
  struct Case {
    int a, b, want;
  };
  for (Case c : {Case{500, 486, 486}, Case{486, 500, 486}, Case{486, 302, 302}, Case{404, 486, 404},
                 Case{480, 404, 480}, Case{503, 408, 408}}) {
    CAPTURE(c.a);
    CAPTURE(c.b);
    ProxyFixture f;
    f.policy.decide = [](PolicyRequest&) {
      return relay_to({"sip:bob@192.0.2.20", "sip:carol@192.0.2.21"});
    };
    f.deliver(ReqSpec{}.text(), kCaller);
    f.deliver(reply_to(f.last_request(kBob, "INVITE"), c.a, "b",
                       c.a == 302 ? Strings{"Contact: <sip:x@192.0.2.77>"} : Strings{}),
              kBob);
    f.deliver(reply_to(f.last_request(kCarol, "INVITE"), c.b, "c",
                       c.b == 302 ? Strings{"Contact: <sip:x@192.0.2.77>"} : Strings{}),
              kCarol);
    CHECK(f.finals_to(kCaller) == Codes{c.want});
    REQUIRE(f.policy.failures.size() == 1);
    CHECK(f.policy.failures[0].status == c.want);
    CHECK(f.policy.failures[0].attempted == Strings{"sip:bob@192.0.2.20", "sip:carol@192.0.2.21"});
    if (c.want == 302) {
      Msg m(f.responses_to(kCaller, 302)[0]);
      CHECK(values(m.m, H::Contact) == Strings{"<sip:x@192.0.2.77>"});
    }
    f.settle();
    CHECK(f.idle());
  }
}

TEST_CASE("proxy core: §16.7 step 7 401 and 407 challenges are aggregated") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    return relay_to({"sip:bob@192.0.2.20", "sip:carol@192.0.2.21", "sip:dave@192.0.2.22"});
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 401, "b",
                     {"WWW-Authenticate: Digest realm=\"bob.example\", nonce=\"1\""}),
            kBob);
  f.deliver(reply_to(f.last_request(kCarol, "INVITE"), 407, "c",
                     {"Proxy-Authenticate: Digest realm=\"carol.example\", nonce=\"2\""}),
            kCarol);
  f.deliver(reply_to(f.last_request(kDave, "INVITE"), 404, "d"), kDave);
  auto finals = f.finals_to(kCaller);
  REQUIRE(finals.size() == 1);
  CHECK((finals[0] == 401 || finals[0] == 407));
  Msg m(f.responses_to(kCaller, finals[0])[0]);
  CHECK(lines(m.m, H::WWWAuthenticate) == Strings{"Digest realm=\"bob.example\", nonce=\"1\""});
  CHECK(lines(m.m, H::ProxyAuthenticate) == Strings{"Digest realm=\"carol.example\", nonce=\"2\""});
  CHECK(values(m.m, H::Via).size() == 1);
}

TEST_CASE("proxy core: §16.7 step 6 a 503 from the only branch reaches the caller as 500") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 503), kBob);
  CHECK(f.finals_to(kCaller) == Codes{500});
  CHECK(f.requests_to(kBob, "ACK").size() == 1);
  CHECK(f.policy.failures.size() == 1);
  CHECK(f.policy.failures[0].status == 503);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: Timer B / F without failover: 408 to the caller") {
  for (std::string method : {"INVITE", "MESSAGE"}) {
    CAPTURE(method);
    ProxyFixture f;
    f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
    ReqSpec r;
    r.method = method;
    f.deliver(r.text(), kCaller);
    f.run_until(31'999);
    CHECK(f.finals_to(kCaller).empty());
    f.run_until(32'000);
    CHECK(f.finals_to(kCaller) == Codes{408});
    REQUIRE(f.policy.failures.size() == 1);
    CHECK(f.policy.failures[0].status == 408);
    CHECK(f.core->counters().failovers == 0);
    f.settle();
    CHECK(f.idle());
  }
}

// ---------------------------------------------------------------------------------------
// Failover (RFC 3263 server lists)

TEST_CASE("proxy core: failover: a 503 moves the branch to the next server with a new branch id") {
  ProxyFixture f;
  f.resolver.answers["pool.example.net"] = {kBob, kCarol};
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:svc@pool.example.net"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  std::string first = f.last_request(kBob, "INVITE");
  CHECK(f.requests_to(kCarol, "INVITE").empty());
  f.deliver(reply_to(first, 503, "b"), kBob);
  CHECK(f.requests_to(kBob, "ACK").size() == 1);
  std::string second = f.last_request(kCarol, "INVITE");
  CHECK(top_branch(second) != top_branch(first));
  CHECK(core::branch_worker(top_branch(second)) == 3u);
  CHECK(Msg(second).m.ruri_text() == "sip:svc@pool.example.net");
  CHECK(f.core->counters().failovers == 1);
  CHECK(f.finals_to(kCaller).empty());
  f.deliver(reply_to(second, 200, "c"), kCarol);
  CHECK(f.finals_to(kCaller) == Codes{200});
  CHECK(f.policy.failures.empty());
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: failover: a silent server (Timer B) moves the branch on") {
  ProxyFixture f;
  f.resolver.answers["pool.example.net"] = {kBob, kCarol};
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:svc@pool.example.net"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.run_until(31'999);
  CHECK(f.requests_to(kCarol, "INVITE").empty());
  f.run_until(32'000);
  std::string second = f.last_request(kCarol, "INVITE");
  f.deliver(reply_to(second, 200, "c"), kCarol);
  CHECK(f.finals_to(kCaller) == Codes{200});
  CHECK(f.core->counters().failovers == 1);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: failover: a transport error moves the branch on at once") {
  ProxyFixture f;
  f.resolver.answers["pool.example.net"] = {kBob, kCarol};
  f.env.refuse = {kBob};
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:svc@pool.example.net"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  CHECK(f.requests_to(kCarol, "INVITE").empty());  // reported from the next on_timer
  f.tick();
  std::string second = f.last_request(kCarol, "INVITE");
  f.deliver(reply_to(second, 200, "c"), kCarol);
  CHECK(f.finals_to(kCaller) == Codes{200});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: failover: a transport error on the only server is a 503 → 500") {
  ProxyFixture f;
  f.env.refuse = {kBob};
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.tick();
  CHECK(f.finals_to(kCaller) == Codes{500});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: failover: the relay's failover codes replace the default") {
  SUBCASE("486 listed: the next server is tried") {
    ProxyFixture f;
    f.resolver.answers["pool.example.net"] = {kBob, kCarol};
    f.policy.decide = [](PolicyRequest&) {
      Decision d = relay_one("sip:svc@pool.example.net");
      d.relay.failover_codes = {486};
      return d;
    };
    f.deliver(ReqSpec{}.text(), kCaller);
    f.deliver(reply_to(f.last_request(kBob, "INVITE"), 486, "b"), kBob);
    CHECK(f.requests_to(kCarol, "INVITE").size() == 1);
    CHECK(f.finals_to(kCaller).empty());
  }
  SUBCASE("503 not listed: no failover") {
    ProxyFixture f;
    f.resolver.answers["pool.example.net"] = {kBob, kCarol};
    f.policy.decide = [](PolicyRequest&) {
      Decision d = relay_one("sip:svc@pool.example.net");
      d.relay.failover_codes = {486};
      return d;
    };
    f.deliver(ReqSpec{}.text(), kCaller);
    f.deliver(reply_to(f.last_request(kBob, "INVITE"), 503, "b"), kBob);
    CHECK(f.requests_to(kCarol, "INVITE").empty());
    CHECK(f.finals_to(kCaller) == Codes{500});
  }
  SUBCASE("408 not listed: a silent server (Timer B) is final") {
    ProxyFixture f;
    f.resolver.answers["pool.example.net"] = {kBob, kCarol};
    f.policy.decide = [](PolicyRequest&) {
      Decision d = relay_one("sip:svc@pool.example.net");
      d.relay.failover_codes = {486};
      return d;
    };
    f.deliver(ReqSpec{}.text(), kCaller);
    f.run_until(32'000);
    CHECK(f.requests_to(kCarol, "INVITE").empty());
    CHECK(f.core->counters().failovers == 0);
    CHECK(f.finals_to(kCaller) == Codes{408});
  }
  SUBCASE("default: a 486 is final") {
    ProxyFixture f;
    f.resolver.answers["pool.example.net"] = {kBob, kCarol};
    f.policy.decide = [](PolicyRequest&) { return relay_one("sip:svc@pool.example.net"); };
    f.deliver(ReqSpec{}.text(), kCaller);
    f.deliver(reply_to(f.last_request(kBob, "INVITE"), 486, "b"), kBob);
    CHECK(f.requests_to(kCarol, "INVITE").empty());
    CHECK(f.finals_to(kCaller) == Codes{486});
  }
}

TEST_CASE("proxy core: failover: a resolution that finds nothing fails the branch (503 → 500)") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@unknown.example.net"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  CHECK(f.finals_to(kCaller) == Codes{500});
  CHECK(f.resolver.asked == Strings{"sip:bob@unknown.example.net"});
  f.settle();
  CHECK(f.idle());
}

// ---------------------------------------------------------------------------------------
// Serial forking

TEST_CASE("proxy core: serial forking: the next q group starts only when the first failed") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    Decision d = relay_to({"sip:carol@192.0.2.21", "sip:bob@192.0.2.20"});
    d.targets[0].q1000 = 500;
    d.targets[1].q1000 = 1000;
    d.relay.mode = RelayOptions::Mode::Serial;
    return d;
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  CHECK(f.requests_to(kBob, "INVITE").size() == 1);  // q 1.0 first
  CHECK(f.requests_to(kCarol, "INVITE").empty());
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 180, "b"), kBob);
  CHECK(f.requests_to(kCarol, "INVITE").empty());
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 486, "b"), kBob);
  CHECK(f.requests_to(kCarol, "INVITE").size() == 1);
  CHECK(f.finals_to(kCaller).empty());
  CHECK(f.policy.failures.empty());
  f.deliver(reply_to(f.last_request(kCarol, "INVITE"), 200, "c"), kCarol);
  CHECK(f.finals_to(kCaller) == Codes{200});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: forking by q: equal q values run in parallel, groups one after another") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    Decision d = relay_to({"sip:dave@192.0.2.22", "sip:bob@192.0.2.20", "sip:carol@192.0.2.21"});
    d.targets[0].q1000 = 100;
    d.relay.mode = RelayOptions::Mode::ByQ;
    return d;
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  CHECK(f.requests_to(kBob, "INVITE").size() == 1);
  CHECK(f.requests_to(kCarol, "INVITE").size() == 1);
  CHECK(f.requests_to(kDave, "INVITE").empty());
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 486, "b"), kBob);
  CHECK(f.requests_to(kDave, "INVITE").empty());
  f.deliver(reply_to(f.last_request(kCarol, "INVITE"), 480, "c"), kCarol);
  CHECK(f.requests_to(kDave, "INVITE").size() == 1);
  f.deliver(reply_to(f.last_request(kDave, "INVITE"), 404, "d"), kDave);
  CHECK(f.finals_to(kCaller) == Codes{486});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: serial forking: one target at a time, equal q in the given order") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    Decision d = relay_to({"sip:bob@192.0.2.20", "sip:carol@192.0.2.21"});
    d.relay.mode = RelayOptions::Mode::Serial;
    return d;
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  CHECK(f.requests_to(kBob, "INVITE").size() == 1);
  CHECK(f.requests_to(kCarol, "INVITE").empty());
  f.run_until(32'000);  // Timer B: Bob never answered
  CHECK(f.requests_to(kCarol, "INVITE").size() == 1);
  f.deliver(reply_to(f.last_request(kCarol, "INVITE"), 200, "c"), kCarol);
  CHECK(f.finals_to(kCaller) == Codes{200});
  f.settle();
  CHECK(f.idle());
}

// ---------------------------------------------------------------------------------------
// on_failure

TEST_CASE("proxy core: on_failure may relay to new targets") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  f.policy.fail = [](PolicyRequest& req, const FailureInfo& best) {
    CHECK(req.message().ruri_text() == "sip:bob@example.com");
    if (best.status == 486) return relay_one("sip:vm@192.0.2.22");
    return Decision{};
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 486, "b"), kBob);
  REQUIRE(f.policy.failures.size() == 1);
  CHECK(f.policy.failures[0].status == 486);
  CHECK(f.policy.failures[0].reason == "Busy Here");
  CHECK(f.policy.failures[0].attempted == Strings{"sip:bob@192.0.2.20"});
  CHECK(f.finals_to(kCaller).empty());
  std::string vm = f.last_request(kDave, "INVITE");
  CHECK(Msg(vm).m.ruri_text() == "sip:vm@192.0.2.22");
  f.deliver(reply_to(vm, 200, "vm"), kDave);
  CHECK(f.finals_to(kCaller) == Codes{200});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: on_failure returning None sends the best response; rounds are bounded") {
  SUBCASE("none") {
    ProxyFixture f;
    f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
    f.deliver(ReqSpec{}.text(), kCaller);
    f.deliver(reply_to(f.last_request(kBob, "INVITE"), 486, "b"), kBob);
    CHECK(f.policy.failures.size() == 1);
    CHECK(f.finals_to(kCaller) == Codes{486});
  }
  SUBCASE("a policy that relays again forever is stopped") {
    ProxyFixture f;
    f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
    f.policy.fail = [](PolicyRequest&, const FailureInfo&) { return relay_one("sip:bob@192.0.2.20"); };
    f.deliver(ReqSpec{}.text(), kCaller);
    for (int i = 0; i < 10 && f.finals_to(kCaller).empty(); ++i)
      f.deliver(reply_to(f.last_request(kBob, "INVITE"), 486, "b"), kBob);
    CHECK(f.finals_to(kCaller) == Codes{486});
    CHECK(f.policy.failures.size() <= 4);
    f.settle();
    CHECK(f.idle());
  }
}

// ---------------------------------------------------------------------------------------
// §16.10 CANCEL

TEST_CASE("proxy core: §16.10 CANCEL: 200 to it, CANCEL downstream, 487 to the INVITE") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    return relay_to({"sip:bob@192.0.2.20", "sip:carol@192.0.2.21"});
  };
  ReqSpec r;
  f.deliver(r.text(), kCaller);
  std::string to_bob = f.last_request(kBob, "INVITE");
  std::string to_carol = f.last_request(kCarol, "INVITE");
  f.deliver(reply_to(to_bob, 180, "b"), kBob);
  f.deliver(reply_to(to_carol, 183, "c"), kCarol);
  ReqSpec c = r;
  c.method = "CANCEL";
  f.deliver(c.text(), kCaller);
  auto ok = f.responses_to(kCaller, 200);
  REQUIRE(ok.size() == 1);
  CHECK(cseq_method(ok[0]) == "CANCEL");
  auto term = f.responses_to(kCaller, 487);
  REQUIRE(term.size() == 1);
  CHECK(cseq_method(term[0]) == "INVITE");
  CHECK(f.requests_to(kBob, "CANCEL").size() == 1);
  CHECK(f.requests_to(kCarol, "CANCEL").size() == 1);
  CHECK(f.core->counters().cancels_sent == 2);
  // The branches end with 487 (ACKed hop by hop); nothing more goes to the caller.
  f.deliver(reply_to(to_bob, 487, "b"), kBob);
  f.deliver(reply_to(to_carol, 487, "c"), kCarol);
  CHECK(f.requests_to(kBob, "ACK").size() == 1);
  CHECK(f.finals_to(kCaller) == Codes{200, 487});
  CHECK(f.policy.failures.empty());
  // The caller ACKs our 487.
  ReqSpec ack = r;
  ack.method = "ACK";
  ack.to_tag = std::string(Msg(term[0]).m.to().tag());
  f.deliver(ack.text(), kCaller);
  CHECK(f.requests_to(kBob, "ACK").size() == 1);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: §16.10 a CANCEL for no transaction gets 481") {
  ProxyFixture f;
  ReqSpec c;
  c.method = "CANCEL";
  f.deliver(c.text(), kCaller);
  CHECK(f.finals_to(kCaller) == Codes{481});
  CHECK(f.policy.seen.empty());
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: §16.10 a CANCEL before any provisional waits for one (§9.1)") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  ReqSpec r;
  f.deliver(r.text(), kCaller);
  std::string to_bob = f.last_request(kBob, "INVITE");
  ReqSpec c = r;
  c.method = "CANCEL";
  f.deliver(c.text(), kCaller);
  CHECK(f.finals_to(kCaller) == Codes{200, 487});
  CHECK(f.requests_to(kBob, "CANCEL").empty());
  f.deliver(reply_to(to_bob, 180, "b"), kBob);
  CHECK(f.requests_to(kBob, "CANCEL").size() == 1);
  CHECK(f.responses_to(kCaller, 180).empty());
  // Bob's 200 crossed our CANCEL: it still reaches the caller (§16.7 step 10).
  f.deliver(reply_to(to_bob, 200, "b"), kBob);
  CHECK(f.finals_to(kCaller) == Codes{200, 487, 200});
  f.settle();
  CHECK(f.idle());
}

// ---------------------------------------------------------------------------------------
// Stateless paths

TEST_CASE("proxy core: an ACK to a 2xx is forwarded statelessly along Route") {
  ProxyFixture f;
  ReqSpec ack;
  ack.method = "ACK";
  ack.ruri = "sip:bob@192.0.2.20";
  ack.branch = "z9hG4bKack1";
  ack.to_tag = "callee";
  ack.routes = {"<sip:127.0.0.1:5060;lr>", "<sip:192.0.2.50;lr>"};
  f.deliver(ack.text(), kCaller);
  const core::Peer next = make_peer("192.0.2.50", 5060);
  auto out = f.requests_to(next, "ACK");
  REQUIRE(out.size() == 1);
  Msg m(out[0]);
  CHECK(m.m.ruri_text() == "sip:bob@192.0.2.20");
  CHECK(values(m.m, H::Route) == Strings{"<sip:192.0.2.50;lr>"});
  CHECK(m.m.max_forwards() == 69);
  auto vias = values(m.m, H::Via);
  REQUIRE(vias.size() == 2);
  core::Via top = via_of(vias[0]);
  CHECK(top.sent_by == "127.0.0.1:5060");
  CHECK(core::branch_worker(top.branch) == 3u);
  CHECK(vias[1] == "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKack1");
  CHECK(f.policy.seen.empty());
  CHECK(f.core->counters().stateless_requests == 1);
  // A retransmission leaves with the same branch (§16.11).
  f.deliver(ack.text(), kCaller);
  out = f.requests_to(next, "ACK");
  REQUIRE(out.size() == 2);
  CHECK(top_branch(out[1]) == top_branch(out[0]));
  // Another ACK (its own branch, then its own CSeq) leaves with a branch of its own.
  ack.branch = "z9hG4bKack1b";
  f.deliver(ack.text(), kCaller);
  ack.branch = "z9hG4bKack1";
  ack.cseq = 2;
  f.deliver(ack.text(), kCaller);
  out = f.requests_to(next, "ACK");
  REQUIRE(out.size() == 4);
  CHECK(top_branch(out[2]) != top_branch(out[0]));
  CHECK(top_branch(out[3]) != top_branch(out[0]));
  CHECK(top_branch(out[3]) != top_branch(out[2]));
  CHECK(f.idle());
}

TEST_CASE("proxy core: an ACK without Route goes to its Request-URI; one to us is dropped") {
  ProxyFixture f;
  ReqSpec ack;
  ack.method = "ACK";
  ack.ruri = "sip:bob@192.0.2.20";
  ack.branch = "z9hG4bKack2";
  ack.to_tag = "callee";
  f.deliver(ack.text(), kCaller);
  CHECK(f.requests_to(kBob, "ACK").size() == 1);
  ack.ruri = "sip:127.0.0.1:5060";
  ack.branch = "z9hG4bKack3";
  const size_t m0 = f.mark();
  f.deliver(ack.text(), kCaller);
  CHECK(f.sent_since(m0).empty());
  ack.ruri = "sip:bob@192.0.2.20";
  ack.max_forwards = 0;
  ack.branch = "z9hG4bKack4";
  f.deliver(ack.text(), kCaller);
  CHECK(f.sent_since(m0).empty());
}

TEST_CASE("proxy core: a stray response with our Via on top goes to the next Via; others are dropped") {
  ProxyFixture f;
  const std::string ours =
      "SIP/2.0 200 OK\r\n"
      "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsb3.77.1234\r\n"
      "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx;rport=40000;received=203.0.113.7\r\n"
      "From: <sip:alice@example.com>;tag=a\r\n"
      "To: <sip:bob@example.com>;tag=b\r\n"
      "Call-ID: stray-1\r\n"
      "CSeq: 1 INVITE\r\n"
      "Content-Length: 0\r\n\r\n";
  f.deliver(ours, kBob);
  const core::Peer nat = make_peer("203.0.113.7", 40000);
  auto out = f.responses_to(nat, 200);
  REQUIRE(out.size() == 1);
  CHECK(values(out[0], H::Via) ==
        Strings{"SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx;rport=40000;received=203.0.113.7"});
  CHECK(f.core->counters().stateless_responses == 1);

  std::string theirs = ours;
  theirs.replace(theirs.find("127.0.0.1:5060"), 14, "192.0.2.99:5060");
  const size_t m0 = f.mark();
  f.deliver(theirs, kBob);
  CHECK(f.sent_since(m0).empty());
  CHECK(f.core->counters().stateless_responses == 1);
}

// ---------------------------------------------------------------------------------------
// Timer C (§16.6 step 11, §16.8)

TEST_CASE("proxy core: Timer C CANCELs a branch stuck after a provisional; provisionals reset it") {
  ProxySettings s = ProxyFixture::default_settings();
  s.timer_c_ms = 200'000;
  ProxyFixture f(s);
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  std::string to_bob = f.last_request(kBob, "INVITE");
  f.deliver(reply_to(to_bob, 180, "b"), kBob);
  f.run_until(150'000);
  f.deliver(reply_to(to_bob, 183, "b"), kBob);  // resets Timer C
  f.run_until(349'999);
  CHECK(f.requests_to(kBob, "CANCEL").empty());
  CHECK(f.core->counters().timer_c == 0);
  f.run_until(350'000);
  auto cancels = f.requests_to(kBob, "CANCEL");
  REQUIRE(cancels.size() == 1);
  CHECK(top_branch(cancels[0]) == top_branch(to_bob));
  CHECK(f.core->counters().timer_c == 1);
  CHECK(f.finals_to(kCaller).empty());
  f.deliver(reply_to(to_bob, 487, "b"), kBob);
  // §16.8: the branch timed out; the caller learns it as a timeout, not as its own CANCEL.
  CHECK(f.finals_to(kCaller) == Codes{408});
  CHECK(f.policy.failures.size() == 1);
  CHECK(f.policy.failures[0].status == 408);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: Timer C without any provisional fails the branch as 408") {
  ProxySettings s = ProxyFixture::default_settings();
  s.timer_c_ms = 10'000;  // shorter than Timer B
  ProxyFixture f(s);
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.run_until(10'000);
  CHECK(f.finals_to(kCaller) == Codes{408});
  CHECK(f.requests_to(kBob, "CANCEL").empty());
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: Timer C: the relay's timeout overrides the setting") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    Decision d = relay_one("sip:bob@192.0.2.20");
    d.relay.timeout_ms = 60'000;
    return d;
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 180, "b"), kBob);
  f.run_until(59'999);
  CHECK(f.requests_to(kBob, "CANCEL").empty());
  f.run_until(60'000);
  CHECK(f.requests_to(kBob, "CANCEL").size() == 1);
}

// ---------------------------------------------------------------------------------------
// The policy's decisions

TEST_CASE("proxy core: a reply decision is sent with its headers") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    Decision d = Decision::reply(403, "Not Here");
    d.headers = {"X-Why: policy", "Warning: 399 example.com \"no\""};
    return d;
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  auto r = f.responses_to(kCaller, 403);
  REQUIRE(r.size() == 1);
  CHECK(first_line(r[0]) == "SIP/2.0 403 Not Here");
  Msg m(r[0]);
  CHECK(values_named(m.m, "X-Why") == Strings{"policy"});
  CHECK(!m.m.to().tag().empty());
  CHECK(f.core->counters().local_replies == 1);
  CHECK(f.core->counters().relayed == 0);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: a redirect decision sends 302 with the Contacts") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    Decision d;
    d.kind = Decision::Kind::Redirect;
    d.contacts = {"<sip:bob@192.0.2.20>", "<sip:bob@192.0.2.21>;q=0.5"};
    return d;
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  auto r = f.responses_to(kCaller, 302);
  REQUIRE(r.size() == 1);
  CHECK(first_line(r[0]) == "SIP/2.0 302 Moved Temporarily");
  CHECK(values(r[0], H::Contact) == Strings{"<sip:bob@192.0.2.20>", "<sip:bob@192.0.2.21>;q=0.5"});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: no decision is a 500 and counted") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return Decision{}; };
  f.deliver(ReqSpec{}.text(), kCaller);
  CHECK(f.finals_to(kCaller) == Codes{500});
  CHECK(f.core->counters().no_decision == 1);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: a provisional reply decision does not leave the request hanging") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return Decision::reply(180); };
  f.deliver(ReqSpec{}.text(), kCaller);
  auto finals = f.finals_to(kCaller);
  REQUIRE(finals.size() == 1);
  CHECK(finals[0] >= 500);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: an asynchronous decision") {
  ProxyFixture f;
  f.policy.async = true;
  f.deliver(ReqSpec{}.text(), kCaller);
  CHECK(f.lines_to(kCaller) == Strings{"SIP/2.0 100 Trying"});
  REQUIRE(f.policy.held.size() == 1);
  f.run_for(2000);  // retransmissions of the INVITE would be absorbed meanwhile
  f.deliver(ReqSpec{}.text(), kCaller);
  CHECK(f.policy.held.size() == 1);
  f.policy.held[0](relay_one("sip:bob@192.0.2.20"));
  std::string to_bob = f.last_request(kBob, "INVITE");
  f.deliver(reply_to(to_bob, 200, "b"), kBob);
  CHECK(f.finals_to(kCaller) == Codes{200});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: a CANCEL while the decision is pending: 487, the late decision is ignored") {
  ProxyFixture f;
  f.policy.async = true;
  ReqSpec r;
  f.deliver(r.text(), kCaller);
  ReqSpec c = r;
  c.method = "CANCEL";
  f.deliver(c.text(), kCaller);
  CHECK(f.finals_to(kCaller) == Codes{200, 487});
  REQUIRE(f.policy.held.size() == 1);
  CHECK(f.core->contexts() == 1);
  f.policy.held[0](relay_one("sip:bob@192.0.2.20"));
  CHECK(f.requests_to(kBob, "INVITE").empty());
  CHECK(f.finals_to(kCaller) == Codes{200, 487});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: a decision given twice is applied once") {
  ProxyFixture f;
  f.policy.async = true;
  f.deliver(ReqSpec{}.text(), kCaller);
  REQUIRE(f.policy.held.size() == 1);
  DecisionFn done = f.policy.held[0];
  done(relay_one("sip:bob@192.0.2.20"));
  done(relay_one("sip:carol@192.0.2.21"));
  CHECK(f.requests_to(kBob, "INVITE").size() == 1);
  CHECK(f.requests_to(kCarol, "INVITE").empty());
}

TEST_CASE("proxy core: a late decision still answers a non-INVITE") {
  ProxyFixture f;
  f.policy.async = true;
  ReqSpec r;
  r.method = "MESSAGE";
  f.deliver(r.text(), kCaller);
  REQUIRE(f.policy.held.size() == 1);
  // No final within 64*T1: nothing ends a non-INVITE server transaction in Trying, so the
  // context waits for the decision.
  f.run_for(40'000);
  CHECK(f.core->contexts() == 1);
  f.policy.held[0](Decision::reply(200));
  CHECK(f.finals_to(kCaller) == Codes{200});
  f.settle();
  CHECK(f.idle());
}

// ---------------------------------------------------------------------------------------
// Robustness found by review

TEST_CASE("proxy core: no failover to a new server once a 6xx arrived") {
  ProxyFixture f;
  f.resolver.answers["pool.example.net"] = {kCarol, kDave};
  f.policy.decide = [](PolicyRequest&) {
    return relay_to({"sip:bob@192.0.2.20", "sip:svc@pool.example.net"});
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  std::string to_carol = f.last_request(kCarol, "INVITE");
  f.deliver(reply_to(to_carol, 180, "c"), kCarol);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 603, "b"), kBob);
  CHECK(f.requests_to(kCarol, "CANCEL").size() == 1);
  f.deliver(reply_to(to_carol, 503, "c"), kCarol);
  CHECK(f.requests_to(kDave, "INVITE").empty());
  CHECK(f.finals_to(kCaller) == Codes{603});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: a forked non-INVITE forwards one final response") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    return relay_to({"sip:bob@192.0.2.20", "sip:carol@192.0.2.21"});
  };
  ReqSpec r;
  r.method = "MESSAGE";
  f.deliver(r.text(), kCaller);
  f.deliver(reply_to(f.last_request(kBob, "MESSAGE"), 200, "b"), kBob);
  f.deliver(reply_to(f.last_request(kCarol, "MESSAGE"), 200, "c"), kCarol);
  CHECK(f.finals_to(kCaller) == Codes{200});
  CHECK(f.requests_to(kCarol, "CANCEL").empty());  // §9.1: non-INVITEs are not cancelled
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: the caller's transport failing cancels the pending branches") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  std::string to_bob = f.last_request(kBob, "INVITE");
  f.env.refuse = {kCaller};
  f.deliver(reply_to(to_bob, 180, "b"), kBob);
  f.tick();  // the 180 could not be sent: the server transaction ends
  CHECK(f.requests_to(kBob, "CANCEL").size() == 1);
  f.deliver(reply_to(to_bob, 487, "b"), kBob);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: asynchronous resolution") {
  ProxyFixture f;
  f.resolver.async = true;
  f.resolver.answers["pool.example.net"] = {kBob, kCarol};
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:svc@pool.example.net"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  CHECK(f.requests_to(kBob, "INVITE").empty());
  CHECK(f.core->contexts() == 1);
  f.resolver.release();
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 503, "b"), kBob);
  f.deliver(reply_to(f.last_request(kCarol, "INVITE"), 200, "c"), kCarol);
  CHECK(f.finals_to(kCaller) == Codes{200});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: a CANCEL while resolving: no request leaves, the context goes") {
  ProxyFixture f;
  f.resolver.async = true;
  f.resolver.answers["pool.example.net"] = {kBob};
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:svc@pool.example.net"); };
  ReqSpec r;
  f.deliver(r.text(), kCaller);
  ReqSpec c = r;
  c.method = "CANCEL";
  f.deliver(c.text(), kCaller);
  CHECK(f.finals_to(kCaller) == Codes{200, 487});
  f.resolver.release();
  CHECK(f.requests_to(kBob, "INVITE").empty());
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: §16.4 a request from a strict router is restored before routing") {
  ProxyFixture f;
  Decision follow;
  follow.kind = Decision::Kind::Relay;
  f.policy.decide = [&](PolicyRequest& req) {
    CHECK(req.message().ruri_text() == "sip:bob@192.0.2.20:5062");
    return follow;
  };
  SUBCASE("the remote target was the only Route value") {
    ReqSpec bye;
    bye.method = "BYE";
    bye.ruri = "sip:127.0.0.1:5060;lr";
    bye.to_tag = "callee";
    bye.routes = {"<sip:bob@192.0.2.20:5062>"};
    f.deliver(bye.text(), kCaller);
    Msg m(f.last_request(make_peer("192.0.2.20", 5062), "BYE"));
    CHECK(m.m.ruri_text() == "sip:bob@192.0.2.20:5062");
    CHECK(values(m.m, H::Route).empty());
  }
  SUBCASE("more routes before it, on the same line") {
    ReqSpec bye;
    bye.method = "BYE";
    bye.ruri = "sip:127.0.0.1;lr";
    bye.to_tag = "callee";
    bye.routes = {"<sip:192.0.2.99:5090;lr>, <sip:bob@192.0.2.20:5062>"};
    f.deliver(bye.text(), kCaller);
    Msg m(f.last_request(make_peer("192.0.2.99", 5090), "BYE"));
    CHECK(m.m.ruri_text() == "sip:bob@192.0.2.20:5062");
    CHECK(values(m.m, H::Route) == Strings{"<sip:192.0.2.99:5090;lr>"});
  }
  CHECK(f.policy.seen == Strings{"sip:bob@192.0.2.20:5062"});
}

TEST_CASE("proxy core: §16.4 a domain Request-URI is not taken for our Record-Route") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest& req) {
    CHECK(req.message().ruri_text() == "sip:example.com;lr");
    return Decision::reply(200);
  };
  ReqSpec reg;
  reg.method = "REGISTER";
  reg.ruri = "sip:example.com;lr";
  reg.routes = {"<sip:127.0.0.1;lr>"};
  f.deliver(reg.text(), kCaller);
  CHECK(f.finals_to(kCaller) == Codes{200});
}

TEST_CASE("proxy core: §16.6 step 6 a next hop without ;lr (strict router) gets the R-URI it routes on") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.40"); };
  ReqSpec r;
  r.routes = {"<sip:127.0.0.1;lr>", "<sip:192.0.2.99:5090>", "<sip:192.0.2.98;lr>"};
  f.deliver(r.text(), kCaller);
  Msg m(f.last_request(make_peer("192.0.2.99", 5090), "INVITE"));
  CHECK(m.m.ruri_text() == "sip:192.0.2.99:5090");
  CHECK(values(m.m, H::Route) == Strings{"<sip:192.0.2.98;lr>", "<sip:bob@192.0.2.40>"});
}

TEST_CASE("proxy core: §9.1 a branch that never answers our CANCEL is given up after 64*T1") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    return relay_to({"sip:bob@192.0.2.20", "sip:carol@192.0.2.21"});
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  std::string to_bob = f.last_request(kBob, "INVITE");
  f.deliver(reply_to(to_bob, 180, "b"), kBob);
  f.deliver(reply_to(f.last_request(kCarol, "INVITE"), 486, "c"), kCarol);
  f.run_until(1000);
  ReqSpec c;
  c.method = "CANCEL";
  f.deliver(c.text(), kCaller);
  CHECK(f.finals_to(kCaller) == Codes{200, 487});
  CHECK(f.requests_to(kBob, "CANCEL").size() == 1);
  // Bob answers neither the CANCEL nor the INVITE.
  f.run_until(1000 + 31'999);
  CHECK(f.core->contexts() == 1);
  f.run_until(1000 + 32'000);
  f.settle();
  CHECK(f.core->contexts() == 0);
  CHECK(f.policy.failures.empty());
  // The INVITE client transaction itself has no timer left in Proceeding (RFC 3261
  // §17.1.1.2): only the layer could end it. A late failure is not forwarded; a late 2xx
  // still is (§16.7 step 10), by Via.
  const size_t m0 = f.mark();
  SUBCASE("a late 487, then a 200") {
    f.deliver(reply_to(to_bob, 487, "b"), kBob);
    CHECK(f.lines_to(kCaller, m0).empty());
    f.deliver(reply_to(to_bob, 200, "b"), kBob);
  }
  SUBCASE("a late 200") { f.deliver(reply_to(to_bob, 200, "b"), kBob); }
  CHECK(f.lines_to(kCaller, m0) == Strings{"SIP/2.0 200 OK"});
  CHECK(f.core->contexts() == 0);
}

TEST_CASE("proxy core: Timer C, CANCEL unanswered: the caller gets 408 after 64*T1") {
  ProxySettings s = ProxyFixture::default_settings();
  s.timer_c_ms = 100'000;
  ProxyFixture f(s);
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 180, "b"), kBob);
  f.run_until(100'000);
  CHECK(f.requests_to(kBob, "CANCEL").size() == 1);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 183, "b"), kBob);  // no reset any more
  f.run_until(131'999);
  CHECK(f.finals_to(kCaller).empty());
  f.run_until(132'000);
  CHECK(f.finals_to(kCaller) == Codes{408});
  CHECK(f.core->counters().timer_c == 1);
  f.settle();
  CHECK(f.core->contexts() == 0);
}

TEST_CASE("proxy core: Timer C in Calling: a provisional after it gets a CANCEL") {
  ProxySettings s = ProxyFixture::default_settings();
  s.timer_c_ms = 10'000;
  ProxyFixture f(s);
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  std::string to_bob = f.last_request(kBob, "INVITE");
  f.run_until(10'000);
  CHECK(f.finals_to(kCaller) == Codes{408});
  f.deliver(reply_to(to_bob, 180, "b"), kBob);
  CHECK(f.requests_to(kBob, "CANCEL").size() == 1);
  CHECK(f.responses_to(kCaller, 180).empty());
  f.deliver(reply_to(to_bob, 487, "b"), kBob);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: a non-INVITE whose caller went away while a branch resolved") {
  ProxyFixture f;
  f.resolver.async = true;
  f.policy.decide = [](PolicyRequest&) {
    return relay_to({"sip:bob@192.0.2.20", "sip:carol@nowhere.example.net"});
  };
  ReqSpec r;
  r.method = "MESSAGE";
  f.deliver(r.text(), kCaller);
  REQUIRE(f.resolver.pending.size() == 2);
  // Bob's resolution comes first; then a provisional from him cannot reach the caller: the
  // server transaction ends.
  auto bob = std::move(f.resolver.pending.front());
  f.resolver.pending.erase(f.resolver.pending.begin());
  bob.second(std::move(bob.first));
  std::string to_bob = f.last_request(kBob, "MESSAGE");
  f.env.refuse = {kCaller};
  f.deliver(reply_to(to_bob, 182, "b"), kBob);
  f.tick();
  f.deliver(reply_to(to_bob, 404, "b"), kBob);
  f.run_for(6'000);  // Timer K: Bob's transaction ends
  CHECK(f.core->contexts() == 1);
  f.resolver.release();  // Carol's resolution fails: nobody is left to ask or answer
  CHECK(f.policy.failures.empty());
  CHECK(f.core->contexts() == 0);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: a request keeps the policy it started with") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  TestPolicy next;
  next.fail = [](PolicyRequest&, const FailureInfo&) { return relay_one("sip:vm@192.0.2.22"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.core->set_policy(next);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 486, "b"), kBob);
  CHECK(f.policy.failures.size() == 1);
  CHECK(next.failures.empty());
  CHECK(f.finals_to(kCaller) == Codes{486});
  // A new request goes to the new policy.
  ReqSpec r2;
  r2.branch = "z9hG4bKsecond";
  r2.call_id = "call-2";
  f.deliver(r2.text(), kCaller);
  CHECK(next.seen.size() == 1);
}

TEST_CASE("proxy core: §9.2 the 200 to a CANCEL has the To tag of the 487") {
  ProxyFixture f;
  f.policy.async = true;
  ReqSpec r;
  f.deliver(r.text(), kCaller);
  ReqSpec c = r;
  c.method = "CANCEL";
  f.deliver(c.text(), kCaller);
  auto ok = f.responses_to(kCaller, 200);
  auto term = f.responses_to(kCaller, 487);
  REQUIRE(ok.size() == 1);
  REQUIRE(term.size() == 1);
  CHECK(Msg(ok[0]).m.to().tag() == Msg(term[0]).m.to().tag());
}

TEST_CASE("proxy core: a CANCEL while on_failure decides: 487, the late relay is ignored") {
  ProxyFixture f;
  f.policy.async_failure = true;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  ReqSpec r;
  f.deliver(r.text(), kCaller);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 486, "b"), kBob);
  REQUIRE(f.policy.held_failures.size() == 1);
  ReqSpec c = r;
  c.method = "CANCEL";
  f.deliver(c.text(), kCaller);
  CHECK(f.finals_to(kCaller) == Codes{200, 487});
  f.policy.held_failures[0](relay_one("sip:vm@192.0.2.22"));
  CHECK(f.requests_to(kDave, "INVITE").empty());
  CHECK(f.finals_to(kCaller) == Codes{200, 487});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: an async on_failure relay reaches the caller") {
  ProxyFixture f;
  f.policy.async_failure = true;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 486, "b"), kBob);
  REQUIRE(f.policy.held_failures.size() == 1);
  CHECK(f.finals_to(kCaller).empty());
  f.policy.held_failures[0](relay_one("sip:vm@192.0.2.22"));
  f.deliver(reply_to(f.last_request(kDave, "INVITE"), 200, "vm"), kDave);
  CHECK(f.finals_to(kCaller) == Codes{200});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: beyond max_transactions: 503 with Retry-After") {
  LayerOptions opts;
  opts.max_transactions = 1;
  ProxyFixture f(ProxyFixture::default_settings(), {}, opts);
  f.policy.async = true;
  f.deliver(ReqSpec{}.text(), kCaller);
  ReqSpec r2;
  r2.method = "OPTIONS";
  r2.ruri = "sip:bob@example.com";
  r2.branch = "z9hG4bKsecond";
  r2.call_id = "call-2";
  f.deliver(r2.text(), kCaller);
  auto busy = f.responses_to(kCaller, 503);
  REQUIRE(busy.size() == 1);
  CHECK(values(busy[0], H::RetryAfter) == Strings{"5"});
  CHECK(f.core->counters().overloaded == 1);
}

TEST_CASE("proxy core: a Via line with several values keeps its order when forwarded") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  ReqSpec r;
  r.sent_by = "192.0.2.10:5060";
  r.via_params = ", SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bKlower";
  r.lower_vias = {"SIP/2.0/TCP 192.0.2.4;branch=z9hG4bKlowest"};
  f.deliver(r.text(), kCaller);
  std::string fwd = f.last_request(kBob, "INVITE");
  auto vias = values(fwd, H::Via);
  REQUIRE(vias.size() == 4);
  CHECK(vias[1] == "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKcaller1");
  CHECK(vias[2] == "SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bKlower");
  CHECK(vias[3] == "SIP/2.0/TCP 192.0.2.4;branch=z9hG4bKlowest");
  f.deliver(reply_to(fwd, 486), kBob);
  auto busy = f.responses_to(kCaller, 486);
  REQUIRE(busy.size() == 1);
  CHECK(values(busy[0], H::Via) == Strings{vias[1], vias[2], vias[3]});
}

TEST_CASE("local identity: who is us (§16.4, §16.3 step 4)") {
  LocalListener udp;
  udp.address = "192.0.2.1";
  udp.host = "proxy.example.com";
  udp.port = 5060;
  udp.family = AF_INET;
  LocalListener tls = udp;
  tls.protocol = core::Protocol::Tls;
  tls.port = 5061;
  LocalListener v6 = udp;
  v6.address = v6.host = "2001:db8::1";
  v6.family = AF_INET6;
  LocalIdentity id({udp, tls, v6}, {"example.com"});
  auto uri = [](std::string_view text) {
    auto u = core::parse_uri(text);
    REQUIRE(u.ok());
    return u.value();
  };
  CHECK(id.uri_is_us(uri("sip:192.0.2.1")));
  CHECK(id.uri_is_us(uri("sip:proxy.example.com:5060;lr")));
  CHECK(id.uri_is_us(uri("sip:[2001:db8::1]:5060")));
  CHECK(id.uri_is_us(uri("sips:proxy.example.com")));                // 5061
  CHECK(id.uri_is_us(uri("sip:proxy.example.com;transport=tls")));   // 5061
  CHECK(id.uri_is_us(uri("sip:example.com")));                        // a domain of ours
  CHECK(id.uri_is_us(uri("sip:x@192.0.2.99;maddr=192.0.2.1")));
  CHECK_FALSE(id.uri_is_us(uri("sip:192.0.2.1:5070")));
  CHECK_FALSE(id.uri_is_us(uri("sip:192.0.2.2")));
  CHECK_FALSE(id.uri_is_us(uri("tel:+15551234")));
  CHECK(id.uri_is_listener(uri("sip:proxy.example.com;lr")));
  CHECK_FALSE(id.uri_is_listener(uri("sip:example.com;lr")));
  auto via = [](std::string_view text) {
    auto v = core::parse_via(text);
    REQUIRE(v.ok());
    return v.value();
  };
  CHECK(id.via_is_us(via("SIP/2.0/TLS proxy.example.com;branch=z9hG4bKx")));  // 5061
  CHECK(id.via_is_us(via("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx")));
  CHECK_FALSE(id.via_is_us(via("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKx")));
  CHECK(id.outgoing(core::Protocol::Udp, AF_INET6) == 2u);
  CHECK(id.outgoing(core::Protocol::Udp, AF_INET) == 0u);
  CHECK(id.outgoing(core::Protocol::Tls, AF_INET6) == 1u);
  CHECK_FALSE(id.outgoing(core::Protocol::Tcp, AF_INET).has_value());
}

TEST_CASE("local listener: host:port as Via sent-by and Record-Route write it") {
  auto hp = [](const LocalListener& l, bool reply = false) {
    std::string s = "x";  // appended to what is there
    l.append_hostport(s, reply);
    return s;
  };
  LocalListener l;
  l.host = "proxy.example.com";
  l.port = 5060;
  CHECK(hp(l) == "xproxy.example.com:5060");
  CHECK(hp(l, true) == "xproxy.example.com:5060");  // no reply port: the listener's
  l.reply_port = 40123;
  CHECK(hp(l) == "xproxy.example.com:5060");
  CHECK(hp(l, true) == "xproxy.example.com:40123");
  l.host = "2001:db8::1";
  l.port = 65535;
  CHECK(hp(l) == "x[2001:db8::1]:65535");
  l.port = 7;
  CHECK(hp(l) == "x[2001:db8::1]:7");
}

TEST_CASE("proxy core: an ACK whose next hop resolves later is forwarded from a copy") {
  ProxyFixture f;
  f.resolver.async = true;
  f.resolver.answers["edge.example.com"] = {make_peer("192.0.2.51", 5070)};
  ReqSpec ack;
  ack.method = "ACK";
  ack.ruri = "sip:bob@192.0.2.20";
  ack.branch = "z9hG4bKack9";
  ack.to_tag = "callee";
  ack.routes = {"<sip:127.0.0.1:5060;lr>", "<sip:edge.example.com;lr>"};
  {
    std::string text = ack.text();
    f.deliver(text, kCaller);
    std::fill(text.begin(), text.end(), 'X');  // the received bytes are gone after delivery
  }
  CHECK(f.requests_to(make_peer("192.0.2.51", 5070), "ACK").empty());
  f.resolver.release();
  auto out = f.requests_to(make_peer("192.0.2.51", 5070), "ACK");
  REQUIRE(out.size() == 1);
  Msg m(out[0]);
  CHECK(m.m.ruri_text() == "sip:bob@192.0.2.20");
  CHECK(values(m.m, H::Route) == Strings{"<sip:edge.example.com;lr>"});
  CHECK(values(m.m, H::Via).size() == 2);
  CHECK(f.core->counters().stateless_requests == 1);
}

TEST_CASE("proxy core: stateless ACKs: a strict next hop, and distinct branches for RFC 2543 ACKs") {
  ProxyFixture f;
  ReqSpec ack;
  ack.method = "ACK";
  ack.ruri = "sip:bob@192.0.2.20";
  ack.branch = "";
  ack.to_tag = "callee";
  ack.routes = {"<sip:127.0.0.1;lr>", "<sip:192.0.2.99:5090>"};
  f.deliver(ack.text(), kCaller);
  ReqSpec other = ack;
  other.call_id = "call-2";
  f.deliver(other.text(), kCaller);
  auto out = f.requests_to(make_peer("192.0.2.99", 5090), "ACK");
  REQUIRE(out.size() == 2);
  Msg m(out[0]);
  CHECK(m.m.ruri_text() == "sip:192.0.2.99:5090");
  CHECK(values(m.m, H::Route) == Strings{"<sip:bob@192.0.2.20>"});
  CHECK(top_branch(out[0]) != top_branch(out[1]));
}

TEST_CASE("proxy core: RFC 3263 §4.3 failed servers are reported to the resolver") {
  ProxyFixture f;
  f.resolver.answers["pool.example.net"] = {kBob, kCarol, kDave};
  f.env.refuse = {kCarol};
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:svc@pool.example.net"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 503, "b", {"Retry-After: 120 (maintenance)"}),
            kBob);
  f.tick();  // Carol's send failed
  REQUIRE(f.requests_to(kDave, "INVITE").size() == 1);
  f.run_for(32'000);  // Dave is silent: Timer B
  CHECK(f.finals_to(kCaller) == Codes{408});
  REQUIRE(f.resolver.reports.size() == 3);
  CHECK(same_peer(f.resolver.reports[0].server, kBob));
  CHECK(f.resolver.reports[0].fault == ServerFault::Unavailable);
  CHECK(f.resolver.reports[0].retry_after_ms == 120'000);
  CHECK(same_peer(f.resolver.reports[1].server, kCarol));
  CHECK(f.resolver.reports[1].fault == ServerFault::TransportError);
  CHECK(same_peer(f.resolver.reports[2].server, kDave));
  CHECK(f.resolver.reports[2].fault == ServerFault::Timeout);
  CHECK(f.resolver.reports[2].retry_after_ms < 0);
  CHECK(f.core->counters().failovers == 2);
}

TEST_CASE("proxy core: a fixed destination is not reported; a name that does not exist is a 404") {
  ProxyFixture f;
  f.resolver.nxdomain = {"gone.example.net"};
  f.policy.decide = [](PolicyRequest&) {
    Decision d = relay_to({"sip:bob@10.9.9.9", "sip:x@gone.example.net"});
    d.targets[0].destination = kBob;
    return d;
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 503, "b"), kBob);
  CHECK(f.resolver.reports.empty());
  CHECK(f.finals_to(kCaller) == Codes{404});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: §16.7 step 4 recursion on a 3xx when the policy asks") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    Decision d = relay_one("sip:bob@192.0.2.20");
    d.relay.recurse_3xx = true;
    return d;
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  // Bob's UA redirects to Carol; the proxy tries Carol instead of returning the 302.
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 302, "b",
                     {"Contact: <sip:carol@192.0.2.21>, <sip:bob@192.0.2.20>"}),
            kBob);
  CHECK(f.finals_to(kCaller).empty());
  std::string carol = f.last_request(kCarol, "INVITE");
  REQUIRE_FALSE(carol.empty());
  CHECK(Msg(carol).m.ruri_text() == "sip:carol@192.0.2.21");
  // The Contact already tried (Bob) is not tried again.
  CHECK(f.requests_to(kBob, "INVITE").size() == 1);
  f.deliver(reply_to(carol, 200, "c"), kCarol);
  CHECK(f.finals_to(kCaller) == Codes{200});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: without recursion a 3xx is returned to the caller") {
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:bob@192.0.2.20"); };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 302, "b", {"Contact: <sip:carol@192.0.2.21>"}), kBob);
  CHECK(f.finals_to(kCaller) == Codes{302});
  CHECK(f.requests_to(kCarol, "INVITE").empty());
  f.settle();
  CHECK(f.idle());
}

// ---------------------------------------------------------------------------------------
// A flow held by another cluster node (docs/cluster.md): the branch goes through that node

namespace {

// What proxy::binding_target makes of another node's flow: the owner (kEdge here) as Path.
Target via_owner(std::string uri) {
  location::Binding b;
  b.contact = std::move(uri);
  b.path = {location::owner_route("sip:192.0.2.30:5070;transport=udp", "sip:bob@example.com")};
  return binding_target(b);
}

}  // namespace

TEST_CASE("cluster: binding_target marks a flow reached through its owner node") {
  Target t = via_owner("sip:bob@10.0.0.9:5062;transport=tcp");
  CHECK(t.hop_failure_status == 480);
  CHECK(t.route.size() == 1);
  CHECK_FALSE(t.destination);
  location::Binding plain;
  plain.contact = "sip:bob@192.0.2.20";
  plain.path = {"<sip:192.0.2.30:5070;lr>"};  // an ordinary Path (RFC 3327)
  CHECK(binding_target(plain).hop_failure_status == 0);
  plain.path.clear();
  CHECK(binding_target(plain).hop_failure_status == 0);
}

TEST_CASE("proxy core: a branch whose owner node is gone or answers 430 counts as 480 (§16.7 step 6)") {
  SUBCASE("silent owner (Timer B): 480, not 408") {
    ProxyFixture f;
    f.policy.decide = [](PolicyRequest&) {
      Decision d;
      d.kind = Decision::Kind::Relay;
      d.targets = {via_owner("sip:bob@10.0.0.9:5062;transport=tcp")};
      return d;
    };
    f.deliver(ReqSpec{}.text(), kCaller);
    CHECK(f.requests_to(kEdge, "INVITE").size() == 1);
    f.run_until(32'000);
    CHECK(f.finals_to(kCaller) == Codes{480});
    REQUIRE(f.policy.failures.size() == 1);
    CHECK(f.policy.failures[0].status == 480);  // what on_failure sees too
    f.settle();
    CHECK(f.idle());
  }
  SUBCASE("owner refuses the connection (transport error): 480, not 500") {
    ProxyFixture f;
    f.env.refuse = {kEdge};
    f.policy.decide = [](PolicyRequest&) {
      Decision d;
      d.kind = Decision::Kind::Relay;
      d.targets = {via_owner("sip:bob@10.0.0.9:5062;transport=tcp")};
      return d;
    };
    f.deliver(ReqSpec{}.text(), kCaller);
    f.tick();
    CHECK(f.finals_to(kCaller) == Codes{480});
    f.settle();
    CHECK(f.idle());
  }
  SUBCASE("430 Flow Failed from the owner (RFC 5626 §5.3): 480, the 430 goes no further") {
    ProxyFixture f;
    f.policy.decide = [](PolicyRequest&) {
      Decision d;
      d.kind = Decision::Kind::Relay;
      d.targets = {via_owner("sip:bob@10.0.0.9:5062;transport=tcp")};
      return d;
    };
    f.deliver(ReqSpec{}.text(), kCaller);
    f.deliver(reply_to(f.last_request(kEdge, "INVITE"), 430, "o"), kEdge);
    CHECK(f.requests_to(kEdge, "ACK").size() == 1);  // §17.1.1.3: the 430 is acknowledged
    CHECK(f.finals_to(kCaller) == Codes{480});
    CHECK(f.responses_to(kCaller, 430).empty());
    REQUIRE(f.policy.failures.size() == 1);
    CHECK(f.policy.failures[0].status == 480);
    f.settle();
    CHECK(f.idle());
  }
}

TEST_CASE("proxy core: a dead owner's branch is a 480 among the others: the best response still wins") {
  struct Case {
    int other;  // the final response of the AOR's other binding (a UDP contact, kBob)
    int want;
  };
  // 5xx is worse than the 480 (the caller would have seen the dead hop's 500 before); a 3xx or
  // a 6xx is better; a 4xx of the same class may win (here: the first branch's).
  for (Case c : {Case{503, 480}, Case{500, 480}, Case{302, 302}, Case{600, 600}, Case{486, 486}}) {
    CAPTURE(c.other);
    ProxyFixture f;
    f.env.refuse = {kEdge};
    f.policy.decide = [](PolicyRequest&) {
      Decision d = relay_one("sip:bob@192.0.2.20");
      d.targets.push_back(via_owner("sip:bob@10.0.0.9:5062;transport=tcp"));
      return d;
    };
    f.deliver(ReqSpec{}.text(), kCaller);
    f.tick();  // the branch through the owner failed
    CHECK(f.finals_to(kCaller).empty());
    f.deliver(reply_to(f.last_request(kBob, "INVITE"), c.other, "b",
                       c.other == 302 ? Strings{"Contact: <sip:x@192.0.2.77>"} : Strings{}),
              kBob);
    CHECK(f.finals_to(kCaller) == Codes{c.want});
    f.settle();
    CHECK(f.idle());
  }
  // Silent both: the UDP contact's own 408 and the owner's 480 are of one class.
  ProxyFixture f;
  f.policy.decide = [](PolicyRequest&) {
    Decision d;
    d.kind = Decision::Kind::Relay;
    d.targets = {via_owner("sip:bob@10.0.0.9:5062;transport=tcp")};
    d.targets.push_back(relay_one("sip:bob@192.0.2.20").targets[0]);
    return d;
  };
  f.deliver(ReqSpec{}.text(), kCaller);
  f.run_until(32'000);
  CHECK(f.finals_to(kCaller) == Codes{480});
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: through a live owner, the UA's own answers and timeouts stand") {
  SUBCASE("a final response of the UA is forwarded as it is") {
    ProxyFixture f;
    f.policy.decide = [](PolicyRequest&) {
      Decision d;
      d.kind = Decision::Kind::Relay;
      d.targets = {via_owner("sip:bob@10.0.0.9:5062;transport=tcp")};
      return d;
    };
    f.deliver(ReqSpec{}.text(), kCaller);
    f.deliver(reply_to(f.last_request(kEdge, "INVITE"), 503, "u"), kEdge);
    CHECK(f.finals_to(kCaller) == Codes{500});  // §16.7 step 6, as for any 503
    f.settle();
    CHECK(f.idle());
  }
  SUBCASE("Timer C after a provisional: the UA rang and did not answer, 408 (§16.8)") {
    ProxyFixture f;
    f.policy.decide = [](PolicyRequest&) {
      Decision d;
      d.kind = Decision::Kind::Relay;
      d.targets = {via_owner("sip:bob@10.0.0.9:5062;transport=tcp")};
      d.relay.timeout_ms = 60'000;
      return d;
    };
    f.deliver(ReqSpec{}.text(), kCaller);
    std::string inv = f.last_request(kEdge, "INVITE");
    f.deliver(reply_to(inv, 180, "u"), kEdge);
    f.run_until(60'000);
    REQUIRE(f.requests_to(kEdge, "CANCEL").size() == 1);
    f.deliver(reply_to(inv, 487, "u"), kEdge);
    CHECK(f.finals_to(kCaller) == Codes{408});
    f.settle();
    CHECK(f.idle());
  }
}

// ---------------------------------------------------------------------------------------
// Memory: a context waiting for answers keeps the request's bytes, not its parse
// (docs/performance.md "Memory"); a later step that reads the request parses it again.

TEST_CASE("proxy core: the parsed request is dropped once the branches are out, and read again when needed") {
  ProxyFixture f;
  f.policy.async = true;
  f.resolver.async = true;
  f.resolver.answers["pool.example.net"] = {kBob};
  ReqSpec r;
  r.routes = {"<sip:127.0.0.1;lr>"};  // ours: consumed (§16.4), counted before the drop
  r.extra = {"X-Keep: 1", "Subject: lunch"};
  r.body = "v=0\r\n";
  const std::string invite = r.text();
  f.deliver(invite, kCaller);
  // Deciding: the policy may read the request at any time.
  CHECK(f.core->contexts() == 1);
  CHECK(f.core->parsed_contexts() == 1);
  REQUIRE(f.policy.held.size() == 1);
  f.policy.held[0](relay_one("sip:svc@pool.example.net"));
  // Resolving: the branch still has to be written from it.
  CHECK(f.core->parsed_contexts() == 1);
  f.resolver.release();
  std::string to_bob = f.last_request(kBob, "INVITE");
  CHECK(f.core->parsed_contexts() == 0);
  CHECK(f.core->contexts() == 1);
  CHECK(values(to_bob, H::Route).empty());  // the Route naming us went, as counted at first
  CHECK(values(to_bob, H::Subject) == Strings{"lunch"});
  CHECK(Msg(to_bob).m.body() == "v=0\r\n");

  // A provisional and a CANCEL: the 487 is built from the request parsed again, as from the
  // original.
  f.deliver(reply_to(to_bob, 180, "b"), kBob);
  CHECK(f.core->parsed_contexts() == 0);
  ReqSpec c = r;
  c.method = "CANCEL";
  c.routes.clear();
  c.extra.clear();
  c.body.clear();
  f.deliver(c.text(), kCaller);
  auto term = f.responses_to(kCaller, 487);
  REQUIRE(term.size() == 1);
  Msg got(term[0]);
  core::ResponseSpec spec;
  spec.status = 487;
  spec.reason = "Request Terminated";
  spec.to_tag = got.m.to().tag();
  Msg orig(invite);
  CHECK(term[0] == core::build_response(orig.m, spec));
  f.deliver(reply_to(to_bob, 487, "b"), kBob);
  f.settle();
  CHECK(f.idle());
}

TEST_CASE("proxy core: on_failure and failover read the request after it was dropped") {
  ProxyFixture f;
  f.resolver.answers["pool.example.net"] = {kBob, kCarol};
  f.policy.decide = [](PolicyRequest&) { return relay_one("sip:svc@pool.example.net"); };
  std::string seen_ruri, seen_subject;
  f.policy.fail = [&](PolicyRequest& req, const FailureInfo&) {
    seen_ruri = std::string(req.message().ruri_text());
    if (const core::Header* h = req.message().find(H::Subject)) seen_subject = std::string(h->value);
    return relay_one("sip:vm@192.0.2.22");
  };
  ReqSpec r;
  r.extra = {"Subject: lunch"};
  f.deliver(r.text(), kCaller);
  CHECK(f.core->parsed_contexts() == 0);
  // 503 from the first server: failover writes the branch again from the request.
  f.deliver(reply_to(f.last_request(kBob, "INVITE"), 503, "b"), kBob);
  std::string to_carol = f.last_request(kCarol, "INVITE");
  CHECK(values(to_carol, H::Subject) == Strings{"lunch"});
  CHECK(Msg(to_carol).m.ruri_text() == "sip:svc@pool.example.net");
  // 486 from the second: the policy's on_failure reads it.
  f.deliver(reply_to(to_carol, 486, "c"), kCarol);
  CHECK(seen_ruri == "sip:bob@example.com");
  CHECK(seen_subject == "lunch");
  std::string vm = f.last_request(kDave, "INVITE");
  CHECK(values(vm, H::Subject) == Strings{"lunch"});
  f.deliver(reply_to(vm, 200, "vm"), kDave);
  CHECK(f.finals_to(kCaller) == Codes{200});
  f.settle();
  CHECK(f.idle());
}
