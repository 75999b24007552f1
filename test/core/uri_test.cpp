// core/uri: SIP/SIPS/tel URI parsing (RFC 3261 §19.1, §25.1; RFC 5118 IPv6 references),
// §19.1.4 comparison and the canonical address-of-record.
#include <doctest/doctest.h>

#include <string>

#include "core/uri.h"

using namespace sb::core;

namespace {

Uri ok(std::string_view text) {
  auto u = parse_uri(text);
  REQUIRE_MESSAGE(u.ok(), text << ": " << (u.ok() ? "" : describe(u.error())));
  return *u;
}

std::string bad(std::string_view text) {
  auto u = parse_uri(text);
  REQUIRE_MESSAGE(!u.ok(), text << " parsed");
  return describe(u.error());
}

bool eq(std::string_view a, std::string_view b) {
  auto x = parse_uri(a), y = parse_uri(b);
  REQUIRE((x.ok() && y.ok()));
  CHECK_MESSAGE(uri_equal(*x, *y) == uri_equal(*y, *x), "symmetry " << a << " / " << b);
  return uri_equal(*x, *y);
}

}  // namespace

TEST_CASE("uri: every part of a SIP URI") {
  Uri u = ok("sip:alice:secretword@atlanta.com:5061;transport=tcp;lr?subject=project&priority=urgent");
  CHECK(u.scheme == Scheme::Sip);
  CHECK(u.scheme_raw == "sip");
  CHECK(u.is_sip());
  CHECK(u.has_user);
  CHECK(u.user == "alice");
  CHECK(u.has_password);
  CHECK(u.password == "secretword");
  CHECK(u.host == "atlanta.com");
  CHECK(u.host_type == HostType::Name);
  CHECK(u.port == 5061);
  CHECK(u.hostport() == "atlanta.com:5061");
  CHECK(u.params == "transport=tcp;lr");
  CHECK(u.param("transport") == std::string_view("tcp"));
  CHECK(u.param("TRANSPORT") == std::string_view("tcp"));
  CHECK(u.param("lr") == std::string_view(""));
  CHECK(u.has_param("lr"));
  CHECK_FALSE(u.has_param("maddr"));
  CHECK(u.headers == "subject=project&priority=urgent");
  CHECK(u.raw.size() == 86);
}

TEST_CASE("uri: minimal forms, schemes and host types") {
  Uri a = ok("sip:example.com");
  CHECK_FALSE(a.has_user);
  CHECK(a.host == "example.com");
  CHECK(a.port == 0);
  CHECK(a.params.empty());
  CHECK(a.hostport() == "example.com");

  Uri s = ok("SIPS:Bob@Biloxi.Example.COM");
  CHECK(s.scheme == Scheme::Sips);
  CHECK(s.scheme_raw == "SIPS");
  CHECK(s.user == "Bob");

  Uri v4 = ok("sip:alice@192.0.2.4:5060");
  CHECK(v4.host_type == HostType::IPv4);
  CHECK(v4.host == "192.0.2.4");
  CHECK(v4.port == 5060);

  Uri under = ok("sip:_sip._udp.example.com");
  CHECK(under.host_type == HostType::Name);

  Uri trailing_dot = ok("sip:example.com.");
  CHECK(trailing_dot.host == "example.com.");

  Uri phone = ok("sip:+1-212-555-1212:1234@gateway.com;user=phone");
  CHECK(phone.user == "+1-212-555-1212");
  CHECK(phone.password == "1234");
  CHECK(phone.param("user") == std::string_view("phone"));
}

TEST_CASE("uri: IPv6 references (RFC 5118)") {
  Uri u = ok("sip:alice@[2001:db8::10]:5070;transport=tcp");
  CHECK(u.host_type == HostType::IPv6);
  CHECK(u.host == "2001:db8::10");
  CHECK(u.port == 5070);
  CHECK(u.hostport() == "[2001:db8::10]:5070");
  CHECK(u.param("transport") == std::string_view("tcp"));

  CHECK(ok("sip:[2001:db8::10]").hostport() == "[2001:db8::10]");
  CHECK(ok("sip:[2001:db8::10:5070]").port == 0);             // ambiguous: all address
  CHECK(ok("sip:[::1]").host == "::1");
  CHECK(ok("sip:[::ffff:192.0.2.10]").host == "::ffff:192.0.2.10");
  CHECK(ok("sip:[2001:db8:::192.0.2.1]").host_type == HostType::IPv6);  // §4.10 tolerated
  CHECK(ok("sip:[2001:db8::192.0.2.1]").host_type == HostType::IPv6);
  CHECK(ok("sip:u@[1:2:3:4:5:6:7:8]").host == "1:2:3:4:5:6:7:8");

  CHECK(bad("sip:2001:db8::10").find("bad") != std::string::npos);  // RFC 5118 §4.2
  CHECK(bad("sip:[2001:db8::10").find("unterminated IPv6") != std::string::npos);
  CHECK(bad("sip:[]").find("IPv6") != std::string::npos);
  CHECK(bad("sip:[2001:db8::1g]").find("IPv6") != std::string::npos);
  CHECK(bad("sip:[12345::1]").find("IPv6") != std::string::npos);
  CHECK(bad("sip:[::1.2.3.256]").find("IPv6") != std::string::npos);
  CHECK(bad("sip:[::1]x").find("junk") != std::string::npos);
}

TEST_CASE("uri: the user part may hold ';', '?', '/' and escapes") {
  // RFC 4475 §3.1.1.2 and §3.1.1.9.
  Uri u = ok("sip:user;par=u%40example.net@example.com;lr");
  CHECK(u.user == "user;par=u%40example.net");
  CHECK(u.host == "example.com");
  CHECK(u.params == "lr");
  Uri q = ok("sip:a?b/c,d@example.com?h=v");
  CHECK(q.user == "a?b/c,d");
  CHECK(q.headers == "h=v");
  Uri esc = ok("sip:%61lice@example.com");
  CHECK(esc.user == "%61lice");  // kept escaped
}

TEST_CASE("uri: params and headers") {
  Uri u = ok("sip:host;maddr=239.255.255.1;ttl=15;method=REGISTER;x;y=1?to=sip:bob%40biloxi.com&a=b");
  CHECK(u.param("maddr") == std::string_view("239.255.255.1"));
  CHECK(u.param("ttl") == std::string_view("15"));
  CHECK(u.param("method") == std::string_view("REGISTER"));
  CHECK(u.param("x") == std::string_view(""));
  CHECK(u.param("y") == std::string_view("1"));
  CHECK_FALSE(u.param("to").has_value());  // a header, not a param
  CHECK(u.headers == "to=sip:bob%40biloxi.com&a=b");
  // Escaped parameter names are found by their decoded name (§19.1.4).
  Uri e = ok("sip:host;%6C%72;n%61me=v%61lue");
  CHECK(e.has_param("lr"));
  CHECK(e.param("name") == std::string_view("v%61lue"));
  // IPv6 in a param value.
  CHECK(ok("sip:host;maddr=[2001:db8::1]").param("maddr") == std::string_view("[2001:db8::1]"));
  // Every parameter needs a name.
  CHECK(bad("sip:host;;lr").find("empty URI parameter") != std::string::npos);
  CHECK(bad("sip:host;lr;").find("empty URI parameter") != std::string::npos);
  CHECK(bad("sip:host;=x").find("empty URI parameter") != std::string::npos);
}

TEST_CASE("uri: tel and other schemes") {
  Uri t = ok("tel:+1-201-555-0123;phone-context=example.com");
  CHECK(t.scheme == Scheme::Tel);
  CHECK_FALSE(t.is_sip());
  CHECK(t.user == "+1-201-555-0123");
  CHECK(t.param("phone-context") == std::string_view("example.com"));
  CHECK(bad("tel:;x=1").find("tel") != std::string::npos);

  Uri o = ok("nobodyKnowsThisScheme:totallyopaquecontent");
  CHECK(o.scheme == Scheme::Other);
  CHECK(o.scheme_raw == "nobodyKnowsThisScheme");
  CHECK(o.opaque == "totallyopaquecontent");
  CHECK(ok("soap.beep://192.0.2.103:3002").opaque == "//192.0.2.103:3002");
  CHECK(ok("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6").scheme == Scheme::Other);
  CHECK(bad("mailto:").find("empty") != std::string::npos);
}

TEST_CASE("uri: malformed URIs are errors, never crashes") {
  CHECK(bad("").find("empty") != std::string::npos);
  CHECK(bad("<sip:user@example.com>").find("scheme") != std::string::npos);  // RFC 4475 ltgtruri
  CHECK(bad("sip").find("scheme") != std::string::npos);
  CHECK(bad("1sip:host").find("scheme") != std::string::npos);
  CHECK(bad("sip:").find("host") != std::string::npos);
  CHECK(bad("sip:user@").find("host") != std::string::npos);
  CHECK(bad("sip:@host").find("user") != std::string::npos);
  CHECK(bad("sip:host:").find("port") != std::string::npos);
  CHECK(bad("sip:host:0").find("port") != std::string::npos);
  CHECK(bad("sip:host:65536").find("port") != std::string::npos);
  CHECK(bad("sip:host:5060x").find("junk") != std::string::npos);
  CHECK(bad("sip:user@example.com; lr").find("illegal") != std::string::npos);  // lwsruri
  CHECK(bad("sip:us er@host").find("illegal") != std::string::npos);
  CHECK(bad("sip:user@host\"").find("illegal") != std::string::npos);
  CHECK(bad("sip:user@ho\x80st").find("illegal") != std::string::npos);
  CHECK(bad("sip:%4@host").find("escape") != std::string::npos);
  CHECK(bad("sip:%zz@host").find("escape") != std::string::npos);
  CHECK(bad("sip:user@host%").find("escape") != std::string::npos);
  CHECK(bad("sip:user@256.1.1.1").find("host") != std::string::npos);
  CHECK(bad("sip:user@1.2.3").find("host") != std::string::npos);
  CHECK(bad("sip:user@12345").find("host") != std::string::npos);
  // IPv4 hosts: four parts of 1-3 digits, each at most 255.
  CHECK(bad("sip:user@1..2.3").find("host") != std::string::npos);
  CHECK(bad("sip:user@.1.2.3").find("host") != std::string::npos);
  CHECK(bad("sip:user@1.2.3.").find("host") != std::string::npos);
  CHECK(bad("sip:user@1.2.3.4.5").find("host") != std::string::npos);
  CHECK(bad("sip:user@1.2.3.0255").find("host") != std::string::npos);
  CHECK(bad("sip:user@1.2.300.4").find("host") != std::string::npos);
  CHECK(ok("sip:user@255.255.255.255").host_type == HostType::IPv4);
  CHECK(ok("sip:user@010.0.0.001").host_type == HostType::IPv4);
  CHECK(ok("sip:user@[::ffff:192.0.2.1]").host_type == HostType::IPv6);
  CHECK(bad("sip:user@[::ffff:192.0.2]").find("IPv6") != std::string::npos);
  CHECK(bad("sip:user@-host").find("host") != std::string::npos);
  CHECK(bad("sip:user@host/path").find("junk") != std::string::npos);
}

TEST_CASE("uri: unescape") {
  std::string out;
  CHECK(unescape("I%20have%20spaces", out));
  CHECK(out == "I have spaces");
  out.clear();
  CHECK(unescape("null-%00-null", out));
  CHECK(out == std::string("null-\0-null", 11));
  out.clear();
  CHECK_FALSE(unescape("%4", out));
  CHECK_FALSE(unescape("%g0", out));
  CHECK_FALSE(unescape("abc%", out));
}

TEST_CASE("uri: RFC 3261 §19.1.4 equivalent URIs") {
  CHECK(eq("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"));
  CHECK(eq("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"));
  CHECK(eq("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"));
  CHECK(eq("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"));
  CHECK(eq("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
           "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"));
  CHECK(eq("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
           "sip:alice@atlanta.com?priority=urgent&subject=project%20x"));
}

TEST_CASE("uri: RFC 3261 §19.1.4 non-equivalent URIs") {
  CHECK_FALSE(eq("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"));
  CHECK_FALSE(eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
  CHECK_FALSE(eq("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"));
  CHECK_FALSE(eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"));
  CHECK_FALSE(eq("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"));
  CHECK_FALSE(eq("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"));
  // The intransitive case: each equals sip:carol@chicago.com, not each other.
  CHECK_FALSE(eq("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"));
}

TEST_CASE("uri: more comparison rules") {
  CHECK_FALSE(eq("sip:alice@atlanta.com", "sips:alice@atlanta.com"));
  CHECK_FALSE(eq("sip:alice@atlanta.com", "sip:atlanta.com"));
  CHECK_FALSE(eq("sip:alice:pw@atlanta.com", "sip:alice@atlanta.com"));
  CHECK_FALSE(eq("sip:alice:pw@atlanta.com", "sip:alice:PW@atlanta.com"));
  // An escaped reserved character is not the character itself.
  CHECK_FALSE(eq("sip:a%3Bb@host", "sip:a;b@host"));
  CHECK(eq("sip:a%3bb@host", "sip:a%3Bb@host"));
  CHECK(eq("sip:host;maddr=239.255.255.1", "sip:host;MADDR=239.255.255.1"));
  CHECK_FALSE(eq("sip:host;maddr=239.255.255.1", "sip:host"));
  CHECK_FALSE(eq("sip:host;ttl=1", "sip:host"));
  CHECK_FALSE(eq("sip:host;method=INVITE", "sip:host"));
  CHECK_FALSE(eq("sip:host;user=phone", "sip:host"));
  CHECK(eq("sip:host;lr", "sip:host"));
  // Header names are case-insensitive, values are not.
  CHECK(eq("sip:host?Subject=x", "sip:host?subject=x"));
  CHECK_FALSE(eq("sip:host?subject=X", "sip:host?subject=x"));
  CHECK_FALSE(eq("sip:host?a=1", "sip:host?a=1&b=2"));
  CHECK(eq("sip:[2001:DB8::1]", "sip:[2001:db8::1]"));
  CHECK(eq("tel:+1-555", "tel:+1-555"));
  CHECK(eq("urn:x", "URN:x"));
  CHECK_FALSE(eq("urn:x", "urn:X"));
  // Hostile parameter counts stay linear: compared as written.
  std::string many = "sip:host";
  for (int i = 0; i < 100; ++i) many += ";p" + std::to_string(i) + "=v";
  CHECK(eq(many, many));
  CHECK_FALSE(eq(many, many + ";x=1"));
}

TEST_CASE("uri: canonical_aor") {
  CHECK(canonical_aor(ok("sip:alice@example.com")) == "sip:alice@example.com");
  CHECK(canonical_aor(ok("SIP:Alice@Example.COM:5060;transport=tcp?x=y")) ==
        "sip:Alice@example.com");
  CHECK(canonical_aor(ok("sips:bob@Biloxi.com")) == "sips:bob@biloxi.com");
  CHECK(canonical_aor(ok("sip:%75se%72@example.com")) == "sip:user@example.com");
  CHECK(canonical_aor(ok("sip:null-%00-null@example.com")) == "sip:null-%00-null@example.com");
  CHECK(canonical_aor(ok("sip:a%3bb@example.com")) == "sip:a%3Bb@example.com");
  CHECK(canonical_aor(ok("sip:+19725552222@gw1.example.net;unknownparam")) ==
        "sip:+19725552222@gw1.example.net");
  CHECK(canonical_aor(ok("sip:example.com")) == "sip:example.com");
  CHECK(canonical_aor(ok("sip:u@[2001:DB8::1]:5060")) == "sip:u@[2001:db8::1]");
  CHECK(canonical_aor(ok("tel:+1555")).empty());
  CHECK(canonical_aor(ok("isbn:2983792873")).empty());
  // Equal URIs give equal AORs.
  CHECK(canonical_aor(ok("sip:%61lice@atlanta.com")) ==
        canonical_aor(ok("sip:alice@AtLanTa.CoM;transport=tcp")));
}

TEST_CASE("uri: find_param on header parameter lists") {
  std::string_view p = " tag = 1918181833n ; foo ;\r\n  bar=\"a;b\" ;q=0.5";
  CHECK(find_param(p, "tag") == std::string_view("1918181833n"));
  CHECK(find_param(p, "foo") == std::string_view(""));
  CHECK(find_param(p, "bar") == std::string_view("\"a;b\""));
  CHECK(find_param(p, "q") == std::string_view("0.5"));
  CHECK_FALSE(find_param(p, "b").has_value());
  CHECK_FALSE(find_param("", "tag").has_value());
  CHECK_FALSE(find_param(";;;", "tag").has_value());
  CHECK(find_param("a;;tag=x", "tag") == std::string_view("x"));
}
