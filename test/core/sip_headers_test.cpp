// core/sip_headers: Via, name-addr/addr-spec, Contact, CSeq, auth headers, scalars and the
// list splitter (RFC 3261 §7.3.1, §20, §25.1).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/sip_headers.h"

using namespace sb::core;

namespace {

Via via(std::string_view v) {
  auto r = parse_via(v);
  REQUIRE_MESSAGE(r.ok(), v << ": " << (r.ok() ? "" : describe(r.error())));
  return *r;
}
std::string via_err(std::string_view v) {
  auto r = parse_via(v);
  REQUIRE_MESSAGE(!r.ok(), v << " parsed");
  CHECK(r.error().header == "Via");
  return describe(r.error());
}
NameAddr na(std::string_view v) {
  auto r = parse_name_addr(v);
  REQUIRE_MESSAGE(r.ok(), v << ": " << (r.ok() ? "" : describe(r.error())));
  return *r;
}
std::string na_err(std::string_view v) {
  auto r = parse_name_addr(v);
  REQUIRE_MESSAGE(!r.ok(), v << " parsed");
  return r.error().reason;
}
std::vector<std::string> split(std::string_view v) {
  std::vector<std::string> out;
  for_each_list_element(v, [&](std::string_view e) {
    out.emplace_back(e);
    return true;
  });
  return out;
}

}  // namespace

TEST_CASE("via: the usual forms") {
  Via v = via("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds");
  CHECK(v.protocol == "SIP/2.0");
  CHECK(v.transport == "UDP");
  CHECK(v.host == "pc33.atlanta.com");
  CHECK(v.port == 0);
  CHECK(v.sent_by == "pc33.atlanta.com");
  CHECK(v.branch == "z9hG4bK776asdhds");
  CHECK(v.rfc3261_branch());
  CHECK(v.params == "branch=z9hG4bK776asdhds");
  CHECK_FALSE(v.has_rport);

  Via p = via("SIP/2.0/TCP 192.0.2.1:5061;received=192.0.2.7;rport=5062;maddr=224.2.0.1;ttl=16;branch=z9hG4bKx");
  CHECK(p.host == "192.0.2.1");
  CHECK(p.port == 5061);
  CHECK(p.sent_by == "192.0.2.1:5061");
  CHECK(p.received == "192.0.2.7");
  CHECK(p.has_rport);
  CHECK(p.rport == "5062");
  CHECK(p.maddr == "224.2.0.1");
  CHECK(p.branch == "z9hG4bKx");
  CHECK(p.param("ttl") == std::string_view("16"));

  Via r = via("SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bKabc");  // RFC 3581 request form
  CHECK(r.has_rport);
  CHECK(r.rport.empty());
  CHECK(r.branch == "z9hG4bKabc");

  Via ws = via("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKasudf");
  CHECK(ws.transport == "WSS");
  CHECK(ws.host == "df7jal23ls0d.invalid");

  Via nob = via("SIP/2.0/UDP iftgw.example.com");  // RFC 2543: no params
  CHECK(nob.branch.empty());
  CHECK(nob.params.empty());
  CHECK_FALSE(nob.rfc3261_branch());
  CHECK_FALSE(via("SIP/2.0/UDP h;branch=z9hG4bK").rfc3261_branch());
  CHECK_FALSE(via("SIP/2.0/UDP h;branch=1234567890").rfc3261_branch());
}

TEST_CASE("via: LWS around '/', ':', ';' and '=' and folded lines") {
  Via v = via("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw");
  CHECK(v.transport == "UDP");
  CHECK(v.host == "192.0.2.2");
  CHECK(v.branch == "390skdjuw");
  Via w = via("SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8");
  CHECK(w.transport == "TCP");
  CHECK(w.host == "spindle.example.com");
  CHECK(w.branch == "z9hG4bK9ikj8");
  Via x = via("SIP/2.0/UDP host : 5070 ; branch = z9hG4bKa ; rport");
  CHECK(x.port == 5070);
  CHECK(x.branch == "z9hG4bKa");
  CHECK(x.has_rport);
  CHECK(via("sip/2.0/udp host").transport == "udp");  // protocol name is case-insensitive
}

TEST_CASE("via: IPv6 sent-by and received (RFC 5118)") {
  Via v = via("SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111");
  CHECK(v.host == "2001:db8::9:1");
  CHECK(v.host_is_ipv6);
  CHECK(v.port == 6050);
  CHECK(v.sent_by == "[2001:db8::9:1]:6050");
  CHECK(via("SIP/2.0/UDP [::ffff:192.0.2.10]:19823").host == "::ffff:192.0.2.10");
  CHECK(via("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255]").received ==
        "[2001:db8::9:255]");
  CHECK(via("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=b").received ==
        "2001:db8::9:255");
  via_err("SIP/2.0/UDP [2001:db8::9:1");
  via_err("SIP/2.0/UDP []");
  via_err("SIP/2.0/UDP [zz::1]");
}

TEST_CASE("via: the first of each parameter wins; unknown ones are kept") {
  Via v = via("SIP/2.0/UDP h;branch=z9hG4bK1;branch=z9hG4bK2;x-foo=\"a;b\";flag");
  CHECK(v.branch == "z9hG4bK1");
  CHECK(v.param("x-foo") == std::string_view("\"a;b\""));
  CHECK(v.param("flag") == std::string_view(""));
  CHECK(v.param("BRANCH") == std::string_view("z9hG4bK1"));
}

TEST_CASE("via: faults name the Via") {
  CHECK(via_err("") == "bad Via: missing sent-protocol");
  CHECK(via_err("SIP/2.0/UDP") == "bad Via: missing sent-by");
  CHECK(via_err("SIP/2.0/UDP ") == "bad Via: missing sent-by");
  CHECK(via_err("SIP/2.0 host") == "bad Via: malformed sent-protocol");
  CHECK(via_err("SIP/2.0/ host") == "bad Via: missing sent-by");  // "host" is the transport
  CHECK(via_err("SIP2.0/UDP host") == "bad Via: malformed sent-protocol");
  CHECK(via_err("SIP/2.0/UDPhost").find("sent-by") != std::string::npos);
  CHECK(via_err("SIP/2.0/UDP host:0") == "bad Via: bad sent-by port");
  CHECK(via_err("SIP/2.0/UDP host:99999") == "bad Via: bad sent-by port");
  CHECK(via_err("SIP/2.0/UDP host:") == "bad Via: bad sent-by port");
  CHECK(via_err("SIP/2.0/UDP host junk") == "bad Via: junk after sent-by");
  CHECK(via_err("SIP/2.0/UDP 192.0.2.15;;") == "bad Via: empty or malformed parameter");
  CHECK(via_err("SIP/2.0/UDP h;branch") == "bad Via: empty branch");
  CHECK(via_err("SIP/2.0/UDP h;branch=") == "bad Via: empty or malformed parameter");
  CHECK(via_err("SIP/2.0/UDP h;rport=x") == "bad Via: bad rport");
  CHECK(via_err("SIP/2.0/UDP h;rport=70000") == "bad Via: bad rport");
  CHECK(via_err("SIP/2.0/UDP h;ttl=256") == "bad Via: bad ttl");
  CHECK(via_err("SIP/2.0/UDP h;received") == "bad Via: empty received");
  CHECK(via_err("SIP/2.0/UDP h;x=\"open") == "bad Via: empty or malformed parameter");
  CHECK(via_err("SIP/2.0/UDP h;x=a b") == "bad Via: empty or malformed parameter");
  CHECK(via_err("SIP/3.0/UDP h") == "bad Via: unsupported protocol");
  CHECK(via_err("HTTP/2.0/UDP h") == "bad Via: unsupported protocol");
}

TEST_CASE("via: the sent-by stays readable when the rest is bad") {
  Via v;
  Status st = parse_via("SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw", v);
  CHECK_FALSE(st.ok());
  CHECK(v.host == "c.example.com");
  CHECK(v.branch == "z9hG4bKkdjuw");
  st = parse_via("SIP/2.0/UDP 192.0.2.15;;", v);
  CHECK_FALSE(st.ok());
  CHECK(v.host == "192.0.2.15");
  st = parse_via("SIP/2.0/UDP", v);
  CHECK_FALSE(st.ok());
  CHECK(v.host.empty());
}

TEST_CASE("name-addr: with and without display names") {
  NameAddr a = na("\"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=9fxced76sl");
  CHECK(a.display == "Alice Liddell");
  CHECK(a.angle);
  CHECK(a.uri_text == "sip:alice@atlanta.example.com");
  CHECK(a.uri.user == "alice");
  CHECK(a.params == "tag=9fxced76sl");
  CHECK(a.tag() == "9fxced76sl");

  NameAddr b = na("Bob <sip:bob@biloxi.example.com>");
  CHECK(b.display == "Bob");
  CHECK(b.tag().empty());
  CHECK(b.params.empty());

  NameAddr c = na("<sip:carol@chicago.com>");
  CHECK(c.display.empty());
  CHECK(c.angle);

  NameAddr t = na("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>");
  CHECK(t.display == "token1~` token2'+_ token3*%!.-");

  NameAddr d = na("caller<sip:caller@example.com>;tag=323");  // no LWS before <
  CHECK(d.display == "caller");
  CHECK(d.tag() == "323");

  NameAddr e = na("\"\" <sip:e@example.com>");
  CHECK(e.display.empty());
  CHECK(e.angle);

  // Unquoted UTF-8 is not in the grammar, but delimits nothing: read liberally.
  NameAddr u = na("J\xC3\xB6rg M\xC3\xBCller <sip:joerg@example.com>;tag=1");
  CHECK(u.display == "J\xC3\xB6rg M\xC3\xBCller");
  CHECK(u.tag() == "1");
}

TEST_CASE("name-addr: quoted display names with escapes and specials") {
  NameAddr a = na(R"("J Rosenberg \\\""       <sip:jdrosen@example.com>)");
  CHECK(a.display == R"(J Rosenberg \\\")");
  NameAddr b = na("\"Bell, Alexander\" <sip:a.g.bell@example.com>;tag=433423");
  CHECK(b.display == "Bell, Alexander");
  CHECK(b.tag() == "433423");
  NameAddr c = na("\"<sip:not-this@x>\" <sip:this@example.com>");
  CHECK(c.uri.user == "this");
  NameAddr u = na("\"\xD0\x98\xD0\xB2\xD0\xB0\xD0\xBD\" <sip:ivan@example.com>");  // UTF-8
  CHECK(u.display.size() == 8);
  CHECK(na_err("\"Mr. J. User <sip:j.user@example.com>").find("quoted") != std::string::npos);
  CHECK(na_err("\"a\\") .find("quoted") != std::string::npos);
  CHECK(na_err("\"bad\x01\" <sip:x@y>").find("quoted") != std::string::npos);
  CHECK(na_err("\"a\" sip:x@y").find("<URI>") != std::string::npos);
}

TEST_CASE("name-addr: addr-spec, header params vs URI params") {
  NameAddr a = na("sip:+19725552222@gw1.example.net;unknownparam");
  CHECK_FALSE(a.angle);
  CHECK(a.uri_text == "sip:+19725552222@gw1.example.net");
  CHECK(a.params == "unknownparam");
  CHECK(a.uri.params.empty());
  NameAddr b = na("<sip:+19725552222@gw1.example.net;unknownparam>");
  CHECK(b.params.empty());
  CHECK(b.uri.params == "unknownparam");
  NameAddr c = na("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
  CHECK(c.uri.host == "chair-dnrc.example.com");
  CHECK(c.tag() == "1918181833n");
  NameAddr d = na("sip:+16505552222@ss1.example.net;user=phone");
  CHECK(d.param("user") == std::string_view("phone"));
  CHECK_FALSE(d.uri.has_param("user"));
  NameAddr e = na("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>");
  CHECK(e.uri.headers == "Route=%3Csip:sip.example.com%3E");
  NameAddr f = na("isbn:2983792873");
  CHECK(f.uri.scheme == Scheme::Other);
  NameAddr g = na("<sip:a@b>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\";reg-id=1");
  CHECK(g.param("+sip.instance") == std::string_view("\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\""));
  CHECK(g.param("reg-id") == std::string_view("1"));
  NameAddr h = na("sip:a@b;x=\"<q>\"");
  CHECK(h.param("x") == std::string_view("\"<q>\""));
}

TEST_CASE("name-addr: faults") {
  CHECK(na_err("").find("empty") != std::string::npos);
  CHECK(na_err("   ").find("empty") != std::string::npos);
  CHECK(na_err("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").find("display") !=
        std::string::npos);
  CHECK(na_err("< sip:t.watson@example.org >").find("whitespace") != std::string::npos);
  CHECK(na_err("<sip:x@y").find("'>'") != std::string::npos);
  CHECK(na_err("<>").find("empty URI") != std::string::npos);
  CHECK(na_err("<sip:x@y> junk").find("junk") != std::string::npos);
  CHECK(na_err("sip:x@y junk").find("junk") != std::string::npos);
  CHECK(na_err("<sip:x@y>;").find("parameter") != std::string::npos);
  CHECK(na_err("<sip:x@y>;;;;").find("parameter") != std::string::npos);
  CHECK(na_err("<sip:x@y>;tag=").find("parameter") != std::string::npos);
  CHECK(na_err("sip:user@example.com?Route=%3Csip:sip.example.com%3E").find("<>") !=
        std::string::npos);
  CHECK(na_err("<sip:x@>").find("host") != std::string::npos);
  CHECK(na_err("sip:x@y,z").find("<>") != std::string::npos);
}

TEST_CASE("contact: '*', q and expires") {
  auto star = parse_contact("*");
  REQUIRE(star.ok());
  CHECK(star->star);
  CHECK(parse_contact("  *  ")->star);

  auto c = parse_contact("<sip:alice@192.0.2.4>;q=0.7;expires=3600");
  REQUIRE(c.ok());
  CHECK_FALSE(c->star);
  CHECK(c->q1000 == 700);
  CHECK(c->expires == 3600u);
  CHECK(c->addr.uri.host == "192.0.2.4");

  CHECK(parse_contact("<sip:a@b>")->q1000 == 1000);
  CHECK_FALSE(parse_contact("<sip:a@b>")->expires.has_value());
  CHECK(parse_contact("<sip:a@b>;q=1")->q1000 == 1000);
  CHECK(parse_contact("<sip:a@b>;q=1.000")->q1000 == 1000);
  CHECK(parse_contact("<sip:a@b>;q=0")->q1000 == 0);
  CHECK(parse_contact("<sip:a@b>;q=0.001")->q1000 == 1);
  CHECK(parse_contact("<sip:a@b> ; q = 0.33")->q1000 == 330);
  CHECK(parse_contact("<sip:a@b>;expires=0")->expires == 0u);
  CHECK(parse_contact("<sip:a@b>;expires=4294967295")->expires == 4294967295u);
  // Overlarge or malformed expires reads as absent (RFC 4475 §3.1.2.4).
  CHECK_FALSE(parse_contact("<sip:a@b>;expires=280297596632815")->expires.has_value());
  CHECK_FALSE(parse_contact("<sip:a@b>;expires=soon")->expires.has_value());
  for (const char* q : {"1.5", "2", "0.1234", "-1", "abc", "1.001", ".5"}) {
    CAPTURE(q);
    auto r = parse_contact(std::string("<sip:a@b>;q=") + q);
    REQUIRE_FALSE(r.ok());
    CHECK(describe(r.error()) == "bad Contact: bad q value");
  }
  CHECK(parse_contact("<sip:a@b>;q=0.")->q1000 == 0);
}

TEST_CASE("contact: faults name the Contact") {
  auto r = parse_contact("sip:user@example.com?Route=%3Csip:sip.example.com%3E");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().status == 400);
  CHECK(describe(r.error()).find("bad Contact: ") == 0);
  CHECK(describe(parse_contact("\"Joe\" <sip:joe@example.org>;;;;").error()).find("bad Contact") == 0);
  CHECK_FALSE(parse_contact("").ok());
  CHECK_FALSE(parse_contact("**").ok());
}

TEST_CASE("cseq") {
  auto c = parse_cseq("4711 INVITE");
  REQUIRE(c.ok());
  CHECK(c->number == 4711);
  CHECK(c->method == Method::Invite);
  CHECK(c->method_text == "INVITE");
  CHECK(parse_cseq("0009\r\n  INVITE")->number == 9);
  CHECK(parse_cseq("  1   REGISTER  ")->method == Method::Register);
  CHECK(parse_cseq("2147483647 ACK")->number == 2147483647u);
  auto other = parse_cseq("1 RE%47IST%45R");
  REQUIRE(other.ok());
  CHECK(other->method == Method::Other);
  CHECK(other->method_text == "RE%47IST%45R");
  for (const char* bad : {"", "INVITE", "1", "1INVITE", "-1 INVITE", "2147483648 INVITE",
                          "36893488147419103232 REGISTER", "1 INV ITE", "1 INV,ITE", "x1 INVITE"}) {
    CAPTURE(bad);
    auto r = parse_cseq(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().header == "CSeq");
  }
}

TEST_CASE("auth headers: params with quoted commas and escapes") {
  auto a = parse_auth(
      "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", "
      "uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", "
      "response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", "
      "algorithm=SHA-256");
  REQUIRE(a.ok());
  CHECK(a->scheme == "Digest");
  CHECK(a->param("username") == std::string_view("bob"));
  CHECK(a->param("REALM") == std::string_view("biloxi.com"));
  CHECK(a->param("qop") == std::string_view("auth"));
  CHECK(a->param("nc") == std::string_view("00000001"));
  CHECK(a->param("algorithm") == std::string_view("SHA-256"));
  CHECK(a->param("uri") == std::string_view("sip:bob@biloxi.com"));
  CHECK_FALSE(a->param("stale").has_value());

  auto c = parse_auth("Digest realm=\"a, b\", qop=\"auth,auth-int\", nonce=\"x\\\"y\"");
  REQUIRE(c.ok());
  CHECK(c->param("realm") == std::string_view("a, b"));
  CHECK(c->param("qop") == std::string_view("auth,auth-int"));
  CHECK(c->param("nonce") == std::string_view("x\\\"y"));

  auto u = parse_auth("NoOneKnowsThisScheme opaque-data=here");
  REQUIRE(u.ok());
  CHECK(u->scheme == "NoOneKnowsThisScheme");
  CHECK(u->param("opaque-data") == std::string_view("here"));
  CHECK(parse_auth("Basic")->params.empty());
  CHECK_FALSE(parse_auth("").ok());
  CHECK_FALSE(parse_auth(" =x").ok());
  CHECK_FALSE(parse_auth("Dig\"est\" x=1").ok());
}

TEST_CASE("scalars: Max-Forwards and delta-seconds") {
  CHECK(*parse_max_forwards("70") == 70u);
  CHECK(*parse_max_forwards(" 0068 ") == 68u);
  CHECK(*parse_max_forwards("0") == 0u);
  CHECK(*parse_max_forwards("255") == 255u);
  CHECK(parse_max_forwards("256").error().header == "Max-Forwards");
  CHECK_FALSE(parse_max_forwards("300").ok());
  CHECK_FALSE(parse_max_forwards("-1").ok());
  CHECK_FALSE(parse_max_forwards("").ok());
  CHECK_FALSE(parse_max_forwards("7 0").ok());
  CHECK(*parse_delta_seconds("3600", "bad") == 3600u);
  CHECK(*parse_delta_seconds("4294967295", "bad") == 4294967295u);
  CHECK(std::string(parse_delta_seconds("4294967296", "too big").error().reason) == "too big");
  CHECK_FALSE(parse_delta_seconds("1e3", "x").ok());
}

TEST_CASE("list splitting: commas inside quotes and <> do not split") {
  CHECK(split("a, b ,c") == std::vector<std::string>{"a", "b", "c"});
  CHECK(split("\"Bell, Alexander\" <sip:a@b>, <sip:c@d;x=1,2>") ==
        std::vector<std::string>{"\"Bell, Alexander\" <sip:a@b>", "<sip:c@d;x=1,2>"});
  CHECK(split("\"a\\\", b\" <sip:x@y>, z") ==
        std::vector<std::string>{"\"a\\\", b\" <sip:x@y>", "z"});
  CHECK(split("SIP/2.0/UDP a;branch=1 ,\r\n SIP/2.0/UDP b") ==
        std::vector<std::string>{"SIP/2.0/UDP a;branch=1", "SIP/2.0/UDP b"});
  CHECK(split("") == std::vector<std::string>{""});
  CHECK(split(",,") == std::vector<std::string>{"", "", ""});
  CHECK(split("a,") == std::vector<std::string>{"a", ""});
  // Unbalanced quotes or '<' swallow the rest instead of splitting inside it.
  CHECK(split("\"a, b") == std::vector<std::string>{"\"a, b"});
  CHECK(split("<a, b") == std::vector<std::string>{"<a, b"});
  int calls = 0;
  for_each_list_element("a,b,c", [&](std::string_view) { return ++calls < 2; });
  CHECK(calls == 2);
}
