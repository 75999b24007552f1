// proxy/transaction.cpp: the messages a transaction builds itself, where responses go, names.
#include "proxy/transaction.h"

#include <doctest/doctest.h>

#include "transaction_fixture.h"

using namespace sb;
using namespace sb::proxy;
using namespace sb::proxy::test;

namespace {

std::vector<std::string_view> values(const core::Message& m, core::HeaderId id) {
  std::vector<std::string_view> out;
  m.for_each_value(id, [&](std::string_view v) {
    out.push_back(v);
    return true;
  });
  return out;
}

}  // namespace

TEST_CASE("build_ack: §17.1.1.3 fields from the request, To from the response") {
  Req r = downstream();
  r.cseq = 42;
  r.extra = "Route: <sip:p2.example.com;lr>\r\nRoute: <sip:p3.example.com;lr>\r\n"
            "Contact: <sip:alice@192.0.2.10>\r\nContent-Type: application/sdp\r\n";
  Msg req(r.text());
  Msg resp(response_to(req.text, 486, "callee-tag"));
  Msg ack(build_ack(req.m, resp.m));

  CHECK(ack.m.is_request());
  CHECK(ack.m.method() == core::Method::Ack);
  CHECK(ack.m.ruri_text() == "sip:bob@192.0.2.20");
  // Only our Via: the ACK is hop-by-hop.
  CHECK(ack.m.via_count() == 1);
  CHECK(ack.m.top_via().branch == "z9hG4bKsb0.1");
  CHECK(ack.m.top_via().sent_by == "198.51.100.1:5060");
  CHECK(ack.m.call_id() == req.m.call_id());
  CHECK(ack.m.cseq().number == 42);
  CHECK(ack.m.cseq().method == core::Method::Ack);
  CHECK(ack.m.from().tag() == "ft1");
  CHECK(ack.m.to().tag() == "callee-tag");
  CHECK(values(ack.m, core::HeaderId::Route) ==
        std::vector<std::string_view>{"<sip:p2.example.com;lr>", "<sip:p3.example.com;lr>"});
  CHECK(ack.m.max_forwards() == 70);
  CHECK(ack.m.content_length() == 0);
  CHECK(ack.m.find(core::HeaderId::Contact) == nullptr);
  CHECK(ack.m.find(core::HeaderId::ContentType) == nullptr);
}

TEST_CASE("build_cancel: §9.1 fields, To of the request, CSeq method CANCEL") {
  Req r = downstream();
  r.cseq = 7;
  r.extra = "Route: <sip:p2.example.com;lr>\r\n";
  Msg req(r.text());
  Msg cancel(build_cancel(req.m));
  CHECK(cancel.m.method() == core::Method::Cancel);
  CHECK(cancel.m.ruri_text() == req.m.ruri_text());
  CHECK(cancel.m.via_count() == 1);
  CHECK(cancel.m.top_via().branch == "z9hG4bKsb0.1");
  CHECK(cancel.m.cseq().number == 7);
  CHECK(cancel.m.cseq().method_text == "CANCEL");
  CHECK(cancel.m.to().tag().empty());
  CHECK(cancel.m.from().tag() == "ft1");
  CHECK(values(cancel.m, core::HeaderId::Route) ==
        std::vector<std::string_view>{"<sip:p2.example.com;lr>"});
}

TEST_CASE("response_destination: §18.2.2 and RFC 3581") {
  SUBCASE("UDP without rport: source address, sent-by port") {
    Req r;
    r.sent_by = "192.0.2.10:5070";
    Msg req(r.text());
    core::Peer to = response_destination(req.m, make_peer("192.0.2.99", 40000));
    CHECK(to.endpoint.to_string() == "192.0.2.99:5070");
  }
  SUBCASE("UDP without a sent-by port: 5060") {
    Req r;
    r.sent_by = "ua.example.com";
    Msg req(r.text());
    core::Peer to = response_destination(req.m, make_peer("192.0.2.99", 40000));
    CHECK(to.endpoint.to_string() == "192.0.2.99:5060");
  }
  SUBCASE("UDP with rport: the source port") {
    Req r;
    r.sent_by = "10.0.0.1:5070";
    r.via_params = ";rport";
    Msg req(r.text());
    core::Peer to = response_destination(req.m, make_peer("192.0.2.99", 40000));
    CHECK(to.endpoint.to_string() == "192.0.2.99:40000");
  }
  SUBCASE("streams: back over the connection") {
    Req r;
    r.transport = "TCP";
    Msg req(r.text());
    core::Peer to = response_destination(req.m, kUpstreamTcp);
    // The same connection; the endpoint is where §18.2.2 reconnects if it has closed: the
    // source IP at the sent-by port.
    CHECK(to.endpoint.to_string() == "192.0.2.10:5060");
    CHECK(to.connection == kUpstreamTcp.connection);
    CHECK(to.protocol == core::Protocol::Tcp);
  }
}

TEST_CASE("state and timer names follow RFC 3261 §17 / RFC 6026") {
  CHECK(state_name(TransactionState::Accepted) == "Accepted");
  CHECK(state_name(TransactionState::Confirmed) == "Confirmed");
  CHECK(timer_name(TimerKind::M) == "M");
  CHECK(timer_name(TimerKind::L) == "L");
  CHECK(is_client_timer(TimerKind::K));
  CHECK_FALSE(is_client_timer(TimerKind::G));
  CHECK(is_client_timer(TimerKind::ClientTransportError));
  CHECK_FALSE(is_client_timer(TimerKind::ServerTransportError));
}
