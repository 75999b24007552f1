// RFC 4475 (SIP torture tests) and RFC 5118 (IPv6 torture tests): every message in
// ../shared/conformance/rfc4475 is parsed and checked against the RFC's expectation for the
// parser (cases.json: "accept"/"strict"/"expected_behaviour"). Where the RFC's answer is a
// proxy decision (416, 420, 483, ...), the message must parse and expose what the proxy needs.
#include <doctest/doctest.h>

#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "core/message.h"
#include "core/sip_headers.h"
#include "core/splice.h"
#include "core/uri.h"
#include "test/core/sip_test_util.h"

using namespace sb::core;
using sb::core::test::torture;
using sb::core::test::values;

namespace {

// What the parser must say about each message. status 0: it parses. Otherwise the error's
// status and the header its reason names (one of `headers`, '|'-separated).
struct Expected {
  int status;
  const char* headers;
};

const std::map<std::string, Expected>& expectations() {
  static const std::map<std::string, Expected> m = {
      // §3.1.1 valid messages
      {"wsinv", {0, ""}}, {"intmeth", {0, ""}}, {"esc01", {0, ""}}, {"escnull", {0, ""}},
      {"esc02", {0, ""}}, {"lwsdisp", {0, ""}}, {"longreq", {0, ""}}, {"dblreq", {0, ""}},
      {"semiuri", {0, ""}}, {"transports", {0, ""}}, {"mpart01", {0, ""}},
      {"unreason", {0, ""}}, {"noreason", {0, ""}},
      // §3.1.2 invalid messages
      {"badinv01", {400, "Via"}},
      {"clerr", {400, "Content-Length"}},
      {"ncl", {400, "Content-Length"}},
      {"scalar02", {400, "CSeq"}},
      {"scalarlg", {400, "CSeq"}},  // a response: the proxy drops what does not parse
      {"quotbal", {400, "To"}},
      {"ltgtruri", {400, "Request-URI"}},
      {"lwsruri", {400, "Request-Line"}},
      {"lwsstart", {400, "Request-Line"}},
      {"trws", {400, "Request-Line"}},
      {"escruri", {400, "Request-URI"}},
      {"baddate", {0, ""}},    // a proxy does not read Date
      {"regbadct", {0, ""}},   // the message parses; parse_contact rejects its Contact
      {"badaspec", {400, "To"}},
      {"baddn", {400, "From"}},
      {"badvers", {505, "Request-Line"}},
      {"mismatch01", {400, "CSeq"}},
      {"mismatch02", {501, "CSeq"}},
      {"bigcode", {400, "Status-Line"}},  // a response: dropped
      // §3.2, §3.3, §3.4: parse; the proxy decides
      {"badbranch", {0, ""}}, {"insuf", {400, "From|To|Call-ID|Max-Forwards"}},
      {"unkscm", {0, ""}}, {"novelsc", {0, ""}}, {"unksm2", {0, ""}}, {"bext01", {0, ""}},
      {"invut", {0, ""}}, {"regaut01", {0, ""}},
      {"multi01", {400, "CSeq|Call-ID|To|From|Max-Forwards"}},
      {"mcl01", {400, "Content-Length"}},
      {"bcast", {0, ""}}, {"zeromf", {0, ""}}, {"cparam01", {0, ""}}, {"cparam02", {0, ""}},
      {"regescrt", {0, ""}}, {"sdp01", {0, ""}}, {"inv2543", {0, ""}},
      // RFC 5118
      {"ipv6-good", {0, ""}}, {"ipv6-bad", {400, "Request-URI"}},
      {"port-ambiguous", {0, ""}}, {"port-unambiguous", {0, ""}},
      {"via-received-param-with-delim", {0, ""}}, {"via-received-param-no-delim", {0, ""}},
      {"ipv6-in-sdp", {0, ""}}, {"mult-ip-in-header", {0, ""}}, {"mult-ip-in-sdp", {0, ""}},
      {"ipv4-mapped-ipv6", {0, ""}}, {"ipv6-bug-abnf-3-colons", {0, ""}},
      {"ipv6-correct-abnf-2-colons", {0, ""}},
  };
  return m;
}

nlohmann::json load_cases() {
  return nlohmann::json::parse(test::read_file(test::torture_dir() + "cases.json"));
}

bool names_one_of(std::string_view header, std::string_view alternatives) {
  size_t i = 0;
  while (i <= alternatives.size()) {
    size_t e = alternatives.find('|', i);
    if (e == std::string_view::npos) e = alternatives.size();
    if (alternatives.substr(i, e - i) == header) return true;
    i = e + 1;
  }
  return false;
}

Message parse_ok(const std::string& bytes) {
  Message m;
  Status st = m.parse(bytes);
  REQUIRE_MESSAGE(st.ok(), test::err(st));
  return m;
}

// Views into the message's bytes, so the result lives as long as they do.
ContactValue contact_of(const Message& m, int index = 0) {
  std::vector<std::string_view> cs;
  m.for_each_value(HeaderId::Contact, [&](std::string_view v) {
    cs.push_back(v);
    return true;
  });
  REQUIRE(cs.size() > size_t(index));
  auto c = parse_contact(cs[size_t(index)]);
  REQUIRE_MESSAGE(c.ok(), describe(c.error()));
  return *c;
}

}  // namespace

TEST_CASE("rfc4475: every case in cases.json has an expectation and meets it") {
  auto cases = load_cases()["cases"];
  REQUIRE(cases.size() == 61);
  CHECK(expectations().size() == 61);
  int rfc4475 = 0, rfc5118 = 0;
  for (const auto& c : cases) {
    std::string name = c["name"];
    std::string file = c["file"];
    CAPTURE(name);
    (c["rfc"] == "RFC 4475" ? rfc4475 : rfc5118)++;
    auto it = expectations().find(name);
    REQUIRE_MESSAGE(it != expectations().end(), "no expectation for " << name);
    std::string bytes = torture(file);
    REQUIRE(bytes.size() == c["bytes"].get<size_t>());
    Message m;
    Status st = m.parse(bytes);
    const Expected& e = it->second;
    if (e.status == 0) {
      CHECK_MESSAGE(st.ok(), test::err(st));
    } else {
      REQUIRE_FALSE(st.ok());
      CHECK(st.error().status == e.status);
      CHECK_MESSAGE(names_one_of(st.error().header, e.headers), describe(st.error()));
      // Every rejected request here has a readable top Via: the proxy can answer it.
      if (c["message_type"] == "request") CHECK(m.via_usable());
    }
    CHECK(m.is_request() == (c["message_type"] == "request"));
    // The RFC's preferred outcome for requests the parser rejects is that same code.
    if (e.status != 0 && c["message_type"] == "request") {
      std::set<std::string> strict;
      for (const auto& code : c["strict"]["codes"]) strict.insert(code.get<std::string>());
      CHECK_MESSAGE(strict.count(std::to_string(e.status)) == 1, "strict codes of " << name);
    }
  }
  CHECK(rfc4475 == 49);
  CHECK(rfc5118 == 12);
}

TEST_CASE("rfc4475: no prefix or truncation of any case crashes the parser") {
  const nlohmann::json cases = load_cases()["cases"];
  for (const auto& c : cases) {
    std::string bytes = torture(c["file"].get<std::string>());
    Message m;
    for (size_t n = 0; n <= bytes.size(); ++n) {
      std::string prefix = bytes.substr(0, n);  // own allocation: ASan sees overreads
      (void)m.parse(prefix);
    }
  }
}

// The key fields of every message that parses, as read by an independent script from the
// files (unfolded lines, first value of each header).
TEST_CASE("rfc4475: key fields of every message that parses") {
  struct Row {
    const char* name;
    const char* via_host;
    const char* branch;
    const char* call_id;
    uint32_t cseq;
    const char* from_tag;
    const char* to_tag;
    int max_forwards;
    size_t body;
  } rows[] = {
      {"wsinv", "192.0.2.2", "390skdjuw", "wsinv.ndaksdj@192.0.2.1", 9, "98asjd8", "1918181833n", 68, 150},
      {"intmeth", "host1.example.com", "z9hG4bK-.!%66*_+`'~", "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{", 139122385, "_token~1'+`*%!-.", "", 255, 0},
      {"esc01", "host5.example.net", "z9hG4bKkdjuw", "esc01.239409asdfakjkn23onasd0-3234", 234234, "938", "", 87, 150},
      {"escnull", "host5.example.com", "z9hG4bKkdjuw", "escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd", 14398234, "839923423", "", 70, 0},
      {"esc02", "host.example.com", "z9hG4bK209%fzsnel234", "esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf", 29344, "f232jadfj23", "", 70, 0},
      {"lwsdisp", "funky.example.com", "z9hG4bKkdjuw", "lwsdisp.1234abcd@funky.example.com", 60, "323", "", 70, 0},
      {"longreq", "sip33.example.com", "", "longreq.onereallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallylongcallid", 3882340, "12982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982424", "", 70, 150},
      {"dblreq", "192.0.2.125", "z9hG4bKkdjuw23492", "dblreq.0ha0isndaksdj99sdfafnl3lk233412", 8, "43251j3j324", "", 8, 0},
      {"semiuri", "192.0.2.1", "z9hG4bKkdjuw", "semiuri.0ha0isndaksdj", 8, "33242", "", 3, 0},
      {"transports", "t1.example.com", "z9hG4bKkdjuw", "transports.kijh4akdnaqjkwendsasfdj", 60, "323", "", 70, 0},
      {"mpart01", "127.0.0.1", "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-", "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..", 1, "2fb0dcc9", "", 70, 553},
      {"unreason", "192.0.2.198", "z9hG4bK1324923", "unreason.1234ksdfak3j2erwedfsASdf", 35, "11141343", "2229", -1, 154},
      {"noreason", "192.0.2.105", "z9hG4bK2398ndaoe", "noreason.asndj203insdf99223ndf", 35, "39ansfi3", "902jndnke3", -1, 0},
      {"baddate", "host.example.com", "z9hG4bKkdjuw", "baddate.239423mnsadf3j23lj42--sedfnm234", 1392934, "2234923", "", 70, 150},
      {"regbadct", "135.180.130.133", "z9hG4bKkdjuw", "regbadct.k345asrl3fdbv@10.0.0.1", 1, "998332", "", 70, 0},
      {"badbranch", "192.0.2.1", "z9hG4bK", "badbranch.sadonfo23i420jv0as0derf3j3n", 8, "33242", "", 3, 0},
      {"unkscm", "host9.example.com", "z9hG4bKkdjuw39234", "unkscm.nasdfasser0q239nwsdfasdkl34", 3923423, "384", "", 3, 0},
      {"novelsc", "host9.example.com", "z9hG4bKkdjuw39234", "novelsc.asdfasser0q239nwsdfasdkl34", 3923423, "384", "", 3, 0},
      {"unksm2", "192.0.2.21", "z9hG4bKkdjuw", "unksm2.daksdj@hyphenated-host.example.com", 234902, "3234233", "", 70, 0},
      {"bext01", "fold-and-staple.example.com", "z9hG4bKkdjuw", "bext01.0ha0isndaksdj", 8, "242etr", "", 6, 0},
      {"invut", "somehost.example.com", "z9hG4bKkdjuw", "invut.0ha0isndaksdjadsfij34n23d", 235448, "8392034", "", 70, 40},
      {"regaut01", "192.0.2.253", "z9hG4bKkdjuw", "regaut01.0ha0isndaksdj", 9338, "87321hj23128", "", 8, 0},
      {"bcast", "192.0.2.198", "z9hG4bK1324923", "bcast.0384840201234ksdfak3j2erwedfsASdf", 35, "11141343", "2229", -1, 154},
      {"zeromf", "host1.example.com", "z9hG4bKkdjuw2349i", "zeromf.jfasdlfnm2o2l43r5u0asdfas", 39234321, "3ghsd41", "", 0, 0},
      {"cparam01", "saturn.example.com", "z9hG4bKkdjuw", "cparam01.70710@saturn.example.com", 2, "DkfVgjkrtMwaerKKpe", "", 70, 0},
      {"cparam02", "saturn.example.com", "z9hG4bKkdjuw", "cparam02.70710@saturn.example.com", 3, "838293", "", 70, 0},
      {"regescrt", "host5.example.com", "z9hG4bKkdjuw", "regescrt.k345asrl3fdbv@192.0.2.1", 14398234, "8", "", 70, 0},
      {"sdp01", "192.0.2.15", "z9hG4bKkdjuw", "sdp01.ndaksdj9342dasdd", 8, "234", "", 5, 150},
      {"inv2543", "iftgw.example.com", "", "inv2543.1717@ift.client.example.com", 56, "", "", -1, 105},
      {"ipv6-good", "2001:db8::9:1", "z9hG4bKas3-111", "SSG9559905523997077@hlau_4100", 98176, "81x2", "", 70, 0},
      {"port-ambiguous", "2001:db8::9:1", "z9hG4bKas3-111", "SSG9559905523997077@hlau_4100", 98176, "81x2", "", 70, 0},
      {"port-unambiguous", "2001:db8::9:1", "z9hG4bKas3-111", "SSG9559905523997077@hlau_4100", 98176, "81x2", "", 70, 0},
      {"via-received-param-with-delim", "2001:db8::9:1", "z9hG4bKas3-111", "SSG9559905523997077@hlau_4100", 321, "81x2", "bd76ya", 70, 0},
      {"via-received-param-no-delim", "2001:db8::9:1", "z9hG4bKas3", "SSG95523997077@hlau_4100", 921, "81x2", "", 70, 0},
      {"ipv6-in-sdp", "2001:db8::20", "z9hG4bKas3-111", "SSG9559905523997077@hlau_4100", 8612, "81x2", "", 70, 251},
      {"mult-ip-in-header", "2001:db8::9:1", "z9hG4bKas3-111", "997077@lau_4100", 89187, "81x2", "9817--94", 70, 0},
      {"mult-ip-in-sdp", "2001:db8::9:1", "z9hG4bKas3-111", "SSG9559905523997077@hlau_4100", 8912, "81x2", "", 70, 189},
      {"ipv4-mapped-ipv6", "::ffff:192.0.2.10", "z9hG4bKbh19", "SSG9559905523997077@hlau_4100", 612, "81x2", "", 70, 245},
      {"ipv6-bug-abnf-3-colons", "lab1.east.example.com", "z9hG4bKas3-111", "G9559905523997077@hlau_4100", 689, "810x2", "", 70, 0},
      {"ipv6-correct-abnf-2-colons", "lab1.east.example.com", "z9hG4bKas3-111", "G9559905523997077@hlau_4100", 689, "810x2", "", 70, 0},
  };
  auto cases = load_cases()["cases"];
  int checked = 0;
  for (const Row& r : rows) {
    CAPTURE(r.name);
    std::string file;
    for (const auto& c : cases)
      if (c["name"] == r.name) file = c["file"];
    REQUIRE_FALSE(file.empty());
    std::string bytes = torture(file);
    Message m = parse_ok(bytes);
    CHECK(m.top_via().host == r.via_host);
    CHECK(m.top_via().branch == r.branch);
    CHECK(m.call_id() == r.call_id);
    CHECK(m.cseq().number == r.cseq);
    CHECK(m.from().tag() == r.from_tag);
    CHECK(m.to().tag() == r.to_tag);
    CHECK(m.max_forwards() == r.max_forwards);
    CHECK(m.body().size() == r.body);
    ++checked;
  }
  CHECK(checked == 40);
}

// ---- §3.1.1 valid messages -------------------------------------------------------------

TEST_CASE("rfc4475 3.1.1.1 wsinv: a short tortuous INVITE") {
  std::string bytes = torture("wsinv.dat");
  Message m = parse_ok(bytes);
  CHECK(m.method() == Method::Invite);
  CHECK(m.ruri().scheme == Scheme::Sip);
  CHECK(m.ruri().user == "vivekg");
  CHECK(m.ruri().host == "chair-dnrc.example.com");
  CHECK(m.ruri().params == "unknownparam");
  CHECK(m.ruri().has_param("unknownparam"));
  // To with LWS around ';' and '=' and a folded value.
  CHECK(m.to().uri.user == "vivekg");
  CHECK(m.to().tag() == "1918181833n");
  // From with an escaped quote in the display name and the tag on folded lines.
  CHECK(m.from().display == R"(J Rosenberg \\\")");
  CHECK(m.from().uri.user == "jdrosen");
  CHECK(m.from().tag() == "98asjd8");
  CHECK(m.max_forwards() == 68);  // 0068
  CHECK(m.call_id() == "wsinv.ndaksdj@192.0.2.1");
  CHECK(m.cseq().number == 9);  // 0009, folded before the method
  CHECK(m.cseq().method == Method::Invite);
  CHECK(m.content_length() == 150);
  CHECK(m.body().size() == 150);
  // Via with LWS around '/', folded over three lines.
  CHECK(m.top_via().transport == "UDP");
  CHECK(m.top_via().host == "192.0.2.2");
  CHECK(m.top_via().port == 0);
  CHECK(m.top_via().branch == "390skdjuw");
  CHECK_FALSE(m.top_via().rfc3261_branch());
  CHECK(m.via_count() == 3);
  std::vector<std::string> vias = values(m, HeaderId::Via);
  REQUIRE(vias.size() == 3);
  auto v2 = parse_via(vias[1]);
  REQUIRE(v2.ok());
  CHECK(v2->transport == "TCP");
  CHECK(v2->host == "spindle.example.com");
  CHECK(v2->branch == "z9hG4bK9ikj8");
  auto v3 = parse_via(vias[2]);
  REQUIRE(v3.ok());
  CHECK(v3->host == "192.168.255.111");
  CHECK(v3->branch == "z9hG4bK30239");
  // Empty Subject (compact s), kept.
  const Header* subject = m.find(HeaderId::Subject);
  REQUIRE(subject);
  CHECK(subject->name == "s");
  CHECK(subject->value.empty());
  // Unknown headers are kept as received.
  const Header* nf = m.find("NewFangledHeader");
  REQUIRE(nf);
  CHECK(nf->id == HeaderId::Other);
  CHECK(nf->value == "newfangled value\r\n continued newfangled value");
  const Header* uh = m.find("unknownheaderwithunusualvalue");
  REQUIRE(uh);
  CHECK(uh->value == ";;,,;;,;");
  CHECK(bytes.substr(uh->begin, uh->end - uh->begin) ==
        "UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n");
  // Route on a folded line.
  std::vector<std::string> routes = values(m, HeaderId::Route);
  REQUIRE(routes.size() == 1);
  auto route = parse_name_addr(routes[0]);
  REQUIRE(route.ok());
  CHECK(route->uri.has_param("lr"));
  CHECK(route->uri.param("unknownwith") == std::string_view("value"));
  CHECK(route->uri.has_param("unknown-no-value"));
  // Contact (compact m) with LWS inside its params, q = 0.33.
  ContactValue c = contact_of(m);
  CHECK(c.addr.display == R"(Quoted string \"\")");
  CHECK(c.addr.param("newparam") == std::string_view("newvalue"));
  CHECK(c.addr.param("secondparam").has_value());
  CHECK(c.q1000 == 330);

  // Forwarded, the unknown header goes unchanged.
  Message again;
  std::string out;
  SpliceEdits e;
  e.add_via = "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKsb0.1";
  e.max_forwards = 67;
  splice(m, e, out);
  CHECK(out.find("UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n") != std::string::npos);
  REQUIRE(again.parse(out).ok());
  CHECK(again.max_forwards() == 67);
  CHECK(again.body() == m.body());
}

TEST_CASE("rfc4475 3.1.1.2 intmeth: wide range of valid characters") {
  std::string bytes_m = torture("intmeth.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.method() == Method::Other);
  CHECK(m.method_text() == "!interesting-Method0123456789_*+`.%indeed'~");
  CHECK(m.cseq().method_text == m.method_text());
  CHECK(m.cseq().number == 139122385);
  // The user part holds '?', ';', ':' and ','; the password the rest.
  CHECK(m.ruri().user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
  CHECK(m.ruri().has_password);
  CHECK(m.ruri().password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
  CHECK(m.ruri().host == "example.com");
  CHECK(m.ruri().params.empty());
  CHECK(m.ruri().headers.empty());
  CHECK(m.top_via().branch == "z9hG4bK-.!%66*_+`'~");
  CHECK(m.top_via().transport == "TCP");
  // Display name with quoted NUL, BEL, DEL.
  CHECK(m.to().display == std::string_view("BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f", 20));
  CHECK(m.to().uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
  CHECK(m.from().display == "token1~` token2'+_ token3*%!.-");
  CHECK(m.from().tag() == "_token~1'+`*%!-.");
  CHECK(m.from().param("fromParam''~+*_!.-%").has_value());
  CHECK(m.call_id() == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
  CHECK(m.max_forwards() == 255);
  const Header* ext = m.find("extensionHeader-!.%*+_`'~");
  REQUIRE(ext);
  CHECK(ext->value == "\xEF\xBB\xBF\xE5\xA4\xA7\xE5\x81\x9C\xE9\x9B\xBB");
  CHECK(m.body().empty());
}

TEST_CASE("rfc4475 3.1.1.3 esc01: valid use of %-escapes") {
  std::string bytes_m = torture("esc01.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.ruri().user == "sips%3Auser%40example.com");
  CHECK(m.ruri().host == "example.net");
  std::string user;
  REQUIRE(unescape(m.ruri().user, user));
  CHECK(user == "sips:user@example.com");
  CHECK(m.to().uri.user == "%75se%72");
  CHECK(canonical_aor(m.to().uri) == "sip:user@example.com");
  CHECK(m.from().uri.user == "I%20have%20spaces");
  CHECK(m.call_id() == "esc01.239409asdfakjkn23onasd0-3234");  // compact i
  CHECK(m.find(HeaderId::ContentType));                           // compact C
  // Folded Contact with escaped parameter names and values.
  ContactValue c = contact_of(m);
  CHECK(c.addr.uri.user == "cal%6Cer");
  CHECK(c.addr.uri.has_param("lr"));  // written %6C%72
  auto name = c.addr.uri.param("name");  // written n%61me
  REQUIRE(name);
  CHECK(*name == "v%61lue%25%34%31");
  std::string value;
  REQUIRE(unescape(*name, value));
  CHECK(value == "value%41");
  CHECK(m.body().size() == 150);
}

TEST_CASE("rfc4475 3.1.1.4 escnull: escaped NULs in URIs") {
  std::string bytes_m = torture("escnull.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.method() == Method::Register);
  CHECK(m.to().uri.user == "null-%00-null");
  // The AOR keeps the NUL escaped: no truncation, no raw NUL.
  CHECK(canonical_aor(m.to().uri) == "sip:null-%00-null@example.com");
  CHECK(m.count(HeaderId::Contact) == 2);
  CHECK(contact_of(m, 0).addr.uri.user == "%00");
  CHECK(contact_of(m, 1).addr.uri.user == "%00%00");
  CHECK(canonical_aor(contact_of(m, 1).addr.uri) == "sip:%00%00@host5.example.com");
  CHECK(m.content_length() == 0);  // L:0
}

TEST_CASE("rfc4475 3.1.1.5 esc02: escapes in method and header names are not decoded") {
  std::string bytes_m = torture("esc02.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.method() == Method::Other);
  CHECK(m.method_text() == "RE%47IST%45R");
  CHECK(m.cseq().method_text == "RE%47IST%45R");
  CHECK(m.count(HeaderId::Contact) == 2);
  const Header* odd = m.find("C%6Fntact");
  REQUIRE(odd);
  CHECK(odd->id == HeaderId::Other);
  CHECK(m.to().display == "%Z%45");
  CHECK(m.top_via().branch == "z9hG4bK209%fzsnel234");
}

TEST_CASE("rfc4475 3.1.1.6 lwsdisp: no LWS between display name and <") {
  std::string bytes_m = torture("lwsdisp.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.from().display == "caller");
  CHECK(m.from().uri.user == "caller");
  CHECK(m.from().tag() == "323");
  CHECK(m.to().display.empty());
  CHECK_FALSE(m.to().angle);
}

TEST_CASE("rfc4475 3.1.1.7 longreq: long values, 34 Vias") {
  std::string bytes = torture("longreq.dat");
  Message m = parse_ok(bytes);
  CHECK(m.raw().size() == 3515);
  CHECK(m.via_count() == 34);
  CHECK(m.count(HeaderId::Via) == 34);
  CHECK(m.top_via().host == "sip33.example.com");
  CHECK(m.top_via().transport == "TCP");
  CHECK(m.top_via().branch.empty());
  std::vector<std::string> vias = values(m, HeaderId::Via);
  auto last = parse_via(vias.back());
  REQUIRE(last.ok());
  CHECK(last->received == "192.0.2.5");
  CHECK(last->branch.size() > 200);
  CHECK(m.to().display.substr(0, 26) == "I have a user name of extr");
  CHECK(m.to().uri.port == 6000);
  std::string long_name = "verylong";
  for (int i = 0; i < 24; ++i) long_name += "long";
  long_name += "ParameterNameWithNoValue";
  CHECK(m.to().uri.has_param(long_name));
  CHECK(m.from().tag().substr(0, 8) == "12982982");
  CHECK(m.from().param("unknownValuelessparamnameparamnameparamnameparamnameparamnameparamname"
                       "paramnameparamnameparamnameparamname")
            .has_value());
  CHECK(m.content_length() == 150);
  CHECK(m.body().size() == 150);
}

TEST_CASE("rfc4475 3.1.1.8 dblreq: the second request in the datagram is ignored") {
  std::string bytes = torture("dblreq.dat");
  Message m = parse_ok(bytes);
  CHECK(m.method() == Method::Register);
  CHECK(m.call_id() == "dblreq.0ha0isndaksdj99sdfafnl3lk233412");  // compact I
  CHECK(m.body().empty());
  CHECK(m.raw().size() == bytes.find("\r\n\r\n") + 4);
  CHECK(m.raw().find("INVITE") == std::string_view::npos);
}

TEST_CASE("rfc4475 3.1.1.9 semiuri: ';' in the user part") {
  std::string bytes_m = torture("semiuri.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.ruri().user == "user;par=u%40example.net");
  CHECK(m.ruri().host == "example.com");
  CHECK(m.ruri().params.empty());
  CHECK_FALSE(m.ruri().has_param("par"));
  CHECK(values(m, HeaderId::Accept) ==
        std::vector<std::string>{"application/sdp", "application/pkcs7-mime", "multipart/mixed",
                                 "multipart/signed", "message/sip", "message/sipfrag"});
}

TEST_CASE("rfc4475 3.1.1.10 transports: every transport token") {
  std::string bytes_m = torture("transports.dat");
  Message m = parse_ok(bytes_m);
  std::vector<std::string> transports;
  for (const auto& v : values(m, HeaderId::Via)) {
    auto via = parse_via(v);
    REQUIRE(via.ok());
    transports.emplace_back(via->transport);
  }
  CHECK(transports == std::vector<std::string>{"UDP", "SCTP", "TLS", "UNKNOWN", "TCP"});
  CHECK(m.call_id() == "transports.kijh4akdnaqjkwendsasfdj");
}

TEST_CASE("rfc4475 3.1.1.11 mpart01: binary multipart body framed by Content-Length") {
  std::string bytes = torture("mpart01.dat");
  Message m = parse_ok(bytes);
  CHECK(m.method() == Method::Message);
  CHECK(m.content_length() == 553);
  CHECK(m.body().size() == 553);
  CHECK(m.body().find('\0') != std::string_view::npos);
  CHECK(m.top_via().has_rport);
  CHECK(m.top_via().rport.empty());
  CHECK(m.top_via().port == 5070);
  CHECK(m.find(HeaderId::Identity));
  CHECK(m.find(HeaderId::Date));
  auto route = parse_name_addr(m.find(HeaderId::Route)->value);
  REQUIRE(route.ok());
  CHECK(route->uri.host == "127.0.0.1");
  CHECK(route->uri.port == 5080);
  CHECK_FALSE(route->uri.has_param("lr"));
}

TEST_CASE("rfc4475 3.1.1.12 unreason: UTF-8 reason phrase") {
  std::string bytes_m = torture("unreason.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.is_response());
  CHECK(m.status() == 200);
  CHECK(m.reason().substr(0, 13) == "= 2**3 * 5**2");
  CHECK(m.cseq().method == Method::Invite);
  CHECK(m.top_via().host == "192.0.2.198");
  CHECK(m.body().size() == 154);
}

TEST_CASE("rfc4475 3.1.1.13 noreason: empty reason phrase") {
  std::string bytes_m = torture("noreason.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.is_response());
  CHECK(m.status() == 100);
  CHECK(m.reason().empty());
  CHECK(m.to().tag() == "902jndnke3");
}

// ---- §3.1.2 invalid messages -----------------------------------------------------------

namespace {
// The bytes stay alive for the rest of the run, as the Message's views need them.
const std::string& keep(std::string bytes) {
  static std::deque<std::string> kept;
  kept.push_back(std::move(bytes));
  return kept.back();
}
Error parse_error(const std::string& file_or_bytes, Message& m, bool is_file = true) {
  const std::string& bytes = keep(is_file ? torture(file_or_bytes) : file_or_bytes);
  Status st = m.parse(bytes);
  REQUIRE_FALSE(st.ok());
  return st.error();
}
}  // namespace

TEST_CASE("rfc4475 3.1.2.1 badinv01: ;;,;,, in Via: 400, the Via's sent-by still usable") {
  Message m;
  Error e = parse_error("badinv01.dat", m);
  CHECK(e.status == 400);
  CHECK(e.header == "Via");
  CHECK(m.via_usable());
  CHECK(m.top_via().host == "192.0.2.15");
  CHECK(m.top_via().transport == "UDP");
  CHECK(m.call_id() == "badinv01.0ha0isndaksdjasdf3234nas");
}

TEST_CASE("rfc4475 3.1.2.2 clerr / 3.1.2.3 ncl: bad Content-Length") {
  Message m;
  Error e = parse_error("clerr.dat", m);
  CHECK(describe(e).find("bad Content-Length") == 0);
  CHECK(m.via_usable());
  CHECK(m.top_via().host == "host5.example.com");
  e = parse_error("ncl.dat", m);
  CHECK(describe(e).find("bad Content-Length") == 0);
  CHECK(m.content_length() == -1);  // -999 is never a length
  CHECK(m.via_usable());
}

TEST_CASE("rfc4475 3.1.2.4 scalar02 / 3.1.2.5 scalarlg: overlarge scalars") {
  Message m;
  Error e = parse_error("scalar02.dat", m);
  CHECK(e.status == 400);
  CHECK(e.header == "CSeq");
  CHECK(m.via_usable());
  e = parse_error("scalarlg.dat", m);
  CHECK(m.is_response());
  CHECK(e.header == "CSeq");
}

TEST_CASE("rfc4475 3.1.2.6-11 strict 400s") {
  Message m;
  struct Case {
    const char* file;
    const char* header;
  } cases[] = {{"quotbal.dat", "To"},        {"ltgtruri.dat", "Request-URI"},
               {"lwsruri.dat", "Request-Line"}, {"lwsstart.dat", "Request-Line"},
               {"trws.dat", "Request-Line"},    {"escruri.dat", "Request-URI"},
               {"badaspec.dat", "To"},          {"baddn.dat", "From"}};
  for (const auto& c : cases) {
    CAPTURE(c.file);
    Error e = parse_error(c.file, m);
    CHECK(e.status == 400);
    CHECK(e.header == c.header);
    CHECK(m.via_usable());
    CHECK(describe(e).find(std::string("bad ") + c.header + ": ") == 0);
  }
}

TEST_CASE("rfc4475 3.1.2.15 baddn: also with the header section closed") {
  std::string bytes = torture("baddn.dat") + "\r\n";
  Message m;
  Error e = parse_error(bytes, m, false);
  CHECK(e.header == "From");
  // The defect alone (header section never closed) is a 400 too.
  std::string fixed = bytes;
  fixed.replace(fixed.find("Bell, Alexander"), 15, "\"Bell, Alexander\"");
  fixed.replace(fixed.find("Watson, Thomas"), 14, "\"Watson, Thomas\"");
  CHECK(m.parse(fixed).ok());
  fixed.resize(fixed.size() - 2);
  Status st = m.parse(fixed);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().status == 400);
  CHECK(m.via_usable());
}

TEST_CASE("rfc4475 3.1.2.12 baddate: a proxy ignores Date") {
  std::string bytes_m = torture("baddate.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.find(HeaderId::Date)->value == "Fri, 01 Jan 2010 16:00:00 EST");
}

TEST_CASE("rfc4475 3.1.2.13 regbadct: parse_contact rejects a URI with ? outside <>") {
  std::string bytes_m = torture("regbadct.dat");
  Message m = parse_ok(bytes_m);
  std::vector<std::string> cs = values(m, HeaderId::Contact);
  REQUIRE(cs.size() == 1);
  auto c = parse_contact(cs[0]);
  REQUIRE_FALSE(c.ok());
  CHECK(c.error().status == 400);
  CHECK(c.error().header == "Contact");
  CHECK(describe(c.error()).find("bad Contact: ") == 0);
}

TEST_CASE("rfc4475 3.1.2.16 badvers: 505 with a usable Via") {
  Message m;
  Error e = parse_error("badvers.dat", m);
  CHECK(e.status == 505);
  CHECK(m.via_usable());
  CHECK(m.top_via().host == "c.example.com");
}

TEST_CASE("rfc4475 3.1.2.17/18 mismatch01 (400) and mismatch02 (501)") {
  Message m;
  Error e = parse_error("mismatch01.dat", m);
  CHECK(e.status == 400);
  CHECK(e.header == "CSeq");
  e = parse_error("mismatch02.dat", m);
  CHECK(e.status == 501);
  CHECK(m.via_usable());
}

TEST_CASE("rfc4475 3.1.2.19 bigcode: an overlarge status code is an error, not a wrap") {
  Message m;
  Error e = parse_error("bigcode.dat", m);
  CHECK(m.is_response());
  CHECK(e.header == "Status-Line");
  CHECK(m.status() == 0);
}

// ---- §3.2 - §3.4 -------------------------------------------------------------------------

TEST_CASE("rfc4475 3.2.1 badbranch: branch is only the magic cookie") {
  std::string bytes_m = torture("badbranch.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.top_via().branch == "z9hG4bK");
  CHECK_FALSE(m.top_via().rfc3261_branch());
}

TEST_CASE("rfc4475 3.3.1 insuf: missing headers give 400 with the Via usable") {
  Message m;
  Error e = parse_error("insuf.dat", m);
  CHECK(e.status == 400);
  CHECK(describe(e).find("missing") != std::string::npos);
  CHECK(m.via_usable());
  CHECK(m.top_via().branch == "z9hG4bKkdj.insuf");
}

TEST_CASE("rfc4475 3.3.2 unkscm / 3.3.3 novelsc: unknown schemes parse (the proxy says 416)") {
  std::string bytes_m = torture("unkscm.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.ruri().scheme == Scheme::Other);
  CHECK(m.ruri().scheme_raw == "nobodyKnowsThisScheme");
  CHECK(m.ruri().opaque == "totallyopaquecontent");
  CHECK(m.to().uri.scheme == Scheme::Sip);
  std::string bytes_n = torture("novelsc.dat");
  Message n = parse_ok(bytes_n);
  CHECK(n.ruri().scheme == Scheme::Other);
  CHECK(n.ruri().scheme_raw == "soap.beep");
  CHECK(n.ruri().opaque == "//192.0.2.103:3002");
}

TEST_CASE("rfc4475 3.3.4 unksm2: unknown schemes in To, From, Contact") {
  std::string bytes_m = torture("unksm2.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.ruri().scheme == Scheme::Sip);
  CHECK(m.to().uri.scheme == Scheme::Other);
  CHECK(m.to().uri.scheme_raw == "isbn");
  CHECK(canonical_aor(m.to().uri).empty());  // the registrar answers 400
  CHECK(m.from().uri.scheme_raw == "http");
  CHECK(contact_of(m).addr.uri.scheme_raw == "name");
}

TEST_CASE("rfc4475 3.3.5 bext01: Require and Proxy-Require values") {
  std::string bytes_m = torture("bext01.dat");
  Message m = parse_ok(bytes_m);
  CHECK(values(m, HeaderId::ProxyRequire) ==
        std::vector<std::string>{"noProxiesSupportThis", "norDoAnyProxiesSupportThis"});
  CHECK(values(m, HeaderId::Require) ==
        std::vector<std::string>{"nothingSupportsThis", "nothingSupportsThisEither"});
  CHECK(m.top_via().transport == "TLS");
}

TEST_CASE("rfc4475 3.3.6 invut / 3.3.15 sdp01: bodies the proxy does not read") {
  std::string bytes_m = torture("invut.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.find(HeaderId::ContentType)->value == "application/unknownformat");
  CHECK(m.body().size() == 40);
  std::string bytes_s = torture("sdp01.dat");
  Message s = parse_ok(bytes_s);
  CHECK(s.find(HeaderId::Accept)->value == "text/nobodyKnowsThis");
  CHECK(s.body().size() == 150);
}

TEST_CASE("rfc4475 3.3.7 regaut01: unknown authorization scheme") {
  std::string bytes_m = torture("regaut01.dat");
  Message m = parse_ok(bytes_m);
  auto a = parse_auth(m.find(HeaderId::Authorization)->value);
  REQUIRE(a.ok());
  CHECK(a->scheme == "NoOneKnowsThisScheme");
  CHECK(a->param("opaque-data") == std::string_view("here"));
  CHECK(m.content_length() == 0);  // "Content-Length:0"
}

TEST_CASE("rfc4475 3.3.8 multi01 / 3.3.9 mcl01: single-valued headers twice") {
  Message m;
  Error e = parse_error("multi01.dat", m);
  CHECK(e.status == 400);
  CHECK(describe(e).find("more than once") != std::string::npos);
  CHECK(m.via_usable());
  e = parse_error("mcl01.dat", m);
  CHECK(e.header == "Content-Length");
  CHECK(m.via_usable());
}

TEST_CASE("rfc4475 3.3.10 bcast: a response with two Vias parses") {
  std::string bytes_m = torture("bcast.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.is_response());
  CHECK(m.via_count() == 2);
  std::vector<std::string> vias = values(m, HeaderId::Via);
  auto second = parse_via(vias[1]);
  REQUIRE(second.ok());
  CHECK(second->host == "255.255.255.255");
}

TEST_CASE("rfc4475 3.3.11 zeromf: Max-Forwards 0") {
  std::string bytes_m = torture("zeromf.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.max_forwards() == 0);
}

TEST_CASE("rfc4475 3.3.12 cparam01: ;unknownparam is a contact-param outside the URI") {
  std::string bytes_m = torture("cparam01.dat");
  Message m = parse_ok(bytes_m);
  ContactValue c = contact_of(m);
  CHECK_FALSE(c.addr.angle);
  CHECK(c.addr.uri_text == "sip:+19725552222@gw1.example.net");
  CHECK(c.addr.params == "unknownparam");
  CHECK(c.addr.param("unknownparam").has_value());
  CHECK(c.addr.uri.params.empty());
  CHECK(canonical_aor(c.addr.uri) == "sip:+19725552222@gw1.example.net");
}

TEST_CASE("rfc4475 3.3.13 cparam02: ;unknownparam inside <> belongs to the URI") {
  std::string bytes_m = torture("cparam02.dat");
  Message m = parse_ok(bytes_m);
  ContactValue c = contact_of(m);
  CHECK(c.addr.angle);
  CHECK(c.addr.uri_text == "sip:+19725552222@gw1.example.net;unknownparam");
  CHECK(c.addr.params.empty());
  CHECK(c.addr.uri.has_param("unknownparam"));
}

TEST_CASE("rfc4475 3.3.14 regescrt: ?Route= kept in the Contact URI") {
  std::string bytes_m = torture("regescrt.dat");
  Message m = parse_ok(bytes_m);
  const Header* h = m.find(HeaderId::Contact);
  REQUIRE(h);
  CHECK(h->name == "M");
  ContactValue c = contact_of(m);
  CHECK(c.addr.uri.headers == "Route=%3Csip:sip.example.com%3E");
  CHECK(c.addr.uri_text == "sip:user@example.com?Route=%3Csip:sip.example.com%3E");
  CHECK(m.content_length() == 0);  // L:0
}

TEST_CASE("rfc4475 3.4.1 inv2543: an RFC 2543 INVITE") {
  std::string bytes = torture("inv2543.dat");
  Message m = parse_ok(bytes);
  CHECK(m.top_via().branch.empty());
  CHECK(m.top_via().host == "iftgw.example.com");
  CHECK(m.from().tag().empty());
  CHECK(m.max_forwards() == -1);
  CHECK(m.content_length() == -1);
  CHECK(m.body() == std::string_view(bytes).substr(bytes.find("\r\n\r\n") + 4));
  // Without <>, ;user=phone after an addr-spec is a header parameter (§20), not the URI's.
  CHECK(m.to().param("user") == std::string_view("phone"));
  CHECK_FALSE(m.to().uri.has_param("user"));
  CHECK(m.from().uri.param("user") == std::string_view("phone"));
  CHECK(m.find(HeaderId::RecordRoute));
}

// ---- RFC 5118 ----------------------------------------------------------------------------

TEST_CASE("rfc5118 4.1 ipv6-good / 4.2 ipv6-bad") {
  std::string bytes_m = torture("rfc5118/ipv6-good.dat");
  Message m = parse_ok(bytes_m);
  CHECK(m.ruri().host == "2001:db8::10");
  CHECK(m.ruri().host_type == HostType::IPv6);
  CHECK(m.ruri().hostport() == "[2001:db8::10]");
  CHECK(m.ruri().port == 0);
  CHECK(m.top_via().host == "2001:db8::9:1");
  CHECK(m.top_via().host_is_ipv6);
  CHECK(m.top_via().sent_by == "[2001:db8::9:1]");
  CHECK(contact_of(m).addr.uri.host == "2001:db8::1");
  CHECK(contact_of(m).addr.display == "Caller");

  Message b;
  Error e = parse_error("rfc5118/ipv6-bad.dat", b);
  CHECK(e.header == "Request-URI");
  CHECK(b.via_usable());
  CHECK(b.top_via().host == "2001:db8::9:1");
}

TEST_CASE("rfc5118 4.3 port-ambiguous / port-unambiguous") {
  std::string bytes_a = torture("rfc5118/port-ambiguous.dat");
  Message a = parse_ok(bytes_a);
  CHECK(a.ruri().host == "2001:db8::10:5070");
  CHECK(a.ruri().port == 0);
  std::string bytes_u = torture("rfc5118/port-unambiguous.dat");
  Message u = parse_ok(bytes_u);
  CHECK(u.ruri().host == "2001:db8::10");
  CHECK(u.ruri().port == 5070);
  CHECK(u.ruri().hostport() == "[2001:db8::10]:5070");
}

TEST_CASE("rfc5118 4.4 Via received with and without brackets") {
  std::string bytes_w = torture("rfc5118/via-received-param-with-delim.dat");
  Message w = parse_ok(bytes_w);
  CHECK(w.top_via().received == "[2001:db8::9:255]");
  CHECK(w.top_via().branch == "z9hG4bKas3-111");
  std::string bytes_n = torture("rfc5118/via-received-param-no-delim.dat");
  Message n = parse_ok(bytes_n);
  CHECK(n.top_via().received == "2001:db8::9:255");
  CHECK(n.top_via().branch == "z9hG4bKas3");
}

TEST_CASE("rfc5118 4.5-4.9 IPv6 in SDP and headers, IPv4-mapped") {
  std::string bytes_s = torture("rfc5118/ipv6-in-sdp.dat");
  Message s = parse_ok(bytes_s);
  CHECK(s.body().size() == 251);
  CHECK(s.to().uri.host == "2001:db8::10");
  std::string bytes_s2 = torture("rfc5118/mult-ip-in-sdp.dat");
  Message s2 = parse_ok(bytes_s2);
  CHECK(s2.body().size() == 189);

  std::string bytes_h = torture("rfc5118/mult-ip-in-header.dat");
  Message h = parse_ok(bytes_h);
  CHECK(h.top_via().host == "2001:db8::9:1");
  CHECK(h.top_via().port == 6050);
  CHECK(h.top_via().sent_by == "[2001:db8::9:1]:6050");
  std::vector<std::string> vias = values(h, HeaderId::Via);
  REQUIRE(vias.size() == 3);
  auto v2 = parse_via(vias[1]);
  auto v3 = parse_via(vias[2]);
  REQUIRE((v2.ok() && v3.ok()));
  CHECK(v2->host == "192.0.2.1");
  CHECK_FALSE(v2->host_is_ipv6);
  CHECK(v3->host == "2001:db8::9:255");
  CHECK(v3->received == "192.0.2.200");
  CHECK(v3->transport == "TCP");

  std::string bytes_v4 = torture("rfc5118/ipv4-mapped-ipv6.dat");
  Message v4 = parse_ok(bytes_v4);
  CHECK(v4.top_via().host == "::ffff:192.0.2.10");
  CHECK(v4.top_via().port == 19823);
  CHECK(contact_of(v4).addr.uri.host == "::ffff:192.0.2.2");
  CHECK(v4.body().size() == 245);
}

TEST_CASE("rfc5118 4.10 the three-colon form is tolerated") {
  std::string bytes_a = torture("rfc5118/ipv6-bug-abnf-3-colons.dat");
  Message a = parse_ok(bytes_a);
  CHECK(a.ruri().host == "2001:db8:::192.0.2.1");
  CHECK(a.ruri().host_type == HostType::IPv6);
  CHECK(a.to().uri.host == "2001:db8:::192.0.2.1");
  std::string bytes_b = torture("rfc5118/ipv6-correct-abnf-2-colons.dat");
  Message b = parse_ok(bytes_b);
  CHECK(b.ruri().host == "2001:db8::192.0.2.1");
}
