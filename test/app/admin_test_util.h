// Shared by the admin tests: a fake AdminBackend that records its calls and answers either
// at once or when the test says so, a sample StatsSnapshot, and a small blocking-free HTTP
// client for the loop-stepping tests.
#pragma once
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "app/admin_backend.h"

namespace sb::app::test {

inline StatsSnapshot sample_snapshot() {
  StatsSnapshot s;
  s.version = "0.1.0";
  s.generation = 3;
  s.uptime_s = 3723;
  s.workers = 2;
  s.reloads_ok = 2;
  s.reloads_failed = 1;
  s.bindings = 5;
  s.aors = 4;
  s.requests_by_method = {{"INVITE", 3}, {"REGISTER", 7}};
  s.responses_by_code = {{200, 9}, {404, 1}, {180, 2}};
  s.transactions_active = {{"client_invite", 1}, {"server_non_invite", 2}};
  s.retransmissions = 4;
  s.absorbed = 6;
  s.script_errors = 1;
  s.script_seconds.bounds = {0.0001, 0.001, 0.01};
  s.script_seconds.counts = {2, 8, 10};
  s.script_seconds.count = 11;
  s.script_seconds.sum = 0.0421;
  s.parse_errors = {{"400", 2}};
  s.drops = {{"queue_full", 3}, {"no_via", 1}};
  s.counters = {{"dns_queries", 12}};
  s.per_worker = {{0, 1, 2}, {1, 0, 1}};
  return s;
}

// Every call is recorded; stats()/reload() answer at once unless `hold` is set, in which case
// the callbacks wait in pending_* until the test calls them. Locked: the ctl tests run the
// server's loop on another thread.
struct FakeBackend : AdminBackend {
  std::mutex mu;
  bool hold = false;
  StatsSnapshot snapshot = sample_snapshot();
  ReloadOutcome outcome{true, 4, {}};
  std::vector<std::function<void(StatsSnapshot)>> pending_stats;
  std::vector<std::function<void(ReloadOutcome)>> pending_reloads;
  std::vector<LocationEntry> entries;
  core::Status add_status;
  size_t remove_result = 1;
  int stats_calls = 0, reload_calls = 0;
  std::vector<std::string> list_calls;
  struct Added {
    std::string aor, contact;
    double q;
    uint32_t expires;
  };
  std::vector<Added> added;
  std::vector<std::pair<std::string, std::string>> removed;

  void reload(std::function<void(ReloadOutcome)> done) override {
    std::unique_lock lock(mu);
    ++reload_calls;
    if (hold) {
      pending_reloads.push_back(std::move(done));
      return;
    }
    auto o = outcome;
    lock.unlock();
    done(o);
  }
  void stats(std::function<void(StatsSnapshot)> done) override {
    std::unique_lock lock(mu);
    ++stats_calls;
    if (hold) {
      pending_stats.push_back(std::move(done));
      return;
    }
    auto s = snapshot;
    lock.unlock();
    done(s);
  }
  std::vector<LocationEntry> location_list(std::string_view aor) override {
    std::lock_guard lock(mu);
    list_calls.emplace_back(aor);
    std::vector<LocationEntry> out;
    for (const auto& e : entries)
      if (aor.empty() || e.aor == aor) out.push_back(e);
    return out;
  }
  core::Status location_add(std::string_view aor, std::string_view contact, double q, uint32_t expires_s) override {
    std::lock_guard lock(mu);
    added.push_back({std::string(aor), std::string(contact), q, expires_s});
    return add_status;
  }
  size_t location_remove(std::string_view aor, std::string_view contact) override {
    std::lock_guard lock(mu);
    removed.emplace_back(aor, contact);
    return remove_result;
  }
};

inline std::vector<LocationEntry> sample_entries() {
  LocationEntry a;
  a.aor = "sip:bob@example.com";
  a.contact = "sip:bob@192.0.2.1:5060";
  a.q = 0.5;
  a.expires_in_s = 3600;
  a.source = "udp:192.0.2.1:5060";
  a.user_agent = "Phone/1.0";
  LocationEntry b;
  b.aor = "sip:alice@example.com";
  b.contact = "sip:alice@192.0.2.2:5070";
  b.expires_in_s = -1;
  b.is_static = true;
  return {a, b};
}

// A parsed HTTP answer (the tests' own minimal reading: status, headers, Content-Length body).
struct HttpAnswer {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Takes one complete answer off the front of `buf`, if there is one.
inline std::optional<HttpAnswer> take_answer(std::string& buf) {
  size_t end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return std::nullopt;
  HttpAnswer a;
  std::string head = buf.substr(0, end);
  size_t line_end = head.find("\r\n");
  std::string status_line = head.substr(0, line_end);
  if (status_line.size() < 12) return std::nullopt;
  a.status = std::stoi(status_line.substr(9, 3));
  size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    if (e == std::string::npos) e = head.size();
    std::string line = head.substr(pos, e - pos);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      size_t v = line.find_first_not_of(' ', colon + 1);
      a.headers[name] = v == std::string::npos ? "" : line.substr(v);
    }
    pos = e + 2;
  }
  size_t len = a.headers.count("content-length") ? std::stoul(a.headers["content-length"]) : 0;
  if (buf.size() < end + 4 + len) return std::nullopt;
  a.body = buf.substr(end + 4, len);
  buf.erase(0, end + 4 + len);
  return a;
}

// A non-blocking TCP client on 127.0.0.1.
struct Client {
  int fd = -1;
  std::string buf;
  bool eof = false;
  bool reset = false;

  explicit Client(uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // The kernel completes the handshake from the listen backlog: no loop step needed.
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  // Close with an RST (SO_LINGER 0): the server sees a reset, not an orderly end.
  void abort() {
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close();
  }
  // Sends what the socket takes now; returns the bytes sent.
  size_t send_some(std::string_view data) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    return n > 0 ? static_cast<size_t>(n) : 0;
  }
  void read_available() {
    if (fd < 0) return;
    char tmp[65536];
    for (;;) {
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n > 0) {
        buf.append(tmp, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) eof = true;
      if (n < 0 && errno == ECONNRESET) reset = true;
      return;
    }
  }
  bool closed_by_peer() const { return eof || reset; }
};

// Steps a libuv loop on this thread while waiting for a condition, blocking in poll() on the
// loop's backend fd and the clients' sockets: no fixed sleeps, and every wait is bounded.
inline bool pump_until(uv_loop_t* loop, std::vector<Client*> clients, const std::function<bool()>& done,
                       int timeout_ms = 5000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    uv_run(loop, UV_RUN_NOWAIT);
    for (Client* c : clients) c->read_available();
    if (done()) return true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return false;
    std::vector<pollfd> fds;
    fds.push_back({uv_backend_fd(loop), POLLIN, 0});
    for (Client* c : clients)
      if (c->fd >= 0 && !c->closed_by_peer()) fds.push_back({c->fd, POLLIN, 0});
    int wait = static_cast<int>(std::min<long long>(left, 50));
    int t = uv_backend_timeout(loop);
    if (t >= 0) wait = std::min(wait, std::max(t, 1));
    ::poll(fds.data(), fds.size(), wait);
  }
}

}  // namespace sb::app::test
