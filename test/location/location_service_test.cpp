#include "location/location_service.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

using namespace sb;
using location::BindingChange;
using location::LocationService;
using location::UpdateRequest;
using Strings = std::vector<std::string>;

namespace {

location::Settings manual(uint32_t shards = 4) {
  location::Settings s;
  s.shards = shards;
  s.sweep_interval_ms = 0;  // the tests sweep
  return s;
}

BindingChange change(std::string_view contact, uint32_t expires = 3600, uint16_t q = 1000) {
  BindingChange c;
  c.contact = contact;
  c.expires = expires;
  c.q = q;
  return c;
}

UpdateRequest request(std::string_view call_id, uint32_t cseq) {
  UpdateRequest r;
  r.call_id = call_id;
  r.cseq = cseq;
  return r;
}

std::vector<std::string> contacts(const std::vector<location::Binding>& bs) {
  std::vector<std::string> out;
  for (const auto& b : bs) out.push_back(b.contact);
  return out;
}

constexpr std::string_view kAor = "sip:alice@example.com";

}  // namespace

TEST_CASE("bindings are ordered by q, then most recent first") {
  core::FakeClock clock;
  LocationService loc(clock, manual(), nullptr);
  BindingChange a = change("sip:a@192.0.2.1", 3600, 500);
  REQUIRE(loc.update(kAor, request("c1", 1), {&a, 1}));
  clock.advance(1000);
  BindingChange b = change("sip:b@192.0.2.2", 3600, 1000);
  REQUIRE(loc.update(kAor, request("c2", 1), {&b, 1}));
  clock.advance(1000);
  BindingChange c = change("sip:c@192.0.2.3", 3600, 500);
  REQUIRE(loc.update(kAor, request("c3", 1), {&c, 1}));
  CHECK(contacts(loc.lookup(kAor)) ==
        Strings{"sip:b@192.0.2.2", "sip:c@192.0.2.3", "sip:a@192.0.2.1"});

  // A refresh makes a binding the most recent of its q.
  clock.advance(1000);
  REQUIRE(loc.update(kAor, request("c1", 2), {&a, 1}));
  CHECK(contacts(loc.lookup(kAor)) ==
        Strings{"sip:b@192.0.2.2", "sip:a@192.0.2.1", "sip:c@192.0.2.3"});

  // Contacts of one request keep their order.
  BindingChange two[] = {change("sip:x@192.0.2.9"), change("sip:y@192.0.2.9")};
  auto out = loc.update("sip:bob@example.com", request("c9", 1), two);
  REQUIRE(out);
  CHECK(contacts(out->bindings) == Strings{"sip:x@192.0.2.9", "sip:y@192.0.2.9"});
  CHECK(out->added == 2);
  CHECK(loc.size() == 5);
  CHECK(loc.aor_count() == 2);
  // By URI: canonicalised first.
  auto uri = core::parse_uri("sip:bob@EXAMPLE.com:5060;transport=tcp");
  REQUIRE(uri);
  CHECK(loc.lookup(*uri).size() == 2);
}

TEST_CASE("a binding is invisible from its expiry instant and swept after") {
  core::FakeClock clock;
  LocationService loc(clock, manual(), nullptr);
  BindingChange a = change("sip:a@192.0.2.1", 60);
  BindingChange b = change("sip:b@192.0.2.1", 120);
  REQUIRE(loc.update(kAor, request("c1", 1), {&a, 1}));
  REQUIRE(loc.update(kAor, request("c2", 1), {&b, 1}));
  auto bs = loc.lookup(kAor);
  REQUIRE(bs.size() == 2);
  CHECK(bs[1].expires_in(clock.wall_ms()) == 60);

  clock.advance(59'999);
  CHECK(loc.lookup(kAor).size() == 2);
  CHECK(loc.sweep(clock.wall_ms()) == 0);
  clock.advance(1);
  // Expired at this instant: not returned even though no sweep ran.
  CHECK(contacts(loc.lookup(kAor)) == Strings{"sip:b@192.0.2.1"});
  CHECK(loc.size() == 2);
  CHECK(loc.sweep(clock.wall_ms()) == 1);
  CHECK(loc.size() == 1);

  clock.advance(60'000);
  CHECK(loc.lookup(kAor).empty());
  CHECK(loc.sweep(clock.wall_ms()) == 1);
  CHECK(loc.size() == 0);
  CHECK(loc.aor_count() == 0);
}

TEST_CASE("the expiry wheel keeps long registrations across rounds and catches up after a jump") {
  core::FakeClock clock;
  LocationService loc(clock, manual(1), nullptr);
  BindingChange longer = change("sip:long@192.0.2.1", 5000);  // beyond one wheel round
  BindingChange shorter = change("sip:short@192.0.2.1", 10);
  REQUIRE(loc.update(kAor, request("c1", 1), {&longer, 1}));
  REQUIRE(loc.update("sip:bob@example.com", request("c2", 1), {&shorter, 1}));
  size_t swept = 0;
  for (int i = 0; i < 4999; ++i) {
    clock.advance(1000);
    swept += loc.sweep(clock.wall_ms());
  }
  CHECK(swept == 1);
  CHECK(loc.lookup(kAor).size() == 1);
  clock.advance(1000);
  CHECK(loc.sweep(clock.wall_ms()) == 1);
  CHECK(loc.size() == 0);

  // A sweep after a long pause sees everything that expired meanwhile.
  BindingChange c = change("sip:c@192.0.2.1", 30);
  BindingChange d = change("sip:d@192.0.2.1", 3000);
  REQUIRE(loc.update(kAor, request("c3", 1), {&c, 1}));
  REQUIRE(loc.update(kAor, request("c4", 1), {&d, 1}));
  clock.advance(10'000'000);
  CHECK(loc.sweep(clock.wall_ms()) == 2);
  CHECK(loc.aor_count() == 0);
}

TEST_CASE("Call-ID and CSeq decide updates (RFC 3261 10.3 step 7)") {
  core::FakeClock clock;
  LocationService loc(clock, manual(), nullptr);
  BindingChange a = change("sip:a@192.0.2.1", 600);
  REQUIRE(loc.update(kAor, request("c1", 5), {&a, 1}));

  SUBCASE("same Call-ID, not higher CSeq: refused") {
    clock.advance(1000);
    BindingChange a2 = change("sip:a@192.0.2.1", 60);
    auto r = loc.update(kAor, request("c1", 5), {&a2, 1});
    REQUIRE(!r);
    CHECK(location::same_fault(r.error(), location::faults::kOutOfOrder));
    CHECK(r.error().status == 500);
    auto bs = loc.lookup(kAor);
    REQUIRE(bs.size() == 1);
    CHECK(bs[0].cseq == 5);
    CHECK(bs[0].expires_in(clock.wall_ms()) == 599);
  }
  SUBCASE("same Call-ID, higher CSeq: updated") {
    BindingChange a2 = change("sip:a@192.0.2.1", 60);
    auto r = loc.update(kAor, request("c1", 6), {&a2, 1});
    REQUIRE(r);
    CHECK(r->refreshed == 1);
    REQUIRE(r->bindings.size() == 1);
    CHECK(r->bindings[0].cseq == 6);
    CHECK(r->bindings[0].expires_in(clock.wall_ms()) == 60);
  }
  SUBCASE("another Call-ID replaces, whatever its CSeq") {
    auto r = loc.update(kAor, request("other", 1), {&a, 1});
    REQUIRE(r);
    REQUIRE(r->bindings.size() == 1);
    CHECK(r->bindings[0].call_id == "other");
  }
  SUBCASE("expires 0 removes") {
    BindingChange gone = change("sip:a@192.0.2.1", 0);
    auto r = loc.update(kAor, request("c1", 6), {&gone, 1});
    REQUIRE(r);
    CHECK(r->removed == 1);
    CHECK(r->bindings.empty());
    CHECK(loc.aor_count() == 0);
  }
  SUBCASE("URIs compare per RFC 3261 19.1.4") {
    BindingChange same = change("sip:a@192.0.2.1;transport=udp", 60);
    // transport present on one side only: a different binding.
    REQUIRE(loc.update(kAor, request("c1", 6), {&same, 1}));
    CHECK(loc.lookup(kAor).size() == 2);
    BindingChange same2 = change("SIP:a@192.0.2.1;TRANSPORT=UDP", 60);
    auto r = loc.update(kAor, request("c1", 7), {&same2, 1});
    REQUIRE(r);
    CHECK(r->refreshed == 1);
    CHECK(r->bindings.size() == 2);
  }
}

TEST_CASE("one REGISTER's changes apply all or nothing") {
  core::FakeClock clock;
  LocationService loc(clock, manual(), nullptr);
  BindingChange a = change("sip:a@192.0.2.1", 600);
  BindingChange b = change("sip:b@192.0.2.1", 600);
  REQUIRE(loc.update(kAor, request("call-a", 10), {&a, 1}));
  REQUIRE(loc.update(kAor, request("call-b", 1), {&b, 1}));
  clock.advance(5000);
  const auto before = loc.lookup(kAor);

  // b would be replaced (another Call-ID) but a is out of order: nothing changes.
  BindingChange both[] = {change("sip:b@192.0.2.1", 60), change("sip:a@192.0.2.1", 0),
                          change("sip:new@192.0.2.1", 60)};
  auto r = loc.update(kAor, request("call-a", 9), both);
  REQUIRE(!r);
  CHECK(r.error().status == 500);
  const auto after = loc.lookup(kAor);
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    CHECK(after[i].contact == before[i].contact);
    CHECK(after[i].call_id == before[i].call_id);
    CHECK(after[i].expires_at == before[i].expires_at);
  }
  CHECK(loc.size() == 2);

  // remove_all (Contact: *) checks every binding the same way.
  UpdateRequest star = request("call-a", 10);
  star.remove_all = true;
  CHECK(!loc.update(kAor, star, {}));
  CHECK(loc.lookup(kAor).size() == 2);
  star.cseq = 11;
  auto ok = loc.update(kAor, star, {});
  REQUIRE(ok);
  CHECK(ok->removed == 2);
  CHECK(loc.lookup(kAor).empty());
  CHECK(loc.aor_count() == 0);
}

TEST_CASE("outbound: +sip.instance and reg-id name the flow (RFC 5626 6)") {
  core::FakeClock clock;
  LocationService loc(clock, manual(), nullptr);
  BindingChange f1 = change("sip:alice@192.0.2.1:5060;transport=tcp;ob");
  f1.instance = "\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\"";
  f1.reg_id = 1;
  BindingChange f2 = f1;
  f2.reg_id = 2;
  BindingChange pair[] = {f1, f2};
  auto r = loc.update(kAor, request("c1", 1), pair);
  REQUIRE(r);
  CHECK(r->bindings.size() == 2);  // same URI, two flows

  // Flow 1 comes back from another address, with another Call-ID: it replaces flow 1.
  BindingChange f1b = change("sip:alice@198.51.100.7:40000;transport=tcp;ob");
  f1b.instance = "\"<urn:uuid:00000000-0000-1000-8000-aabbccddeeff>\"";
  f1b.reg_id = 1;
  r = loc.update(kAor, request("c2", 1), {&f1b, 1});
  REQUIRE(r);
  CHECK(r->refreshed == 1);
  REQUIRE(r->bindings.size() == 2);
  CHECK(r->bindings[0].contact == "sip:alice@198.51.100.7:40000;transport=tcp;ob");
  CHECK(r->bindings[0].reg_id == 1);
  CHECK(r->bindings[1].reg_id == 2);

  // A plain Contact with flow 2's URI is another binding: flows match by flow only.
  BindingChange plain = change("sip:alice@192.0.2.1:5060;transport=tcp;ob");
  r = loc.update(kAor, request("c3", 1), {&plain, 1});
  REQUIRE(r);
  CHECK(r->bindings.size() == 3);
}

TEST_CASE("limits fail the operation and evict nothing") {
  core::FakeClock clock;
  location::Settings s = manual();
  s.limits.max_bindings_per_aor = 2;
  s.limits.max_aors = 2;
  LocationService loc(clock, s, nullptr);
  BindingChange a = change("sip:a@192.0.2.1"), b = change("sip:b@192.0.2.1"),
                c = change("sip:c@192.0.2.1");
  REQUIRE(loc.update(kAor, request("c1", 1), {&a, 1}));
  REQUIRE(loc.update(kAor, request("c2", 1), {&b, 1}));
  auto r = loc.update(kAor, request("c3", 1), {&c, 1});
  REQUIRE(!r);
  CHECK(location::same_fault(r.error(), location::faults::kTooManyBindings));
  CHECK(r.error().status == 403);
  CHECK(loc.lookup(kAor).size() == 2);
  // Refreshing at the limit is fine; so is replacing one binding by another in one request.
  REQUIRE(loc.update(kAor, request("c1", 2), {&a, 1}));
  BindingChange swap[] = {change("sip:a@192.0.2.1", 0), c};
  REQUIRE(loc.update(kAor, request("c1", 3), swap));
  CHECK(contacts(loc.lookup(kAor)) == Strings{"sip:c@192.0.2.1", "sip:b@192.0.2.1"});

  REQUIRE(loc.update("sip:bob@example.com", request("c4", 1), {&a, 1}));
  r = loc.update("sip:carol@example.com", request("c5", 1), {&a, 1});
  REQUIRE(!r);
  CHECK(location::same_fault(r.error(), location::faults::kTableFull));
  CHECK(r.error().status == 503);
  CHECK(loc.aor_count() == 2);
  // A request's own limits win over the service's.
  UpdateRequest bigger = request("c5", 1);
  bigger.limits = location::Limits{10, 3};
  CHECK(loc.update("sip:carol@example.com", bigger, {&a, 1}));
  CHECK(loc.remove_all("sip:bob@example.com") == 1);
  CHECK(loc.remove_all("sip:carol@example.com") == 1);
  CHECK(loc.update("sip:dave@example.com", request("c6", 1), {&a, 1}));
}

TEST_CASE("bindings keep what the REGISTER said about them") {
  core::FakeClock clock;
  LocationService loc(clock, manual(), nullptr);
  BindingChange a = change("sip:a@[2001:db8::1]:5070;transport=tls", 300, 700);
  a.params = "unknownparam;+sip.rendering=\"no\"";
  a.instance = "\"<urn:uuid:1>\"";
  a.reg_id = 3;
  std::string_view path[] = {"<sip:p2.example.com;lr>", "<sip:p1.example.com;lr;ob>"};
  UpdateRequest req = request("abc@host", 42);
  req.path = path;
  req.user_agent = "Phone/1.0";
  req.source.protocol = core::Protocol::Tls;
  req.source.endpoint = *core::Endpoint::parse("2001:db8::1", 40123);
  req.source.connection = {1, 77};
  REQUIRE(loc.update(kAor, req, {&a, 1}));
  auto bs = loc.lookup(kAor);
  REQUIRE(bs.size() == 1);
  const auto& b = bs[0];
  CHECK(b.contact == "sip:a@[2001:db8::1]:5070;transport=tls");
  CHECK(b.params == "unknownparam;+sip.rendering=\"no\"");
  CHECK(b.q == 700);
  CHECK(b.instance == "\"<urn:uuid:1>\"");
  CHECK(b.reg_id == 3);
  CHECK(b.call_id == "abc@host");
  CHECK(b.cseq == 42);
  CHECK(b.path == Strings{"<sip:p2.example.com;lr>", "<sip:p1.example.com;lr;ob>"});
  CHECK(b.user_agent == "Phone/1.0");
  CHECK(b.source.protocol == core::Protocol::Tls);
  CHECK(b.source.endpoint.to_string() == "[2001:db8::1]:40123");
  CHECK(b.source.connection == core::ConnectionId{1, 77});
  CHECK(b.received_at == clock.wall_ms());
  CHECK(b.expires_at == clock.wall_ms() + 300'000);

  // A reg-id without an instance is no flow.
  BindingChange odd = change("sip:odd@192.0.2.1");
  odd.reg_id = 9;
  auto r = loc.update("sip:x@example.com", request("c", 1), {&odd, 1});
  REQUIRE(r);
  CHECK(r->bindings[0].reg_id == 0);
}

TEST_CASE("a binding's source keeps its address whatever its family, or none") {
  core::FakeClock clock;
  LocationService loc(clock, manual(), nullptr);
  BindingChange a = change("sip:a@198.51.100.7:5062");
  UpdateRequest req = request("v4", 1);
  req.source.protocol = core::Protocol::Tcp;
  req.source.endpoint = *core::Endpoint::parse("198.51.100.7", 40999);
  req.source.connection = {2, 0xfffffffe};
  REQUIRE(loc.update(kAor, req, {&a, 1}));
  // An operator's binding has no source: no address, not even 0.0.0.0.
  BindingChange st = change("sip:desk@192.0.2.50", 0);
  REQUIRE(loc.add_static("sip:desk@example.com", st));
  auto bs = loc.lookup(kAor);
  REQUIRE(bs.size() == 1);
  CHECK(bs[0].source.protocol == core::Protocol::Tcp);
  CHECK(bs[0].source.endpoint.to_string() == "198.51.100.7:40999");
  CHECK(bs[0].source.connection == core::ConnectionId{2, 0xfffffffe});
  bs = loc.lookup("sip:desk@example.com");
  REQUIRE(bs.size() == 1);
  CHECK(bs[0].source.endpoint.to_string() == core::Peer{}.endpoint.to_string());
  CHECK(bs[0].source.connection == core::ConnectionId{});
}

// "c<i>", built by appending: GCC 12 at -O3 reports a false -Wrestrict for "c" + to_string(i).
static std::string call_id_of(int i) {
  std::string s = "c";
  s += std::to_string(i);
  return s;
}

TEST_CASE("many AORs in one shard: every way out leaves the others findable") {
  // The AOR index is open addressing with backward-shift deletion: AORs leave by expiry,
  // by '*', by an operator's removal and by a REGISTER removing the last binding, in an
  // order unrelated to their insertion, while others come in (and the table grows).
  core::FakeClock clock;
  LocationService loc(clock, manual(1), nullptr);
  constexpr int kAors = 3000;
  auto aor_of = [](int i) { return "sip:u" + std::to_string(i) + "@example.com"; };
  std::vector<bool> present(kAors, false);
  auto check_all = [&] {
    size_t n = 0;
    for (int i = 0; i < kAors; ++i) {
      bool has = loc.has(aor_of(i));
      if (has != present[static_cast<size_t>(i)]) {
        FAIL_CHECK("AOR " << i << (has ? " present" : " missing"));
        return;
      }
      if (has) {
        auto bs = loc.lookup(aor_of(i));
        if (bs.size() != 1 || bs[0].call_id != call_id_of(i)) {
          FAIL_CHECK("AOR " << i << " lost its binding");
          return;
        }
        ++n;
      }
    }
    CHECK(loc.aor_count() == n);
  };
  uint32_t x = 12345;
  auto rnd = [&] {
    x = x * 1103515245u + 12345u;
    return (x >> 8) % kAors;
  };
  uint32_t cseq = 1;  // rising: every change is in order (§10.3 step 7)
  // Expiries spread over 100 s: a sweep removes a scattered subset.
  for (int i = 0; i < kAors; ++i) {
    std::string contact = "sip:ua" + std::to_string(i) + "@192.0.2.1";
    BindingChange c = change(contact, 60 + static_cast<uint32_t>(rnd() % 100));
    REQUIRE(loc.update(aor_of(i), request(call_id_of(i), 1), {&c, 1}));
    present[static_cast<size_t>(i)] = true;
  }
  check_all();
  for (int round = 0; round < 4; ++round) {
    for (int k = 0; k < 300; ++k) {
      const int i = static_cast<int>(rnd());
      const std::string aor = aor_of(i);
      const std::string call_id = call_id_of(i);
      switch (k % 3) {
        case 0:
          loc.remove_all(aor);
          break;
        case 1: {
          UpdateRequest star = request(call_id, ++cseq);
          star.remove_all = true;
          REQUIRE(loc.update(aor, star, {}));
          break;
        }
        default: {
          std::string contact = "sip:ua" + std::to_string(i) + "@192.0.2.1";
          BindingChange gone = change(contact, 0);
          REQUIRE(loc.update(aor, request(call_id, ++cseq), {&gone, 1}));
          break;
        }
      }
      present[static_cast<size_t>(i)] = false;
    }
    check_all();
    // Some come back (new ones land in the holes and past them).
    for (int k = 0; k < 200; ++k) {
      const int i = static_cast<int>(rnd());
      if (present[static_cast<size_t>(i)]) continue;
      std::string contact = "sip:ua" + std::to_string(i) + "@192.0.2.1";
      BindingChange c = change(contact, 1000);
      REQUIRE(loc.update(aor_of(i), request(call_id_of(i), ++cseq), {&c, 1}));
      present[static_cast<size_t>(i)] = true;
    }
    check_all();
  }
  // Expiry: everything registered for less than 160 s goes, the rest stays.
  clock.advance(160'000);
  loc.sweep(clock.wall_ms());
  for (int i = 0; i < kAors; ++i) {
    if (!present[static_cast<size_t>(i)]) continue;
    auto bs = loc.lookup(aor_of(i));
    REQUIRE(bs.size() <= 1);
    if (bs.empty() || bs[0].expires_at <= clock.wall_ms()) present[static_cast<size_t>(i)] = false;
  }
  check_all();
  CHECK(loc.size() == loc.aor_count());
}

TEST_CASE("operator bindings, remove, remove_all and for_each") {
  core::FakeClock clock;
  LocationService loc(clock, manual(), nullptr);
  BindingChange st = change("sip:desk@192.0.2.50", 0, 200);
  REQUIRE(loc.add_static(kAor, st));
  BindingChange a = change("sip:a@192.0.2.1", 60);
  REQUIRE(loc.update(kAor, request("c1", 1), {&a, 1}));
  auto bs = loc.lookup(kAor);
  REQUIRE(bs.size() == 2);
  CHECK(bs[1].is_static());

  // A REGISTER's '*' does not touch the operator's binding; expiry neither.
  UpdateRequest star = request("c1", 2);
  star.remove_all = true;
  auto r = loc.update(kAor, star, {});
  REQUIRE(r);
  CHECK(r->removed == 1);
  clock.advance(100'000'000);
  CHECK(loc.sweep(clock.wall_ms()) == 0);
  REQUIRE(loc.lookup(kAor).size() == 1);
  // Adding it again replaces it.
  st.q = 900;
  REQUIRE(loc.add_static(kAor, st));
  bs = loc.lookup(kAor);
  REQUIRE(bs.size() == 1);
  CHECK(bs[0].q == 900);

  REQUIRE(loc.update("sip:bob@example.com", request("c2", 1), {&a, 1}));
  BindingChange b = change("sip:b@192.0.2.1", 60);
  REQUIRE(loc.update("sip:bob@example.com", request("c3", 1), {&b, 1}));
  std::vector<std::string> seen;
  loc.for_each([&](std::string_view aor, const location::Binding& bd) {
    seen.push_back(std::string(aor) + " " + bd.contact);
  });
  std::sort(seen.begin(), seen.end());
  CHECK(seen == Strings{"sip:alice@example.com sip:desk@192.0.2.50",
                                         "sip:bob@example.com sip:a@192.0.2.1",
                                         "sip:bob@example.com sip:b@192.0.2.1"});

  CHECK(loc.remove("sip:bob@example.com", "sip:A@192.0.2.1") == 0);  // user part is case-sensitive
  CHECK(loc.remove("sip:bob@example.com", "sip:a@192.0.2.1") == 1);
  CHECK(loc.remove_all("sip:bob@example.com") == 1);
  CHECK(loc.remove_all("sip:bob@example.com") == 0);
  CHECK(loc.remove(kAor, "sip:desk@192.0.2.50") == 1);
  CHECK(loc.size() == 0);
  CHECK(loc.aor_count() == 0);
}

TEST_CASE("shards work independently under concurrent workers") {
  core::FakeClock clock;
  LocationService loc(clock, manual(8), nullptr);
  constexpr int kThreads = 4, kPerThread = 2000;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string aor = "sip:u" + std::to_string(t) + "_" + std::to_string(i) + "@example.com";
        BindingChange c = change("sip:ua@192.0.2.1");
        auto r = loc.update(aor, request("c", 1), {&c, 1});
        if (!r || loc.lookup(aor).size() != 1) ++failures;
        if (i % 2) loc.remove_all(aor);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  CHECK(loc.aor_count() == kThreads * kPerThread / 2);
  CHECK(loc.size() == kThreads * kPerThread / 2);
  size_t n = 0;
  loc.for_each([&](std::string_view, const location::Binding&) { ++n; });
  CHECK(n == kThreads * kPerThread / 2);
}

TEST_CASE("bad input to the table") {
  core::FakeClock clock;
  LocationService loc(clock, manual(), nullptr);
  BindingChange bad = change("not a uri");
  auto r = loc.update(kAor, request("c", 1), {&bad, 1});
  REQUIRE(!r);
  CHECK(location::same_fault(r.error(), location::faults::kBadContact));
  CHECK(r.error().status == 400);
  r = loc.update("", request("c", 1), {});
  REQUIRE(!r);
  CHECK(location::same_fault(r.error(), location::faults::kBadAor));
  std::string huge(70000, 'x');
  BindingChange ok = change("sip:a@192.0.2.1");
  UpdateRequest req = request("c", 1);
  req.user_agent = huge;
  r = loc.update(kAor, req, {&ok, 1});
  REQUIRE(!r);
  CHECK(location::same_fault(r.error(), location::faults::kTooLong));
  CHECK(loc.size() == 0);
  // Fetch (no Contact) of an unknown AOR creates nothing.
  auto fetch = loc.update(kAor, request("c", 2), {});
  REQUIRE(fetch);
  CHECK(fetch->bindings.empty());
  CHECK(loc.aor_count() == 0);
}

TEST_CASE("start/stop with the background sweeper, memory only") {
  core::SystemClock clock;
  location::Settings s;
  s.sweep_interval_ms = 5;
  LocationService loc(clock, s, nullptr);
  REQUIRE(loc.start());
  REQUIRE(loc.start());  // idempotent
  BindingChange a = change("sip:a@192.0.2.1", 3600);
  REQUIRE(loc.update(kAor, request("c1", 1), {&a, 1}));
  CHECK(loc.lookup(kAor).size() == 1);
  loc.stop();
  loc.stop();
  CHECK(loc.lookup(kAor).size() == 1);  // the table outlives stop()
  CHECK(loc.store_stats().written == 0);
}

TEST_CASE("apply_remote replaces an AOR with the shared store's copy; keep_own keeps ours it lacks") {
  core::FakeClock clock;
  LocationService loc(clock, manual(), nullptr);
  BindingChange a = change("sip:a@192.0.2.1"), b = change("sip:b@192.0.2.2");
  REQUIRE(loc.update(kAor, request("c1", 1), {&a, 1}));
  REQUIRE(loc.update(kAor, request("c2", 1), {&b, 1}));
  location::Binding theirs;
  theirs.contact = "sip:t@192.0.2.9";
  theirs.expires_at = clock.wall_ms() + 60'000;
  theirs.remote = true;
  location::Binding ours_b = loc.lookup(kAor)[0];  // b, the most recent
  REQUIRE(ours_b.contact == "sip:b@192.0.2.2");
  ours_b.cseq = 7;  // as the store holds it

  // The store may have lost `a` (it restarted, and is being re-read): ours stay.
  loc.apply_remote(kAor, {theirs, ours_b}, true);
  auto got = loc.lookup(kAor);
  std::vector<std::string> got_contacts = contacts(got);
  std::sort(got_contacts.begin(), got_contacts.end());
  CHECK(got_contacts == Strings{"sip:a@192.0.2.1", "sip:b@192.0.2.2", "sip:t@192.0.2.9"});
  for (const auto& x : got)
    if (x.contact == "sip:b@192.0.2.2") CHECK(x.cseq == 7);  // the store's copy of one it has
  CHECK(loc.size() == 3);

  // Otherwise the store is the truth: `a` was removed there.
  loc.apply_remote(kAor, {theirs, ours_b});
  CHECK(contacts(loc.lookup(kAor)) == Strings{"sip:b@192.0.2.2", "sip:t@192.0.2.9"});
  loc.apply_remote(kAor, {}, true);  // nothing there: ours stay, theirs go
  CHECK(contacts(loc.lookup(kAor)) == Strings{"sip:b@192.0.2.2"});
  loc.apply_remote(kAor, {});
  CHECK(loc.lookup(kAor).empty());
  CHECK(loc.size() == 0);
  CHECK(loc.aor_count() == 0);
  // A kept binding still expires.
  REQUIRE(loc.update(kAor, request("c1", 2), {&a, 1}));
  loc.apply_remote(kAor, {theirs}, true);
  clock.advance(3'601'000);
  CHECK(loc.sweep(clock.wall_ms()) == 2);
  CHECK(loc.size() == 0);
}
