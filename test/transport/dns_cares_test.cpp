// c-ares on a real libuv loop against a DNS server run by the test on 127.0.0.1 (a uv UDP
// socket on the same loop): answers, timeouts, closing with queries pending, and the whole
// per-worker stack (make_dns_resolver: c-ares + cache + RFC 3263). Every wait is bounded.
#include "transport/dns_cares.h"

#include <doctest/doctest.h>
#include <uv.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/clock.h"
#include "transport/dns_resolver.h"
#include "test/transport/dns_test_util.h"

using namespace sb;
using namespace sb::transport;
using namespace sb::transport::dns;
using namespace sb::transport::dns::test;

namespace {

// A DNS server on the test's loop: answers (qname, qtype) from `zone`, NXDOMAIN otherwise,
// nothing at all when `silent`.
struct TestServer {
  uv_udp_t udp{};
  std::map<std::string, std::vector<Rr>> zone;  // "A sip.example.test" → records
  bool silent = false;
  std::vector<std::string> queries;
  uint16_t port = 0;

  explicit TestServer(uv_loop_t* loop) {
    REQUIRE(uv_udp_init(loop, &udp) == 0);
    udp.data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    REQUIRE(uv_udp_bind(&udp, reinterpret_cast<const sockaddr*>(&addr), 0) == 0);
    sockaddr_storage ss{};
    int len = sizeof ss;
    uv_udp_getsockname(&udp, reinterpret_cast<sockaddr*>(&ss), &len);
    port = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    uv_udp_recv_start(&udp,
                      [](uv_handle_t*, size_t, uv_buf_t* buf) {
                        static char storage[4096];
                        *buf = uv_buf_init(storage, sizeof storage);
                      },
                      &TestServer::on_recv);
  }
  void close() { uv_close(reinterpret_cast<uv_handle_t*>(&udp), nullptr); }

  static void on_recv(uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr* from, unsigned) {
    auto* self = static_cast<TestServer*>(h->data);
    if (n < 17 || !from) return;
    const auto* p = reinterpret_cast<const uint8_t*>(buf->base);
    uint16_t id = uint16_t((p[0] << 8) | p[1]);
    std::string qname;
    size_t i = 12;
    while (i < size_t(n) && p[i] != 0) {
      if (!qname.empty()) qname += '.';
      qname.append(reinterpret_cast<const char*>(p + i + 1), p[i]);
      i += p[i] + 1;
    }
    if (i + 4 >= size_t(n)) return;
    Type qtype = Type(uint16_t((p[i + 1] << 8) | p[i + 2]));
    std::string key = std::string(type_name(qtype)) + " " + qname;
    self->queries.push_back(key);
    if (self->silent) return;
    auto it = self->zone.find(key);
    Bytes out = it == self->zone.end() ? response(id, qname, qtype, 3, {})
                                       : response(id, qname, qtype, 0, it->second);
    auto* req = new uv_udp_send_t;
    auto* data = new Bytes(std::move(out));
    req->data = data;
    uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(data->data()), static_cast<unsigned>(data->size()));
    uv_udp_send(req, h, &b, 1, from, [](uv_udp_send_t* r, int) {
      delete static_cast<Bytes*>(r->data);
      delete r;
    });
  }
};

struct Loop {
  uv_loop_t loop{};
  uv_timer_t tick{};
  Loop() {
    uv_loop_init(&loop);
    // Wakes uv_run(ONCE) up regularly so the waits below can check their deadline.
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, [](uv_timer_t*) {}, 10, 10);
  }
  // Runs the loop until `done()` or `ms` have passed; returns done().
  template <class F>
  bool run_until(F done, int ms = 5000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(&loop, UV_RUN_ONCE);
    return done();
  }
  // Closes the tick, runs until every handle has closed; the loop must close cleanly.
  void finish() {
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
  }
};

std::string server_of(const TestServer& s) { return "127.0.0.1:" + std::to_string(s.port); }

}  // namespace

TEST_CASE("c-ares: a query is answered on the loop") {
  Loop l;
  TestServer server(&l.loop);
  server.zone["A sip.example.test"] = {a_rr("sip.example.test", "127.0.0.7", 60)};
  std::string err;
  auto ch = CaresChannel::create(&l.loop, {server_of(server), 500, 2}, err);
  REQUIRE_MESSAGE(ch, err);
  int processed = 0;
  ch->set_after_process([&] { ++processed; });
  std::vector<Answer> got;
  ch->query("sip.example.test", Type::A, [&](Answer a) { got.push_back(std::move(a)); });
  ch->query("nope.example.test", Type::A, [&](Answer a) { got.push_back(std::move(a)); });
  CHECK(got.empty());  // never inside query()
  REQUIRE(l.run_until([&] { return got.size() == 2; }));
  CHECK(processed >= 1);
  for (const Answer& a : got) {
    if (a.status == Status::Ok) {
      REQUIRE(a.addresses.size() == 1);
      CHECK(a.addresses[0].ip() == "127.0.0.7");
      CHECK(a.ttl_s == 60);
    } else {
      CHECK(a.status == Status::NoSuchName);
    }
  }
  ch->close();
  server.close();
  l.finish();
}

TEST_CASE("c-ares: a server that never answers → a timeout, after the configured tries") {
  Loop l;
  TestServer server(&l.loop);
  server.silent = true;
  std::string err;
  auto ch = CaresChannel::create(&l.loop, {server_of(server), 50, 2}, err);
  REQUIRE(ch);
  std::vector<Answer> got;
  auto t0 = std::chrono::steady_clock::now();
  ch->query("sip.example.test", Type::A, [&](Answer a) { got.push_back(std::move(a)); });
  REQUIRE(l.run_until([&] { return !got.empty(); }));
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(got[0].status == Status::Failed);
  CHECK(got[0].error == "timeout");
  CHECK(got[0].timed_out);
  CHECK(server.queries.size() == 2);
  CHECK(took < std::chrono::seconds(3));
  ch->close();
  server.close();
  l.finish();
}

TEST_CASE("c-ares: closing with queries pending drops them and frees every handle") {
  Loop l;
  TestServer server(&l.loop);
  server.silent = true;
  std::string err;
  auto ch = CaresChannel::create(&l.loop, {server_of(server), 2000, 2}, err);
  REQUIRE(ch);
  int called = 0;
  for (int i = 0; i < 5; ++i) {
    std::string name = "q";  // appended: GCC 12 at -O3 reports a false -Wrestrict for "q" + ...
    name += std::to_string(i);
    name += ".example.test";
    ch->query(name, Type::A, [&](Answer) { ++called; });
  }
  REQUIRE(l.run_until([&] { return server.queries.size() == 5; }));
  ch->close();
  ch->close();  // idempotent
  CHECK(called == 0);
  // After close a query fails at once.
  Answer after;
  ch->query("x.example.test", Type::A, [&](Answer a) { after = std::move(a); });
  CHECK(after.status == Status::Failed);
  server.close();
  l.finish();  // uv_loop_close == 0: no poll or timer handle was left
  ch.reset();
  CHECK(called == 0);
}

TEST_CASE("c-ares: bad server addresses are refused at creation") {
  Loop l;
  std::string err;
  auto ch = CaresChannel::create(&l.loop, {"not-an-ip:53", 500, 1}, err);
  CHECK_FALSE(ch);
  CHECK(err.find("not-an-ip:53") != std::string::npos);
  l.finish();
}

TEST_CASE("make_dns_resolver: NAPTR → SRV → A over c-ares, then from the cache") {
  Loop l;
  TestServer server(&l.loop);
  server.zone["NAPTR example.test"] = {naptr_rr("example.test", 10, 10, "s", "SIP+D2T", "_sip._tcp.example.test", 60)};
  server.zone["SRV _sip._tcp.example.test"] = {srv_rr("_sip._tcp.example.test", 10, 1, 5070, "sip1.example.test", 60),
                                               srv_rr("_sip._tcp.example.test", 20, 1, 5080, "sip2.example.test", 60)};
  server.zone["A sip1.example.test"] = {a_rr("sip1.example.test", "127.0.0.1", 60)};
  server.zone["A sip2.example.test"] = {a_rr("sip2.example.test", "127.0.0.2", 60)};
  server.zone["AAAA sip2.example.test"] = {a_rr("sip2.example.test", "::1", 60)};
  core::SystemClock clock;
  DnsSettings s;
  s.servers = {server_of(server)};
  s.timeout_ms = 500;
  std::string err;
  auto r = make_dns_resolver(&l.loop, clock, s, err);
  REQUIRE_MESSAGE(r, err);
  int hooks = 0;
  r->set_after_answers([&] { ++hooks; });
  auto uri = core::parse_uri("sip:bob@example.test");
  REQUIRE(uri.ok());
  std::vector<ServerList> got;
  for (int i = 0; i < 50; ++i) r->resolve(*uri, [&](ServerList list) { got.push_back(std::move(list)); });
  REQUIRE(l.run_until([&] { return got.size() == 50; }));
  CHECK(hooks >= 1);
  REQUIRE(got[0].servers.size() == 3);
  CHECK(got[0].servers[0].protocol == core::Protocol::Tcp);
  CHECK(got[0].servers[0].endpoint.to_string() == "127.0.0.1:5070");
  CHECK(got[0].servers[1].endpoint.to_string() == "127.0.0.2:5080");
  CHECK(got[0].servers[2].endpoint.to_string() == "[::1]:5080");
  // One query per name and type, whatever the number of resolutions.
  CHECK(server.queries.size() == 6);
  int sync = 0;
  r->resolve(*uri, [&](ServerList list) {
    ++sync;
    CHECK(list.servers.size() == 3);
  });
  CHECK(sync == 1);
  CHECK(server.queries.size() == 6);

  // Stopping drops what is pending.
  auto other = core::parse_uri("sip:bob@other.test");
  REQUIRE(other.ok());
  server.silent = true;
  int late = 0;
  r->resolve(*other, [&](ServerList) { ++late; });
  r->stop();
  server.close();
  l.finish();
  r.reset();
  CHECK(late == 0);
}
