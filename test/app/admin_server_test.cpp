#include "app/admin_server.h"

#include <doctest/doctest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "app/metrics.h"
#include "test/app/admin_test_util.h"

using namespace sb::app;
using namespace sb::app::test;
using nlohmann::json;

namespace {

// The server on a loop this thread steps (pump_until), with a fake backend.
struct Harness {
  uv_loop_t loop;
  FakeBackend backend;
  std::unique_ptr<AdminServer> server;

  explicit Harness(AdminLimits limits = {}) {
    uv_loop_init(&loop);
    server = std::make_unique<AdminServer>(&loop, backend, limits);
    auto st = server->start("127.0.0.1", 0);
    REQUIRE_MESSAGE(st.ok(), (st.ok() ? "" : st.error().reason));
    REQUIRE(server->port() != 0);
  }
  ~Harness() {
    server.reset();
    CHECK(drain());
    CHECK(uv_loop_close(&loop) == 0);
  }
  uint16_t port() const { return server->port(); }

  // Run the loop until it has nothing left (every handle closed and freed), bounded.
  bool drain() {
    return pump_until(&loop, {}, [&] { return !uv_loop_alive(&loop); });
  }
  bool pump(std::vector<Client*> clients, const std::function<bool()>& done, int timeout_ms = 5000) {
    return pump_until(&loop, std::move(clients), done, timeout_ms);
  }
  void send(Client& c, std::string_view data) {
    size_t off = 0;
    bool ok = pump({&c}, [&] {
      off += c.send_some(data.substr(off));
      return off == data.size() || c.closed_by_peer();
    });
    REQUIRE(ok);
  }
  std::optional<HttpAnswer> answer(Client& c, int timeout_ms = 5000) {
    std::optional<HttpAnswer> a;
    pump({&c}, [&] {
      a = take_answer(c.buf);
      return a.has_value() || c.closed_by_peer();
    }, timeout_ms);
    if (!a) a = take_answer(c.buf);
    return a;
  }
  std::optional<HttpAnswer> exchange(Client& c, std::string_view request) {
    send(c, request);
    return answer(c);
  }
  bool wait_closed(Client& c) {
    return pump({&c}, [&] { return c.closed_by_peer(); });
  }
};

std::string get(const std::string& target) { return "GET " + target + " HTTP/1.1\r\nHost: t\r\n\r\n"; }
std::string request(const std::string& method, const std::string& target, const std::string& body = "") {
  return method + " " + target + " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}
json body_json(const HttpAnswer& a) { return json::parse(a.body); }

}  // namespace

TEST_CASE("GET /health: 200 ok, 503 with the detail when unhealthy") {
  Harness h;
  Client c(h.port());
  auto a = h.exchange(c, get("/health"));
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(a->header("content-type") == "application/json");
  CHECK(body_json(*a) == json{{"status", "ok"}});

  h.backend.snapshot.healthy = false;
  h.backend.snapshot.health_detail = "worker 1 stalled";
  a = h.exchange(c, get("/health"));
  REQUIRE(a);
  CHECK(a->status == 503);
  CHECK(body_json(*a) == json{{"status", "unhealthy"}, {"detail", "worker 1 stalled"}});
}

TEST_CASE("GET /stats is the snapshot's JSON; GET /metrics the Prometheus text") {
  Harness h;
  Client c(h.port());
  auto a = h.exchange(c, get("/stats"));
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(body_json(*a) == stats_json(h.backend.snapshot));

  a = h.exchange(c, get("/metrics"));
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(a->header("content-type") == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(a->body == prometheus_text(h.backend.snapshot));
  CHECK(h.backend.stats_calls == 2);
}

TEST_CASE("POST /reload: 200 with the generation, 422 with the errors") {
  Harness h;
  Client c(h.port());
  auto a = h.exchange(c, request("POST", "/reload"));
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(body_json(*a) == json{{"ok", true}, {"generation", 4}});

  h.backend.outcome = ReloadOutcome{false, 4, {"listen[1].port: expected 1..65535", "default.lua:3: syntax"}};
  a = h.exchange(c, request("POST", "/reload"));
  REQUIRE(a);
  CHECK(a->status == 422);
  auto j = body_json(*a);
  CHECK(j["ok"] == false);
  CHECK(j["generation"] == 4);
  CHECK(j["errors"] == json::array({"listen[1].port: expected 1..65535", "default.lua:3: syntax"}));
  CHECK(h.backend.reload_calls == 2);
}

TEST_CASE("async answers: the response waits for the backend; a second reload meanwhile gets 409") {
  Harness h;
  h.backend.hold = true;
  Client c1(h.port()), c2(h.port()), c3(h.port());
  h.send(c1, request("POST", "/reload"));
  REQUIRE(h.pump({&c1}, [&] { return h.backend.pending_reloads.size() == 1; }));
  CHECK(c1.buf.empty());

  auto a2 = h.exchange(c2, request("POST", "/reload"));
  REQUIRE(a2);
  CHECK(a2->status == 409);
  CHECK(body_json(*a2)["ok"] == false);
  CHECK(h.backend.reload_calls == 1);

  // Stats answered while the reload is still out.
  h.send(c3, get("/stats"));
  REQUIRE(h.pump({&c3}, [&] { return h.backend.pending_stats.size() == 1; }));
  auto stats_done = std::move(h.backend.pending_stats[0]);
  stats_done(h.backend.snapshot);
  auto a3 = h.answer(c3);
  REQUIRE(a3);
  CHECK(a3->status == 200);

  auto reload_done = std::move(h.backend.pending_reloads[0]);
  h.backend.pending_reloads.clear();
  reload_done(ReloadOutcome{true, 9, {}});
  auto a1 = h.answer(c1);
  REQUIRE(a1);
  CHECK(a1->status == 200);
  CHECK(body_json(*a1)["generation"] == 9);

  // The reload is over: the next one goes to the backend.
  h.send(c2, request("POST", "/reload"));
  REQUIRE(h.pump({&c2}, [&] { return h.backend.pending_reloads.size() == 1; }));
  h.backend.pending_reloads[0](ReloadOutcome{true, 10, {}});
  auto a4 = h.answer(c2);
  REQUIRE(a4);
  CHECK(a4->status == 200);
}

TEST_CASE("a client that resets before the async answer: the answer is dropped, nothing breaks") {
  Harness h;
  h.backend.hold = true;
  {
    Client c(h.port());
    h.send(c, get("/stats"));
    REQUIRE(h.pump({&c}, [&] { return h.backend.pending_stats.size() == 1 && h.server->connections() == 1; }));
    c.abort();
  }
  REQUIRE(h.pump({}, [&] { return h.server->connections() == 0; }));
  {
    Client c(h.port());
    h.send(c, request("POST", "/reload"));
    REQUIRE(h.pump({&c}, [&] { return h.backend.pending_reloads.size() == 1; }));
    c.abort();
  }
  REQUIRE(h.pump({}, [&] { return h.server->connections() == 0; }));
  h.backend.pending_stats[0](h.backend.snapshot);  // to a connection that is gone
  h.backend.pending_reloads[0](ReloadOutcome{true, 5, {}});
  h.backend.pending_stats.clear();
  h.backend.pending_reloads.clear();

  // The server still serves, and the dropped reload no longer blocks the next one.
  h.backend.hold = false;
  Client c(h.port());
  auto a = h.exchange(c, request("POST", "/reload"));
  REQUIRE(a);
  CHECK(a->status == 200);
}

TEST_CASE("a client that half-closes after its request still gets the async answer") {
  Harness h;
  h.backend.hold = true;
  Client c(h.port());
  h.send(c, get("/health"));
  ::shutdown(c.fd, SHUT_WR);
  REQUIRE(h.pump({&c}, [&] { return h.backend.pending_stats.size() == 1; }));
  h.backend.pending_stats[0](h.backend.snapshot);
  auto a = h.answer(c);
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(h.wait_closed(c));
  REQUIRE(h.pump({}, [&] { return h.server->connections() == 0; }));
}

TEST_CASE("stop() with an answer outstanding: the answer later is a no-op, the loop ends cleanly") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  FakeBackend backend;
  backend.hold = true;
  {
    auto server = std::make_unique<AdminServer>(&loop, backend);
    REQUIRE(server->start("127.0.0.1", 0).ok());
    Client c(server->port());
    size_t off = 0;
    std::string req = get("/stats") + request("POST", "/reload");
    REQUIRE(pump_until(&loop, {&c}, [&] {
      off += c.send_some(std::string_view(req).substr(off));
      return backend.pending_stats.size() == 1;
    }));
    server->stop();
    CHECK(!server->running());
    CHECK(server->connections() == 0);
    REQUIRE(pump_until(&loop, {&c}, [&] { return c.closed_by_peer(); }));
    server.reset();
  }
  backend.pending_stats[0](backend.snapshot);  // the server is gone
  CHECK(pump_until(&loop, {}, [&] { return !uv_loop_alive(&loop); }));
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("GET /location lists bindings, all or one AOR (query %-decoded)") {
  Harness h;
  h.backend.entries = sample_entries();
  Client c(h.port());
  auto a = h.exchange(c, get("/location"));
  REQUIRE(a);
  CHECK(a->status == 200);
  auto j = body_json(*a);
  REQUIRE(j["bindings"].size() == 2);
  CHECK(j["bindings"][0] == json{{"aor", "sip:bob@example.com"},
                                 {"contact", "sip:bob@192.0.2.1:5060"},
                                 {"q", 0.5},
                                 {"expires_in_s", 3600},
                                 {"static", false},
                                 {"source", "udp:192.0.2.1:5060"},
                                 {"user_agent", "Phone/1.0"}});
  CHECK(j["bindings"][1]["static"] == true);
  CHECK(j["bindings"][1]["expires_in_s"] == -1);

  a = h.exchange(c, get("/location?aor=sip%3Aalice%40example.com"));
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(body_json(*a)["bindings"].size() == 1);
  CHECK(h.backend.list_calls.back() == "sip:alice@example.com");

  a = h.exchange(c, get("/location?aor=sip:nobody@example.com"));
  REQUIRE(a);
  CHECK(body_json(*a) == json{{"bindings", json::array()}});

  a = h.exchange(c, get("/location?aor=%zz"));
  REQUIRE(a);
  CHECK(a->status == 400);
  CHECK(body_json(*a).contains("error"));
}

TEST_CASE("POST /location adds a binding; bad bodies get 400 naming the field") {
  Harness h;
  Client c(h.port());
  auto a = h.exchange(c, request("POST", "/location",
                                 R"({"aor": "sip:bob@example.com", "contact": "sip:bob@192.0.2.1:5060", "q": 0.5, "expires": 0})"));
  REQUIRE(a);
  CHECK(a->status == 201);
  CHECK(body_json(*a)["ok"] == true);
  REQUIRE(h.backend.added.size() == 1);
  CHECK(h.backend.added[0].aor == "sip:bob@example.com");
  CHECK(h.backend.added[0].contact == "sip:bob@192.0.2.1:5060");
  CHECK(h.backend.added[0].q == 0.5);
  CHECK(h.backend.added[0].expires == 0);

  a = h.exchange(c, request("POST", "/location", R"({"aor": "sip:a@x", "contact": "sip:a@1.2.3.4", "expires": 600})"));
  REQUIRE(a);
  CHECK(a->status == 201);
  CHECK(h.backend.added.back().q == 1.0);
  CHECK(h.backend.added.back().expires == 600);

  struct Bad {
    const char* body;
    const char* error_has;
  };
  for (Bad b : {Bad{"{not json", "bad JSON"}, Bad{"[1,2]", "expected an object"},
                Bad{R"({"contact": "sip:a@1.2.3.4"})", "missing field: aor"},
                Bad{R"({"aor": "sip:a@x"})", "missing field: contact"},
                Bad{R"({"aor": 5, "contact": "sip:a@1.2.3.4"})", "field aor"},
                Bad{R"({"aor": "", "contact": "sip:a@1.2.3.4"})", "field aor"},
                Bad{R"({"aor": "sip:a@x", "contact": "sip:a@1.2.3.4", "q": 2})", "field q"},
                Bad{R"({"aor": "sip:a@x", "contact": "sip:a@1.2.3.4", "q": "high"})", "field q"},
                Bad{R"({"aor": "sip:a@x", "contact": "sip:a@1.2.3.4", "expires": -1})", "field expires"},
                Bad{R"({"aor": "sip:a@x", "contact": "sip:a@1.2.3.4", "expires": 1.5})", "field expires"},
                Bad{R"({"aor": "sip:a@x", "contact": "sip:a@1.2.3.4", "expires": 99999999999})", "field expires"},
                Bad{"", "bad JSON"}}) {
    INFO(b.body);
    a = h.exchange(c, request("POST", "/location", b.body));
    REQUIRE(a);
    CHECK(a->status == 400);
    auto j = body_json(*a);
    CHECK(j["error"].get<std::string>().find(b.error_has) != std::string::npos);
  }
  CHECK(h.backend.added.size() == 2);

  // Not JSON by its Content-Type (a form post): 415.
  a = h.exchange(c, "POST /location HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    "Content-Length: 2\r\n\r\n{}");
  REQUIRE(a);
  CHECK(a->status == 415);
  a = h.exchange(c, "POST /location HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}");
  REQUIRE(a);
  CHECK(a->status == 415);
  a = h.exchange(c, "POST /location HTTP/1.1\r\nHost: t\r\nContent-Type: Application/JSON; charset=utf-8\r\n"
                    "Content-Length: 2\r\n\r\n{}");
  REQUIRE(a);
  CHECK(a->status == 400);  // got past the type check: missing field
  CHECK(h.backend.added.size() == 2);

  // The backend's refusal, with the status it maps to.
  h.backend.add_status = sb::core::Error{"too many bindings for this address-of-record", 403};
  a = h.exchange(c, request("POST", "/location", R"({"aor": "sip:a@x", "contact": "sip:a@1.2.3.4"})"));
  REQUIRE(a);
  CHECK(a->status == 403);
  CHECK(body_json(*a)["error"] == "too many bindings for this address-of-record");
  h.backend.add_status = sb::core::Error{"unparsable URI", 400, "Contact"};
  a = h.exchange(c, request("POST", "/location", R"({"aor": "sip:a@x", "contact": "nope"})"));
  REQUIRE(a);
  CHECK(a->status == 400);
  CHECK(body_json(*a)["error"] == "bad Contact: unparsable URI");
}

TEST_CASE("DELETE /location removes by AOR or AOR+contact; 404 when nothing matched") {
  Harness h;
  Client c(h.port());
  h.backend.remove_result = 2;
  auto a = h.exchange(c, request("DELETE", "/location?aor=sip%3Abob%40example.com"));
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(body_json(*a) == json{{"removed", 2}});
  CHECK(h.backend.removed.back() == std::pair<std::string, std::string>{"sip:bob@example.com", ""});

  h.backend.remove_result = 1;
  a = h.exchange(c, request("DELETE", "/location?aor=sip:bob@example.com&contact=sip%3Abob%40192.0.2.1%3A5060"));
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(h.backend.removed.back() ==
        std::pair<std::string, std::string>{"sip:bob@example.com", "sip:bob@192.0.2.1:5060"});

  h.backend.remove_result = 0;
  a = h.exchange(c, request("DELETE", "/location?aor=sip:x@y"));
  REQUIRE(a);
  CHECK(a->status == 404);
  CHECK(body_json(*a)["removed"] == 0);

  a = h.exchange(c, request("DELETE", "/location"));
  REQUIRE(a);
  CHECK(a->status == 400);
  CHECK(body_json(*a)["error"] == "missing query parameter: aor");
  CHECK(h.backend.removed.size() == 3);
}

TEST_CASE("unknown path 404, wrong method 405 with Allow") {
  Harness h;
  Client c(h.port());
  auto a = h.exchange(c, get("/nope"));
  REQUIRE(a);
  CHECK(a->status == 404);
  CHECK(body_json(*a)["error"].get<std::string>().find("/nope") != std::string::npos);

  a = h.exchange(c, get("/"));
  REQUIRE(a);
  CHECK(a->status == 404);

  struct Case {
    const char* method;
    const char* path;
    const char* allow;
  };
  for (Case k : {Case{"POST", "/health", "GET"}, Case{"DELETE", "/stats", "GET"}, Case{"PUT", "/metrics", "GET"},
                 Case{"GET", "/reload", "POST"}, Case{"PUT", "/location", "GET, POST, DELETE"}}) {
    INFO(k.method << " " << k.path);
    a = h.exchange(c, request(k.method, k.path));
    REQUIRE(a);
    CHECK(a->status == 405);
    CHECK(a->header("allow") == k.allow);
    CHECK(body_json(*a).contains("error"));
  }
  CHECK(h.backend.stats_calls == 0);
  // HEAD: the same head, no body (the framing of the connection stays right).
  h.send(c, "HEAD /reload HTTP/1.1\r\nHost: t\r\n\r\n");
  REQUIRE(h.pump({&c}, [&] { return c.buf.find("\r\n\r\n") != std::string::npos; }));
  CHECK(c.buf.rfind("HTTP/1.1 405", 0) == 0);
  CHECK(c.buf.find("Allow: POST\r\n") != std::string::npos);
  CHECK(c.buf.size() == c.buf.find("\r\n\r\n") + 4);
  c.buf.clear();
  a = h.exchange(c, get("/health"));
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(h.backend.stats_calls == 1);  // the GET /health only
  CHECK(h.backend.reload_calls == 0);
  // Still the same connection: errors in the request do not cost the connection.
  CHECK(!c.closed_by_peer());
  CHECK(h.server->connections() == 1);
}

TEST_CASE("requests from a browser (Origin header) are refused") {
  Harness h;
  Client c(h.port());
  auto a = h.exchange(c, "POST /reload HTTP/1.1\r\nHost: t\r\nOrigin: http://evil.example\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(a);
  CHECK(a->status == 403);
  a = h.exchange(c, "GET /location HTTP/1.1\r\nHost: t\r\nOrigin: null\r\n\r\n");
  REQUIRE(a);
  CHECK(a->status == 403);
  CHECK(h.backend.reload_calls == 0);
  CHECK(h.backend.list_calls.empty());
}

TEST_CASE("keep-alive: sequential and pipelined requests on one connection, answered in order") {
  Harness h;
  Client c(h.port());
  for (int i = 0; i < 3; ++i) {
    auto a = h.exchange(c, get("/health"));
    REQUIRE(a);
    CHECK(a->status == 200);
    CHECK(a->header("connection") != "close");
  }
  // Pipelined, with an async answer in the middle: the answers keep the request order.
  h.backend.hold = true;
  h.send(c, get("/stats") + get("/nope") + get("/location"));
  REQUIRE(h.pump({&c}, [&] { return h.backend.pending_stats.size() == 1; }));
  CHECK(c.buf.empty());
  h.backend.pending_stats[0](h.backend.snapshot);
  std::vector<int> statuses;
  REQUIRE(h.pump({&c}, [&] {
    while (auto a = take_answer(c.buf)) statuses.push_back(a->status);
    return statuses.size() == 3;
  }));
  CHECK(statuses == std::vector<int>{200, 404, 200});
  CHECK(h.server->connections() == 1);
}

TEST_CASE("HTTP/1.0 and Connection: close end the connection after the answer") {
  Harness h;
  Client c1(h.port());
  auto a = h.exchange(c1, "GET /health HTTP/1.0\r\n\r\n");
  REQUIRE(a);
  CHECK(a->status == 200);
  CHECK(a->header("connection") == "close");
  CHECK(h.wait_closed(c1));

  Client c2(h.port());
  a = h.exchange(c2, "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  REQUIRE(a);
  CHECK(a->header("connection") == "close");
  CHECK(h.wait_closed(c2));
  REQUIRE(h.pump({}, [&] { return h.server->connections() == 0; }));
}

TEST_CASE("oversized body 413, oversized header 431, malformed HTTP 400; each closes only its connection") {
  AdminLimits limits;
  limits.max_body_bytes = 1024;
  limits.max_header_bytes = 2048;
  Harness h(limits);
  Client bystander(h.port());
  REQUIRE(h.exchange(bystander, get("/health")));

  {  // Declared too large: refused before the body is read; the body is drained, not reset.
    Client c(h.port());
    std::string body(200000, 'x');
    auto a = h.exchange(c, request("POST", "/location", body));
    REQUIRE(a);
    CHECK(a->status == 413);
    CHECK(a->header("connection") == "close");
    CHECK(body_json(*a)["error"].get<std::string>().find("too large") != std::string::npos);
    CHECK(h.wait_closed(c));
  }
  {  // Chunked, growing past the limit.
    Client c(h.port());
    std::string chunk(600, 'y');
    char size[16];
    std::snprintf(size, sizeof size, "%zx", chunk.size());
    std::string req = "POST /location HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    req += std::string(size) + "\r\n" + chunk + "\r\n" + size + "\r\n" + chunk + "\r\n0\r\n\r\n";
    auto a = h.exchange(c, req);
    REQUIRE(a);
    CHECK(a->status == 413);
  }
  {
    Client c(h.port());
    std::string req = "GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(4000, 'z') + "\r\n\r\n";
    auto a = h.exchange(c, req);
    REQUIRE(a);
    CHECK(a->status == 431);
    CHECK(h.wait_closed(c));
  }
  {
    Client c(h.port());
    auto a = h.exchange(c, "GET /health HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n");
    REQUIRE(a);
    CHECK(a->status == 400);
    CHECK(body_json(*a)["error"].get<std::string>().find("bad HTTP request") != std::string::npos);
    CHECK(h.wait_closed(c));
  }
  {
    Client c(h.port());
    auto a = h.exchange(c, "\x16\x03\x01\x02\x00garbage\r\n\r\n");
    REQUIRE(a);
    CHECK(a->status == 400);
    CHECK(h.wait_closed(c));
  }
  CHECK(h.backend.added.empty());
  auto a = h.exchange(bystander, get("/health"));
  REQUIRE(a);
  CHECK(a->status == 200);
}

TEST_CASE("Expect: 100-continue gets the interim answer, then the final one") {
  Harness h;
  Client c(h.port());
  std::string body = R"({"aor": "sip:a@x", "contact": "sip:a@1.2.3.4"})";
  h.send(c, "POST /location HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
            "Content-Length: " +
                std::to_string(body.size()) + "\r\n\r\n");
  REQUIRE(h.pump({&c}, [&] { return c.buf.find("\r\n\r\n") != std::string::npos; }));
  CHECK(c.buf == "HTTP/1.1 100 Continue\r\n\r\n");
  c.buf.clear();
  auto a = h.exchange(c, body);
  REQUIRE(a);
  CHECK(a->status == 201);
}

TEST_CASE("connection limit and idle timeout") {
  AdminLimits limits;
  limits.max_connections = 2;
  limits.idle_timeout_ms = 200;
  Harness h(limits);
  Client c1(h.port()), c2(h.port());
  REQUIRE(h.pump({&c1, &c2}, [&] { return h.server->connections() == 2; }));
  Client c3(h.port());
  CHECK(h.wait_closed(c3));  // over the limit: closed at once
  CHECK(h.server->connections() == 2);
  // Idle connections are closed after the timeout (observed, bounded).
  CHECK(h.wait_closed(c1));
  CHECK(h.wait_closed(c2));
  REQUIRE(h.pump({}, [&] { return h.server->connections() == 0; }));

  // A slow sender does not keep a connection by trickling bytes.
  Client slow(h.port());
  h.send(slow, "GET /hea");
  CHECK(h.wait_closed(slow));
  CHECK(slow.buf.empty());
}

TEST_CASE("start(): bad address, address in use, IPv6 loopback, restart after stop") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  FakeBackend backend;
  {
    AdminServer a(&loop, backend), b(&loop, backend);
    auto st = a.start("not-an-ip", 0);
    CHECK(!st.ok());
    REQUIRE(a.start("127.0.0.1", 0).ok());
    CHECK(!a.start("127.0.0.1", 0).ok());  // already started
    auto busy = b.start("127.0.0.1", a.port());
    REQUIRE(!busy.ok());
    CHECK(std::string(busy.error().reason) == "admin address already in use");
    CHECK(!b.running());
    a.stop();
    CHECK(a.port() == 0);
    REQUIRE(a.start("127.0.0.1", 0).ok());
    Client c(a.port());
    bool got = false;
    std::string req = get("/health");
    c.send_some(req);
    REQUIRE(pump_until(&loop, {&c}, [&] { return got = take_answer(c.buf).has_value(); }));
    CHECK(got);
    if (auto v6 = b.start("[::1]", 0); v6.ok()) {
      CHECK(b.port() != 0);
    } else {
      MESSAGE("no IPv6 loopback here: " << v6.error().reason);
    }
  }
  CHECK(pump_until(&loop, {}, [&] { return !uv_loop_alive(&loop); }));
  CHECK(uv_loop_close(&loop) == 0);
}
