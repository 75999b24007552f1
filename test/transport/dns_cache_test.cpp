// The DNS cache on an injected clock: TTLs and their cap, negative caching (NXDOMAIN, no
// data, the SOA's TTL), failures not kept, and queries in flight shared.
#include "transport/dns_cache.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/clock.h"
#include "test/transport/dns_test_util.h"

using namespace sb;
using namespace sb::transport::dns;
using namespace sb::transport::dns::test;

namespace {

struct Fixture {
  core::FakeClock clock;
  FakeDns upstream;
  Cache cache{upstream, clock, CacheSettings{3600, 30, 100000}};
  std::vector<Answer> got;

  std::function<void(Answer)> collect() {
    return [this](Answer a) { got.push_back(std::move(a)); };
  }
  void ask(const std::string& name, Type t) { cache.query(name, t, collect()); }
};

}  // namespace

TEST_CASE("dns cache: an answer is kept for its TTL") {
  Fixture f;
  f.upstream.zone["A sip.example.com"] = answer_of("sip.example.com", Type::A, 0, {a_rr("sip.example.com", "192.0.2.1", 60)});
  f.ask("sip.example.com", Type::A);
  CHECK(f.got.empty());
  f.upstream.answer_all();
  REQUIRE(f.got.size() == 1);
  CHECK(f.got[0].addresses.size() == 1);

  f.clock.advance(59000);
  f.ask("SIP.example.com.", Type::A);  // same name: case and root dot do not matter
  CHECK(f.got.size() == 2);            // from the cache, before query() returned
  CHECK(f.upstream.asked.size() == 1);
  CHECK(f.cache.stats().hits == 1);

  f.clock.advance(1000);  // expired
  f.ask("sip.example.com", Type::A);
  CHECK(f.upstream.asked.size() == 2);
  CHECK(f.got.size() == 2);
  f.upstream.answer_all();
  CHECK(f.got.size() == 3);

  // Another type of the same name is another entry.
  f.ask("sip.example.com", Type::Aaaa);
  CHECK(f.upstream.asked.back() == "AAAA sip.example.com");
}

TEST_CASE("dns cache: the TTL is capped by max_ttl_s; TTL 0 is not kept") {
  core::FakeClock clock;
  FakeDns upstream;
  Cache cache(upstream, clock, CacheSettings{10, 30, 100});
  upstream.immediate = true;
  upstream.zone["A long.example.com"] = answer_of("long.example.com", Type::A, 0, {a_rr("long.example.com", "192.0.2.1", 86400)});
  upstream.zone["A zero.example.com"] = answer_of("zero.example.com", Type::A, 0, {a_rr("zero.example.com", "192.0.2.1", 0)});
  int n = 0;
  auto count = [&n](Answer) { ++n; };
  cache.query("long.example.com", Type::A, count);
  clock.advance(9999);
  cache.query("long.example.com", Type::A, count);
  CHECK(upstream.count("A long.example.com") == 1);
  clock.advance(1);
  cache.query("long.example.com", Type::A, count);
  CHECK(upstream.count("A long.example.com") == 2);

  cache.query("zero.example.com", Type::A, count);
  cache.query("zero.example.com", Type::A, count);
  CHECK(upstream.count("A zero.example.com") == 2);
  CHECK(n == 5);
}

TEST_CASE("dns cache: NXDOMAIN and no data are kept for negative_ttl_s, or the SOA's less") {
  Fixture f;
  f.upstream.immediate = true;
  f.upstream.zone["A nope.example.com"] = answer_of("nope.example.com", Type::A, 3, {});
  f.upstream.zone["AAAA v4only.example.com"] = answer_of("v4only.example.com", Type::Aaaa, 0, {});
  f.upstream.zone["A soa.example.com"] = answer_of("soa.example.com", Type::A, 3, {}, {soa_rr("example.com", 3600, 5)});
  for (int i = 0; i < 100; ++i) {
    f.ask("nope.example.com", Type::A);
    f.ask("v4only.example.com", Type::Aaaa);
    f.ask("soa.example.com", Type::A);
  }
  CHECK(f.got.size() == 300);
  CHECK(f.got[0].status == Status::NoSuchName);
  CHECK(f.got[1].negative());
  CHECK(f.upstream.asked.size() == 3);

  f.clock.advance(5000);  // the SOA's 5 s are over, negative_ttl_s (30) not yet
  f.ask("soa.example.com", Type::A);
  f.ask("nope.example.com", Type::A);
  CHECK(f.upstream.count("A soa.example.com") == 2);
  CHECK(f.upstream.count("A nope.example.com") == 1);
  f.clock.advance(25000);
  f.ask("nope.example.com", Type::A);
  f.ask("v4only.example.com", Type::Aaaa);
  CHECK(f.upstream.count("A nope.example.com") == 2);
  CHECK(f.upstream.count("AAAA v4only.example.com") == 2);
}

TEST_CASE("dns cache: failures are delivered to every waiter and not kept") {
  Fixture f;
  Answer fail;
  fail.status = Status::Failed;
  fail.error = "timeout";
  f.upstream.zone["A slow.example.com"] = fail;
  f.ask("slow.example.com", Type::A);
  f.ask("slow.example.com", Type::A);
  f.upstream.answer_all();
  REQUIRE(f.got.size() == 2);
  CHECK(f.got[1].error == "timeout");
  f.ask("slow.example.com", Type::A);
  CHECK(f.upstream.count("A slow.example.com") == 2);
  CHECK(f.cache.size() == 1);  // only the pending one
}

TEST_CASE("dns cache: a thousand queries for one new name make one upstream query") {
  Fixture f;
  f.upstream.zone["NAPTR new.example.com"] = answer_of("new.example.com", Type::Naptr, 0, {});
  for (int i = 0; i < 1000; ++i) f.ask("new.example.com", Type::Naptr);
  CHECK(f.upstream.asked.size() == 1);
  CHECK(f.cache.stats().coalesced == 999);
  CHECK(f.got.empty());
  f.upstream.answer_all();
  CHECK(f.got.size() == 1000);
  CHECK(f.cache.stats().queries == 1);
}

TEST_CASE("dns cache: a waiter may query again from its callback") {
  Fixture f;
  f.upstream.zone["A a.example.com"] = answer_of("a.example.com", Type::A, 0, {a_rr("a.example.com", "192.0.2.1", 0)});
  f.upstream.zone["A b.example.com"] = answer_of("b.example.com", Type::A, 0, {a_rr("b.example.com", "192.0.2.2", 60)});
  int done = 0;
  f.cache.query("a.example.com", Type::A, [&](Answer) {
    // TTL 0: not kept, so this asks again; b is new.
    f.cache.query("a.example.com", Type::A, [&](Answer) { ++done; });
    f.cache.query("b.example.com", Type::A, [&](Answer) { ++done; });
  });
  f.upstream.answer_all();
  CHECK(done == 2);
  CHECK(f.upstream.count("A a.example.com") == 2);
}

TEST_CASE("dns cache: bounded; expired entries make room") {
  core::FakeClock clock;
  FakeDns upstream;
  upstream.immediate = true;
  Cache cache(upstream, clock, CacheSettings{3600, 30, 4});
  for (int i = 0; i < 10; ++i) {
    std::string name = "h" + std::to_string(i) + ".example.com";
    upstream.zone["A " + name] = answer_of(name, Type::A, 0, {a_rr(name, "192.0.2.1", 10)});
    cache.query(name, Type::A, [](Answer) {});
  }
  CHECK(cache.size() <= 4);
  clock.advance(10000);
  cache.query("h9.example.com", Type::A, [](Answer) {});
  CHECK(cache.size() <= 4);
}
