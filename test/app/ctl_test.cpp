#include "app/ctl.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "app/admin_server.h"
#include "app/metrics.h"
#include "test/app/admin_test_util.h"

using namespace sb::app;
using namespace sb::app::test;
using nlohmann::json;

namespace {

// The admin server on its own loop thread (ctl is a blocking client); the fake backend
// answers at once, on that thread.
struct ServerThread {
  uv_loop_t loop;
  uv_async_t stop_async;
  FakeBackend backend;
  std::unique_ptr<AdminServer> server;
  std::thread thread;
  std::string admin;

  ServerThread() {
    uv_loop_init(&loop);
    server = std::make_unique<AdminServer>(&loop, backend);
    REQUIRE(server->start("127.0.0.1", 0).ok());
    admin = "127.0.0.1:" + std::to_string(server->port());
    uv_async_init(&loop, &stop_async, [](uv_async_t* a) {
      auto* self = static_cast<ServerThread*>(a->data);
      self->server->stop();
      uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
    });
    stop_async.data = this;
    thread = std::thread([this] { uv_run(&loop, UV_RUN_DEFAULT); });
  }
  ~ServerThread() {
    uv_async_send(&stop_async);
    thread.join();  // uv_run returns once every handle is closed
    server.reset();
    CHECK(uv_loop_close(&loop) == 0);
  }
};

struct Run {
  int rc;
  std::string out, err;
};

Run ctl(std::vector<std::string> args) {
  std::ostringstream out, err;
  int rc = ctl_main(args, out, err);
  return {rc, out.str(), err.str()};
}

// A port nothing listens on: bound once, then released.
uint16_t closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

}  // namespace

TEST_CASE("ctl reload: human and --json, exit 0 / 1") {
  ServerThread s;
  auto r = ctl({"--admin", s.admin, "reload"});
  CHECK(r.rc == 0);
  CHECK(r.out == "reload ok: generation 4\n");

  r = ctl({"--admin", s.admin, "--json", "reload"});
  CHECK(r.rc == 0);
  CHECK(json::parse(r.out) == json{{"ok", true}, {"generation", 4}});

  {
    std::lock_guard lock(s.backend.mu);
    s.backend.outcome = ReloadOutcome{false, 4, {"listen[1].port: expected 1..65535", "x.lua:3: boom"}};
  }
  r = ctl({"reload", "--admin=" + s.admin});
  CHECK(r.rc == 1);
  CHECK(r.err == "reload failed:\n  - listen[1].port: expected 1..65535\n  - x.lua:3: boom\n");

  r = ctl({"--admin", s.admin, "reload", "--json"});
  CHECK(r.rc == 1);
  auto j = json::parse(r.out);
  CHECK(j["ok"] == false);
  CHECK(j["errors"].size() == 2);
}

TEST_CASE("ctl stats and health") {
  ServerThread s;
  auto r = ctl({"--admin", s.admin, "stats"});
  CHECK(r.rc == 0);
  CHECK(r.out.find("switchboard 0.1.0  generation 3  up 01:02:03  2 worker(s)  healthy") != std::string::npos);
  CHECK(r.out.find("INVITE 3, REGISTER 7") != std::string::npos);
  CHECK(r.out.find("5 (4 AORs)") != std::string::npos);
  CHECK(r.out.find("queue_full 3") != std::string::npos);
  CHECK(r.out.find("11 calls, avg 3.83 ms, 1 errors") != std::string::npos);
  CHECK(r.out.find("worker  queue   transactions\n0       1       2\n1       0       1\n") != std::string::npos);

  r = ctl({"--admin", s.admin, "--json", "stats"});
  CHECK(r.rc == 0);
  CHECK(json::parse(r.out) == stats_json(sample_snapshot()));

  r = ctl({"--admin", s.admin, "metrics"});
  CHECK(r.rc == 0);
  CHECK(r.out == prometheus_text(sample_snapshot()));

  r = ctl({"--admin", s.admin, "health"});
  CHECK(r.rc == 0);
  CHECK(r.out == "ok\n");
  {
    std::lock_guard lock(s.backend.mu);
    s.backend.snapshot.healthy = false;
    s.backend.snapshot.health_detail = "store down";
  }
  r = ctl({"--admin", s.admin, "health"});
  CHECK(r.rc == 1);
  CHECK(r.err == "unhealthy: store down\n");
  r = ctl({"--admin", s.admin, "--json", "health"});
  CHECK(r.rc == 1);
  CHECK(json::parse(r.out)["status"] == "unhealthy");
}

TEST_CASE("ctl location list / add / rm") {
  ServerThread s;
  {
    std::lock_guard lock(s.backend.mu);
    s.backend.entries = sample_entries();
  }
  auto r = ctl({"--admin", s.admin, "location"});
  CHECK(r.rc == 0);
  CHECK(r.out ==
        "sip:bob@example.com    sip:bob@192.0.2.1:5060    q=0.5  expires in 3600s  from udp:192.0.2.1:5060  \"Phone/1.0\"\n"
        "sip:alice@example.com  sip:alice@192.0.2.2:5070  q=1  static\n");

  r = ctl({"--admin", s.admin, "location", "list", "sip:alice@example.com"});
  CHECK(r.rc == 0);
  CHECK(r.out == "sip:alice@example.com  sip:alice@192.0.2.2:5070  q=1  static\n");
  {
    std::lock_guard lock(s.backend.mu);
    CHECK(s.backend.list_calls.back() == "sip:alice@example.com");
  }
  r = ctl({"--admin", s.admin, "location", "list", "sip:nobody@example.com"});
  CHECK(r.rc == 0);
  CHECK(r.out == "no bindings\n");

  r = ctl({"--admin", s.admin, "--json", "location", "list"});
  CHECK(r.rc == 0);
  CHECK(json::parse(r.out)["bindings"].size() == 2);

  r = ctl({"--admin", s.admin, "location", "add", "sip:carol@example.com", "sip:carol@192.0.2.9:5060", "--q", "0.25",
           "--expires", "600"});
  CHECK(r.rc == 0);
  CHECK(r.out == "added sip:carol@example.com -> sip:carol@192.0.2.9:5060 (q 0.25, expires in 600s)\n");
  r = ctl({"--admin", s.admin, "location", "add", "sip:dave@example.com", "sip:dave@192.0.2.10"});
  CHECK(r.rc == 0);
  CHECK(r.out == "added sip:dave@example.com -> sip:dave@192.0.2.10 (q 1, static, never expires)\n");
  {
    std::lock_guard lock(s.backend.mu);
    REQUIRE(s.backend.added.size() == 2);
    CHECK(s.backend.added[0].aor == "sip:carol@example.com");
    CHECK(s.backend.added[0].q == 0.25);
    CHECK(s.backend.added[0].expires == 600);
    CHECK(s.backend.added[1].expires == 0);
    s.backend.add_status = sb::core::Error{"too many bindings for this address-of-record", 403};
  }
  r = ctl({"--admin", s.admin, "location", "add", "sip:e@x", "sip:e@1.2.3.4"});
  CHECK(r.rc == 1);
  CHECK(r.err == "switchboard ctl: HTTP 403: too many bindings for this address-of-record\n");

  r = ctl({"--admin", s.admin, "location", "rm", "sip:bob@example.com", "sip:bob@192.0.2.1:5060"});
  CHECK(r.rc == 0);
  CHECK(r.out == "removed 1 binding(s)\n");
  {
    std::lock_guard lock(s.backend.mu);
    CHECK(s.backend.removed.back() ==
          std::pair<std::string, std::string>{"sip:bob@example.com", "sip:bob@192.0.2.1:5060"});
    s.backend.remove_result = 0;
  }
  r = ctl({"--admin", s.admin, "location", "rm", "sip:+15551234@example.com"});
  CHECK(r.rc == 1);
  CHECK(r.err == "switchboard ctl: HTTP 404: no matching binding\n");
  {
    std::lock_guard lock(s.backend.mu);
    CHECK(s.backend.removed.back().first == "sip:+15551234@example.com");  // '+' survives the query
  }
  r = ctl({"--admin", s.admin, "--json", "location", "rm", "sip:x@y"});
  CHECK(r.rc == 1);
  CHECK(json::parse(r.out)["removed"] == 0);
}

TEST_CASE("ctl usage and connection errors exit 2 with a clear message") {
  for (std::vector<std::string> args :
       {std::vector<std::string>{}, {"frobnicate"}, {"reload", "extra"}, {"location", "add", "sip:a@x"},
        {"location", "add", "sip:a@x", "sip:a@1.2.3.4", "--q", "2"},
        {"location", "add", "sip:a@x", "sip:a@1.2.3.4", "--expires", "-5"}, {"location", "rm"},
        {"location", "move"}, {"stats", "--q", "0.5"}, {"--bogus", "stats"}, {"--admin", "nocolon", "stats"},
        {"--admin", "::1:8080", "stats"}, {"--admin", "127.0.0.1:99999", "stats"},
        {"--admin", "127.0.0.1:0", "stats"}, {"--timeout", "0", "stats"}}) {
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    INFO(joined);
    auto r = ctl(args);
    CHECK(r.rc == 2);
    CHECK(r.err.rfind("switchboard ctl: ", 0) == 0);
    CHECK(r.err.find("usage:") != std::string::npos);
    CHECK(r.out.empty());
  }
  auto r = ctl({"--help"});
  CHECK(r.rc == 0);
  CHECK(r.out.find("location add AOR CONTACT") != std::string::npos);

  std::string admin = "127.0.0.1:" + std::to_string(closed_port());
  r = ctl({"--admin", admin, "stats"});
  CHECK(r.rc == 2);
  CHECK(r.err.find("cannot connect to the admin API at " + admin) != std::string::npos);
}

TEST_CASE("ctl takes the admin address from SWITCHBOARD_ADMIN; --admin wins") {
  ServerThread s;
  ::setenv("SWITCHBOARD_ADMIN", s.admin.c_str(), 1);
  auto r = ctl({"health"});
  CHECK(r.rc == 0);
  std::string dead = "127.0.0.1:" + std::to_string(closed_port());
  r = ctl({"--admin", dead, "health"});
  CHECK(r.rc == 2);
  ::setenv("SWITCHBOARD_ADMIN", dead.c_str(), 1);
  r = ctl({"--admin", "http://" + s.admin + "/", "health"});
  CHECK(r.rc == 0);
  ::unsetenv("SWITCHBOARD_ADMIN");
}

TEST_CASE("ctl against something that is not the admin API: exit 2, no hang") {
  // A listener that accepts and closes without answering.
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct Closer {
    uv_tcp_t tcp;
  } listener;
  uv_tcp_init(&loop, &listener.tcp);
  sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  REQUIRE(uv_tcp_bind(&listener.tcp, reinterpret_cast<sockaddr*>(&sa), 0) == 0);
  REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(&listener.tcp), 8, [](uv_stream_t* server, int) {
            auto* c = new uv_tcp_t;
            uv_tcp_init(server->loop, c);
            uv_accept(server, reinterpret_cast<uv_stream_t*>(c));
            uv_close(reinterpret_cast<uv_handle_t*>(c), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
          }) == 0);
  int len = sizeof sa;
  uv_tcp_getsockname(&listener.tcp, reinterpret_cast<sockaddr*>(&sa), &len);
  uv_async_t stop;
  uv_async_init(&loop, &stop, [](uv_async_t* a) {
    uv_close(reinterpret_cast<uv_handle_t*>(a->data), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
  });
  stop.data = &listener.tcp;
  std::thread t([&] { uv_run(&loop, UV_RUN_DEFAULT); });
  auto r = ctl({"--admin", "127.0.0.1:" + std::to_string(ntohs(sa.sin_port)), "--timeout", "5", "stats"});
  uv_async_send(&stop);
  t.join();
  CHECK(uv_loop_close(&loop) == 0);
  CHECK(r.rc == 2);
  INFO(r.err);
  CHECK(r.err.find("closed the connection before answering") != std::string::npos);
}
