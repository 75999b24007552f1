// Loopback tests of the real workers: sockets on 127.0.0.1 / ::1 with kernel-chosen ports,
// every wait bounded.
#include "transport/worker.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/branch.h"
#include "core/message.h"
#include "transport/owner.h"
#include "transport/response_route.h"

using namespace sb;
using transport::Inbound;
using transport::ListenerSpec;
using transport::Worker;
using transport::WorkerGroup;

namespace {

constexpr auto kWait = std::chrono::seconds(5);

// ---- what the handlers saw ----

struct Seen {
  uint32_t worker = 0;
  uint32_t received_by = 0;
  std::string bytes;
  bool parsed = false;
  uint32_t owner = 0;  // owner_of(parsed) as the handler computed it
  bool frame_error = false;
  int status = 0;
  core::Peer from;
  std::string call_id;
  bool views_in_bytes = false;  // the parsed message's views point into the delivered bytes
};

struct Recorder {
  std::mutex m;
  std::condition_variable cv;
  std::vector<Seen> seen;
  std::vector<std::pair<uint32_t, uint64_t>> send_errors;  // (worker, cookie)
  std::vector<core::Peer> closed;

  template <class Pred>
  bool wait(Pred pred) {
    std::unique_lock lock(m);
    return cv.wait_for(lock, kWait, [&] { return pred(); });
  }
  size_t count_call(const std::string& call_id) {
    size_t n = 0;
    for (auto& s : seen) n += s.call_id == call_id;
    return n;
  }
};

// Records every message; answers OPTIONS with 200 over response_destination() (UDP) or the
// connection it came on (TCP), from whichever worker owns the request.
class Handler final : public transport::MessageHandler {
 public:
  explicit Handler(Recorder& r) : r_(r) {}
  void on_message(Worker& w, Inbound& in) override {
    Seen s;
    s.worker = w.id();
    s.received_by = in.received_by;
    s.bytes = std::string(in.bytes);
    s.parsed = in.parsed != nullptr;
    s.frame_error = in.has_frame_error;
    s.status = in.frame_error.status;
    s.from = in.from;
    if (in.parsed) {
      s.owner = transport::owner_of(*in.parsed, w.workers(), in.received_by);
      s.call_id = std::string(in.parsed->call_id());
      const char* b = in.bytes.data();
      auto inside = [&](std::string_view v) { return v.data() >= b && v.data() + v.size() <= b + in.bytes.size(); };
      s.views_in_bytes = in.parsed->raw().data() == b && inside(in.parsed->call_id()) &&
                         inside(in.parsed->top_via().branch) && inside(in.parsed->from().uri.host);
      if (in.parsed->is_request() && in.parsed->method_text() == "OPTIONS") {
        std::string resp = "SIP/2.0 200 OK\r\nVia: ";
        transport::append_stamped_via(resp, in.parsed->top_via(), in.from);
        resp += "\r\nCall-ID: " + s.call_id + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        core::Peer to = transport::response_destination(in.parsed->top_via(), in.from);
        w.send(to, resp, 7, in.listener);
      }
    }
    {
      std::lock_guard lock(r_.m);
      r_.seen.push_back(std::move(s));
    }
    r_.cv.notify_all();
  }
  void on_send_error(Worker& w, uint64_t cookie, const core::Peer&) override {
    {
      std::lock_guard lock(r_.m);
      r_.send_errors.emplace_back(w.id(), cookie);
    }
    r_.cv.notify_all();
  }
  void on_connection_closed(Worker&, const core::Peer& p) override {
    {
      std::lock_guard lock(r_.m);
      r_.closed.push_back(p);
    }
    r_.cv.notify_all();
  }

 private:
  Recorder& r_;
};

// A group with one handler per worker, created on the worker threads.
struct Rig {
  Recorder rec;
  std::vector<std::unique_ptr<Handler>> handlers;
  WorkerGroup group;

  core::Status start(std::vector<ListenerSpec> listeners, uint32_t workers, transport::Limits limits = {}) {
    handlers.resize(workers);
    return group.start(std::move(listeners), workers, limits, [this](Worker& w) {
      handlers[w.id()] = std::make_unique<Handler>(rec);
      w.set_handler(handlers[w.id()].get());
    });
  }
  ~Rig() { group.stop(); }  // before the handlers go
  core::Endpoint endpoint(size_t listener) const { return group.listeners().at(listener).bind; }
};

ListenerSpec listener(core::Protocol p, const char* ip = "127.0.0.1", uint16_t port = 0) {
  ListenerSpec l;
  l.protocol = p;
  l.bind = *core::Endpoint::parse(ip, port);
  return l;
}

std::string options(const std::string& call_id, const std::string& branch, const char* transport = "UDP",
                    const std::string& body = "") {
  return "OPTIONS sip:proxy@127.0.0.1 SIP/2.0\r\n"
         "Via: SIP/2.0/" + std::string(transport) + " 127.0.0.1:5999;rport;branch=" + branch + "\r\n"
         "Max-Forwards: 70\r\n"
         "To: <sip:proxy@127.0.0.1>\r\n"
         "From: <sip:test@127.0.0.1>;tag=t1\r\n"
         "Call-ID: " + call_id + "\r\n"
         "CSeq: 1 OPTIONS\r\n"
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// ---- plain POSIX clients ----

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

bool wait_readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

void send_udp(int fd, const core::Endpoint& to, const std::string& bytes) {
  auto n = ::sendto(fd, bytes.data(), bytes.size(), 0, to.sa(), to.len());
  REQUIRE(n == static_cast<ssize_t>(bytes.size()));
}

int tcp_connect(const core::Endpoint& to) {
  int fd = ::socket(to.family(), SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  REQUIRE(::connect(fd, to.sa(), to.len()) == 0);
  return fd;
}

void write_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    REQUIRE(n > 0);
    done += static_cast<size_t>(n);
  }
}

// Reads until `done(acc)` or EOF or the deadline. Returns what was read; `eof` tells why.
std::string read_until(int fd, const std::function<bool(const std::string&)>& done, bool* eof = nullptr) {
  std::string acc;
  auto deadline = std::chrono::steady_clock::now() + kWait;
  if (eof) *eof = false;
  while (!done(acc)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !wait_readable(fd, static_cast<int>(left.count()))) break;
    char buf[4096];
    auto n = ::read(fd, buf, sizeof buf);
    if (n <= 0) {
      if (eof) *eof = true;
      break;
    }
    acc.append(buf, static_cast<size_t>(n));
  }
  return acc;
}

size_t occurrences(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

// A port nothing listens on: bound by a probe socket, then released.
uint16_t closed_tcp_port() {
  Fd probe(::socket(AF_INET, SOCK_STREAM, 0));
  auto ep = *core::Endpoint::parse("127.0.0.1", 0);
  REQUIRE(::bind(probe.fd, ep.sa(), ep.len()) == 0);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  REQUIRE(::getsockname(probe.fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
  return core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))->port();
}

// Holds a worker's thread inside a posted task until release() (or kWait at most): what
// arrives meanwhile waits in its queue or its sockets. The task shares the state, so it may
// still be waking up after this object is gone.
class WorkerHold {
 public:
  explicit WorkerHold(Worker& w) : s_(std::make_shared<State>()) {
    REQUIRE(w.post([s = s_](Worker&) {
      std::unique_lock lock(s->m);
      s->held = true;
      s->cv.notify_all();
      s->cv.wait_for(lock, kWait, [&] { return s->go; });
    }));
    std::unique_lock lock(s_->m);
    REQUIRE(s_->cv.wait_for(lock, kWait, [&] { return s_->held; }));
  }
  ~WorkerHold() { release(); }
  WorkerHold(const WorkerHold&) = delete;
  WorkerHold& operator=(const WorkerHold&) = delete;
  void release() {
    {
      std::lock_guard lock(s_->m);
      s_->go = true;
    }
    s_->cv.notify_all();
  }

 private:
  struct State {
    std::mutex m;
    std::condition_variable cv;
    bool held = false, go = false;
  };
  std::shared_ptr<State> s_;
};

}  // namespace

TEST_CASE("workers: port 0 is resolved once and shared by every worker") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Udp), listener(core::Protocol::Tcp)}, 2).ok());
  CHECK(rig.group.size() == 2);
  CHECK(rig.endpoint(0).port() != 0);
  CHECK(rig.endpoint(1).port() != 0);
  CHECK(rig.group.worker(1).listeners()[0].bind.port() == rig.endpoint(0).port());
  CHECK(rig.group.worker(0).listeners()[1].advertised_host() == "127.0.0.1");
  rig.group.stop();
  CHECK_FALSE(rig.group.running());
  rig.group.stop();  // idempotent
}

TEST_CASE("workers: batch scheduling puts every worker thread under SCHED_BATCH, and only them") {
  for (bool batch : {true, false}) {
    CAPTURE(batch);
    WorkerGroup group;
    transport::Limits limits;
    limits.batch_scheduling = batch;
    std::mutex m;
    std::vector<int> policies;
    auto st = group.start({listener(core::Protocol::Udp)}, 2, limits, [&](Worker&) {
      int policy = -1;
      sched_param sp{};
      pthread_getschedparam(pthread_self(), &policy, &sp);
      std::lock_guard lock(m);
      policies.push_back(policy);
    });
    REQUIRE(st.ok());
    group.stop();
    CHECK(policies == std::vector<int>(2, batch ? SCHED_BATCH : SCHED_OTHER));
    int mine = -1;
    sched_param sp{};
    pthread_getschedparam(pthread_self(), &mine, &sp);
    CHECK(mine == SCHED_OTHER);  // the thread that started the group keeps its policy
  }
}

namespace {
// The CPUs the calling thread may run on, ascending.
std::vector<int> my_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> out;
  if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) != 0) return out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &set)) out.push_back(cpu);
  return out;
}
}  // namespace

TEST_CASE("workers: worker_cpus pins each worker thread to its CPU, and leaves the others alone") {
  const std::vector<int> allowed = my_cpus();
  REQUIRE_FALSE(allowed.empty());
  // Worker 0 on the first CPU we may use, worker 1 on the last (the same one on 1 CPU),
  // worker 2 not pinned.
  const std::vector<int> plan = {allowed.front(), allowed.back(), -1};
  WorkerGroup group;
  transport::Limits limits;
  limits.worker_cpus = plan;
  std::mutex m;
  std::vector<std::vector<int>> masks(3);
  auto st = group.start({listener(core::Protocol::Udp)}, 3, limits, [&](Worker& w) {
    std::vector<int> cpus = my_cpus();
    std::lock_guard lock(m);
    masks[w.id()] = std::move(cpus);
  });
  REQUIRE(st.ok());
  group.stop();
  CHECK(masks[0] == std::vector<int>{plan[0]});
  CHECK(masks[1] == std::vector<int>{plan[1]});
  CHECK(masks[2] == allowed);
  CHECK(my_cpus() == allowed);  // the thread that started the group is not pinned
}

TEST_CASE("workers: a UDP request is owned by the worker that read it, replies come back") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Udp)}, 2).ok());
  auto to = rig.endpoint(0);
  // Several sources: SO_REUSEPORT spreads them over the workers, each source on one.
  std::vector<std::unique_ptr<Fd>> clients;
  std::vector<std::string> sent;
  for (int c = 0; c < 8; ++c) {
    clients.push_back(std::make_unique<Fd>(::socket(AF_INET, SOCK_DGRAM, 0)));
    for (int k = 0; k < 2; ++k) {
      sent.push_back(options("udp-call-" + std::to_string(c) + "-" + std::to_string(k),
                             "z9hG4bKudp" + std::to_string(c) + "x" + std::to_string(k)));
      send_udp(clients.back()->fd, to, sent.back());
    }
  }
  REQUIRE(rig.rec.wait([&] { return rig.rec.seen.size() >= sent.size(); }));
  {
    std::lock_guard lock(rig.rec.m);
    CHECK(rig.rec.seen.size() == sent.size());
    std::set<std::string> got;
    std::map<uint16_t, uint32_t> worker_of_source;
    for (auto& s : rig.rec.seen) {
      CAPTURE(s.call_id);
      CHECK(s.parsed);
      CHECK_FALSE(s.frame_error);
      CHECK(s.worker == s.received_by);
      CHECK(s.worker == s.owner);
      CHECK(s.from.protocol == core::Protocol::Udp);
      CHECK(s.from.endpoint.ip() == "127.0.0.1");
      // One source, one worker: a request's retransmissions, ACK and CANCEL meet it there.
      auto [it, fresh] = worker_of_source.emplace(s.from.endpoint.port(), s.worker);
      CHECK(it->second == s.worker);
      got.insert(s.bytes);
    }
    for (auto& m : sent) CHECK(got.count(m) == 1);
  }
  auto st = rig.group.stats();
  CHECK(st.handoff_out == 0);
  CHECK(st.handoff_in == 0);
  CHECK(st.datagrams_in == sent.size());
  // Each OPTIONS was answered, to its source port via rport.
  for (auto& c : clients) {
    std::string replies;
    for (int k = 0; k < 2; ++k) {
      REQUIRE(wait_readable(c->fd, 5000));
      char buf[2048];
      auto n = ::recv(c->fd, buf, sizeof buf, 0);
      REQUIRE(n > 0);
      replies.append(buf, static_cast<size_t>(n));
    }
    CHECK(occurrences(replies, "SIP/2.0 200 OK") == 2);
    CHECK(replies.find(";rport=") != std::string::npos);
  }
}

namespace {

// A response to `request` (as received by a peer), with the request's top Via.
std::string response_to(const std::string& request, int status = 200) {
  core::Message m;
  REQUIRE(m.parse(request).ok());
  return "SIP/2.0 " + std::to_string(status) + " OK\r\nVia: " + std::string(m.top_via().raw) +
         "\r\nTo: <sip:proxy@127.0.0.1>;tag=uas\r\nFrom: <sip:test@127.0.0.1>;tag=t1\r\nCall-ID: " +
         std::string(m.call_id()) + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
}

// Worker `w` sends `bytes` to `to` (UDP) on its own thread.
void send_from_worker(Rig& rig, uint32_t w, const core::Endpoint& to, const std::string& bytes, bool reply_port) {
  core::Peer peer;
  peer.endpoint = to;
  REQUIRE(rig.group.worker(w).post([peer, bytes, reply_port](Worker& wk) { wk.send(peer, bytes, 9, 0, reply_port); }));
}

struct Received {
  std::string bytes;
  core::Endpoint from;
};

// Binds `fd` (UDP) to a free port on 127.0.0.1 and returns the address.
core::Endpoint bind_loopback(int fd) {
  auto ep = *core::Endpoint::parse("127.0.0.1", 0);
  REQUIRE(::bind(fd, ep.sa(), ep.len()) == 0);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
  return *core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
}

Received recv_from(int fd) {
  Received r;
  REQUIRE(wait_readable(fd, 5000));
  char buf[4096];
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  auto n = ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&ss), &len);
  REQUIRE(n > 0);
  r.bytes.assign(buf, static_cast<size_t>(n));
  r.from = *core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
  return r;
}

}  // namespace

TEST_CASE("workers: a request sent from a worker's reply port gets its response on that worker") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Udp)}, 2).ok());
  const uint16_t listen_port = rig.endpoint(0).port();
  for (uint32_t w = 0; w < 2; ++w) {
    CAPTURE(w);
    const uint16_t reply = rig.group.worker(w).reply_port(0);
    CHECK(reply != 0);
    CHECK(reply != listen_port);
    CHECK(rig.group.listeners()[0].reply_port(w) == reply);  // every worker knows every port
    CHECK(rig.group.worker(1 - w).listeners()[0].reply_port(w) == reply);
  }
  CHECK(rig.group.worker(0).reply_port(0) != rig.group.worker(1).reply_port(0));

  // A UAS on loopback answering to the address each request came from.
  Fd uas(::socket(AF_INET, SOCK_DGRAM, 0));
  const core::Endpoint uas_ep = bind_loopback(uas.fd);

  for (uint32_t w = 0; w < 2; ++w) {
    for (int i = 0; i < 4; ++i) {
      std::string req = options("reply-" + std::to_string(w) + "-" + std::to_string(i), core::make_branch(w, 100 + i));
      send_from_worker(rig, w, uas_ep, req, true);
      Received got = recv_from(uas.fd);
      CHECK(got.from.port() == rig.group.worker(w).reply_port(0));
      send_udp(uas.fd, got.from, response_to(got.bytes));
    }
  }
  REQUIRE(rig.rec.wait([&] { return rig.rec.seen.size() >= 8; }));
  {
    std::lock_guard lock(rig.rec.m);
    for (auto& s : rig.rec.seen) {
      CAPTURE(s.call_id);
      CHECK(s.parsed);
      CHECK(s.worker == s.received_by);  // read where it is owned: no hand-off
      CHECK(s.worker == s.owner);
    }
  }
  CHECK(rig.group.stats().handoff_out == 0);

  // Without the reply port (a flow, or a response) the datagram leaves from the listener:
  // a response to it lands wherever SO_REUSEPORT puts the UAS and is handed to its owner.
  for (uint32_t w = 0; w < 2; ++w) {
    std::string req = options("listener-" + std::to_string(w), core::make_branch(w, 200));
    send_from_worker(rig, w, uas_ep, req, false);
    Received got = recv_from(uas.fd);
    CHECK(got.from.port() == listen_port);
    send_udp(uas.fd, got.from, response_to(got.bytes));
  }
  REQUIRE(rig.rec.wait([&] { return rig.rec.seen.size() >= 10; }));
  std::lock_guard lock(rig.rec.m);
  for (size_t i = 8; i < 10; ++i) CHECK(rig.rec.seen[i].worker == rig.rec.seen[i].owner);
  size_t handed = 0;
  for (size_t i = 8; i < 10; ++i) handed += rig.rec.seen[i].worker != rig.rec.seen[i].received_by;
  CHECK(handed == 1);  // one UAS source reaches one worker: the other worker's response is handed off
}

TEST_CASE("workers: a symmetric UDP listener has no reply ports and sends every request from itself") {
  Rig rig;
  ListenerSpec l = listener(core::Protocol::Udp);
  l.symmetric = true;
  REQUIRE(rig.start({l}, 2).ok());
  CHECK(rig.group.worker(0).reply_port(0) == 0);
  CHECK(rig.group.worker(1).reply_port(0) == 0);
  Fd uas(::socket(AF_INET, SOCK_DGRAM, 0));
  const core::Endpoint uas_ep = bind_loopback(uas.fd);
  send_from_worker(rig, 1, uas_ep, options("sym", core::make_branch(1, 1)), true);
  CHECK(recv_from(uas.fd).from.port() == rig.endpoint(0).port());
}

TEST_CASE("workers: a flow is sent from the listener even when the reply port is asked for") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Udp)}, 1).ok());
  Fd uas(::socket(AF_INET, SOCK_DGRAM, 0));
  core::Peer peer;
  peer.endpoint = bind_loopback(uas.fd);
  peer.flow = true;  // RFC 5626 / NAT: only the socket the UA opened its binding to gets in
  std::string req = options("flow", core::make_branch(0, 1));
  REQUIRE(rig.group.worker(0).post([peer, req](Worker& wk) { wk.send(peer, req, 1, 0, true); }));
  CHECK(recv_from(uas.fd).from.port() == rig.endpoint(0).port());
}

TEST_CASE("workers: TCP framing — a split message and two in one write, each on the connection's worker") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Tcp)}, 2).ok());
  std::string a = options("tcp-a", "z9hG4bKtcpa", "TCP", "split body");
  std::string b = options("tcp-b", "z9hG4bKtcpb", "TCP");
  std::string c = options("tcp-c", "z9hG4bKtcpc", "TCP", "x");
  Fd client(tcp_connect(rig.endpoint(0)));
  write_all(client.fd, a.substr(0, 40));
  // Give the first half time to arrive on its own (the test passes either way).
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  write_all(client.fd, a.substr(40));
  write_all(client.fd, b + c);
  REQUIRE(rig.rec.wait([&] { return rig.rec.seen.size() >= 3; }));
  uint32_t conn_worker = 0;
  {
    std::lock_guard lock(rig.rec.m);
    REQUIRE(rig.rec.seen.size() == 3);
    std::set<std::string> got;
    for (auto& s : rig.rec.seen) {
      CAPTURE(s.call_id);
      CHECK(s.parsed);
      CHECK(s.worker == s.owner);
      CHECK(s.from.protocol == core::Protocol::Tcp);
      CHECK(s.from.connection.valid());
      CHECK(s.from.connection.worker == s.received_by);
      conn_worker = s.from.connection.worker;
      got.insert(s.bytes);
    }
    CHECK(got == std::set<std::string>{a, b, c});
    // Every request on a connection belongs to the worker holding it: nothing handed off.
    for (auto& s : rig.rec.seen) CHECK(s.worker == s.received_by);
  }
  CHECK(rig.group.stats().frames_in == 3);
  CHECK(rig.group.stats().handoff_out == 0);
  // Replies sent on the connection by the worker that holds it.
  std::string replies = read_until(client.fd, [](const std::string& s) { return occurrences(s, "SIP/2.0 200 OK") >= 3; });
  CHECK(occurrences(replies, "SIP/2.0 200 OK") == 3);
  for (const char* id : {"tcp-a", "tcp-b", "tcp-c"})
    CHECK(replies.find(std::string("Call-ID: ") + id + "\r\n") != std::string::npos);
  CHECK(rig.group.worker(conn_worker).stats().connections_open == 1);
}

TEST_CASE("workers: CRLFCRLF ping gets a CRLF pong (RFC 5626 §3.5.1)") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Tcp)}, 2).ok());
  Fd client(tcp_connect(rig.endpoint(0)));
  write_all(client.fd, "\r\n\r\n");
  std::string got = read_until(client.fd, [](const std::string& s) { return s.size() >= 2; });
  CHECK(got == "\r\n");
  // A message after keep-alives still frames.
  write_all(client.fd, "\r\n\r\n" + options("after-ping", "z9hG4bKap", "TCP"));
  REQUIRE(rig.rec.wait([&] { return rig.rec.count_call("after-ping") == 1; }));
  CHECK(rig.group.stats().keepalives >= 2);
}

TEST_CASE("workers: oversize datagram is delivered as frame error 513") {
  Rig rig;
  transport::Limits limits;
  limits.max_message_bytes = 2000;
  REQUIRE(rig.start({listener(core::Protocol::Udp)}, 2, limits).ok());
  Fd client(::socket(AF_INET, SOCK_DGRAM, 0));
  std::string big = options("too-big", "z9hG4bKbig", "UDP", std::string(3000, 'x'));
  send_udp(client.fd, rig.endpoint(0), big);
  REQUIRE(rig.rec.wait([&] { return !rig.rec.seen.empty(); }));
  std::lock_guard lock(rig.rec.m);
  REQUIRE(rig.rec.seen.size() == 1);
  const Seen& s = rig.rec.seen[0];
  CHECK(s.frame_error);
  CHECK(s.status == 513);
  CHECK_FALSE(s.parsed);
  CHECK(s.worker == s.received_by);  // never handed off
  CHECK(s.bytes.size() == 2000);
  CHECK(big.compare(0, 2000, s.bytes) == 0);
}

TEST_CASE("workers: a burst queued while the worker is busy is read in full, each datagram intact") {
  // Many more datagrams than one recvmmsg reads (20) wait in the socket while the worker's
  // thread is held; every one must come out, whole and once.
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Udp)}, 1).ok());
  WorkerHold hold(rig.group.worker(0));
  Fd client(::socket(AF_INET, SOCK_DGRAM, 0));
  constexpr int kBurst = 250;
  std::set<std::string> sent;
  for (int i = 0; i < kBurst; ++i) {
    // Sizes differ, so a datagram read into the wrong slot or with another's length shows.
    std::string msg = options("burst-" + std::to_string(i), "z9hG4bKburst" + std::to_string(i), "UDP",
                              std::string(static_cast<size_t>(i % 7) * 100, 'b'));
    send_udp(client.fd, rig.endpoint(0), msg);
    sent.insert(msg);
  }
  hold.release();
  REQUIRE(rig.rec.wait([&] { return rig.rec.seen.size() >= sent.size(); }));
  std::lock_guard lock(rig.rec.m);
  CHECK(rig.rec.seen.size() == sent.size());
  std::set<std::string> got;
  for (auto& s : rig.rec.seen) {
    CHECK(s.parsed);
    got.insert(s.bytes);
  }
  CHECK(got == sent);
  CHECK(rig.group.stats().datagrams_in == sent.size());
}

TEST_CASE("workers: a stream framing error is delivered, then the connection closes") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Tcp)}, 2).ok());
  Fd client(tcp_connect(rig.endpoint(0)));
  std::string bad = "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKnocl\r\n"
                    "Call-ID: no-cl\r\n\r\n";
  write_all(client.fd, bad);
  REQUIRE(rig.rec.wait([&] { return !rig.rec.seen.empty(); }));
  {
    std::lock_guard lock(rig.rec.m);
    CHECK(rig.rec.seen[0].frame_error);
    CHECK(rig.rec.seen[0].status == 400);
    CHECK(rig.rec.seen[0].bytes == bad);
  }
  bool eof = false;
  read_until(client.fd, [](const std::string&) { return false; }, &eof);
  CHECK(eof);
  REQUIRE(rig.rec.wait([&] { return rig.rec.closed.size() == 1; }));
  CHECK(rig.group.stats().connections_open == 0);
}

TEST_CASE("workers: a message that does not parse is delivered unparsed on the receiving worker") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Udp)}, 2).ok());
  Fd client(::socket(AF_INET, SOCK_DGRAM, 0));
  // A UDP keep-alive first: dropped, counted. One client socket reaches one worker's socket
  // (SO_REUSEPORT hashes the 4-tuple), in order, so it is counted before the next is seen.
  send_udp(client.fd, rig.endpoint(0), "\r\n\r\n");
  send_udp(client.fd, rig.endpoint(0), "NOT SIP AT ALL\r\n\r\n");
  REQUIRE(rig.rec.wait([&] { return !rig.rec.seen.empty(); }));
  std::lock_guard lock(rig.rec.m);
  REQUIRE(rig.rec.seen.size() == 1);
  CHECK_FALSE(rig.rec.seen[0].parsed);
  CHECK_FALSE(rig.rec.seen[0].frame_error);
  CHECK(rig.rec.seen[0].bytes == "NOT SIP AT ALL\r\n\r\n");
  CHECK(rig.rec.seen[0].worker == rig.rec.seen[0].received_by);
  auto st = rig.group.stats();
  CHECK(st.parse_failures == 1);
  CHECK(st.keepalives == 1);
  CHECK(st.datagrams_in == 2);
  CHECK(st.handoff_out == 0);
}

TEST_CASE("workers: send() to a closed TCP port reports on_send_error on the sending worker") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Tcp)}, 2).ok());
  core::Peer to;
  to.protocol = core::Protocol::Tcp;
  to.endpoint = *core::Endpoint::parse("127.0.0.1", closed_tcp_port());
  std::atomic<int> accepted{-1};
  REQUIRE(rig.group.worker(1).post([&](Worker& w) {
    accepted = w.send(to, options("refused", "z9hG4bKref", "TCP"), 4242) ? 1 : 0;
    w.send(to, options("refused2", "z9hG4bKref2", "TCP"), 4343);  // queued on the same connect
  }));
  REQUIRE(rig.rec.wait([&] { return rig.rec.send_errors.size() >= 2; }));
  CHECK(accepted == 1);
  std::lock_guard lock(rig.rec.m);
  CHECK(rig.rec.send_errors.size() == 2);
  CHECK(rig.rec.send_errors[0] == std::make_pair(1u, uint64_t{4242}));
  CHECK(rig.rec.send_errors[1] == std::make_pair(1u, uint64_t{4343}));
  CHECK(rig.group.worker(1).stats().connect_failures == 1);
}

TEST_CASE("workers: send() opens a connection, then reuses it; a peer's request comes back in") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Tcp)}, 2).ok());
  // Our own peer: a plain listening socket.
  Fd server(::socket(AF_INET, SOCK_STREAM, 0));
  auto any = *core::Endpoint::parse("127.0.0.1", 0);
  REQUIRE(::bind(server.fd, any.sa(), any.len()) == 0);
  REQUIRE(::listen(server.fd, 4) == 0);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(server.fd, reinterpret_cast<sockaddr*>(&ss), &len);
  core::Peer to;
  to.protocol = core::Protocol::Tcp;
  to.endpoint = *core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
  std::string m1 = options("out-1", "z9hG4bKo1", "TCP"), m2 = options("out-2", "z9hG4bKo2", "TCP");
  // By value: the worker may still be in its write() when the peer has read the bytes.
  REQUIRE(rig.group.worker(0).post([to, m1, m2](Worker& w) {
    w.send(to, m1, 1);
    w.send(to, m2, 2);  // queued behind the connect, same connection
  }));
  REQUIRE(wait_readable(server.fd, 5000));
  Fd peer(::accept(server.fd, nullptr, nullptr));
  REQUIRE(peer.fd >= 0);
  std::string got = read_until(peer.fd, [&](const std::string& s) { return s.size() >= m1.size() + m2.size(); });
  CHECK(got == m1 + m2);
  // The far end sends a request over that connection: it is framed like any other.
  write_all(peer.fd, options("in-over-out", "z9hG4bKioo", "TCP"));
  REQUIRE(rig.rec.wait([&] { return rig.rec.count_call("in-over-out") == 1; }));
  CHECK(rig.group.worker(0).stats().connections_opened == 1);
  // The OPTIONS was answered over the same connection.
  std::string reply = read_until(peer.fd, [](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; });
  CHECK(reply.rfind("SIP/2.0 200 OK", 0) == 0);
  CHECK(rig.rec.send_errors.empty());
}

TEST_CASE("workers: a send by address goes over the connection another worker accepted") {
  // A UA over TCP puts its connection's local port in its Contact, where it accepts nothing:
  // whichever worker sends to that address must use the UA's connection (stream_directory.h).
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Tcp)}, 2).ok());
  Fd ua(tcp_connect(rig.endpoint(0)));
  write_all(ua.fd, options("ua-hello", "z9hG4bKuah", "TCP"));
  REQUIRE(rig.rec.wait([&] { return rig.rec.count_call("ua-hello") == 1; }));
  (void)read_until(ua.fd, [](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; });
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(ua.fd, reinterpret_cast<sockaddr*>(&ss), &len);
  core::Peer to;
  to.protocol = core::Protocol::Tcp;
  to.endpoint = *core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));  // no connection id
  std::string m0 = options("from-w0", "z9hG4bKfw0", "TCP"), m1 = options("from-w1", "z9hG4bKfw1", "TCP");
  // The messages by value: the worker may still be in its write() (and ASan's check of the
  // buffer after it) when the UA has read the bytes and this test has ended.
  REQUIRE(rig.group.worker(0).post([to, m0](Worker& w) { w.send(to, m0, 1); }));
  std::string got = read_until(ua.fd, [&](const std::string& s) { return s.find("from-w0") != std::string::npos; });
  REQUIRE(rig.group.worker(1).post([to, m1](Worker& w) { w.send(to, m1, 2); }));
  got += read_until(ua.fd, [&](const std::string& s) { return s.find("from-w1") != std::string::npos; });
  CHECK(got.find("from-w0") != std::string::npos);
  CHECK(got.find("from-w1") != std::string::npos);
  CHECK(rig.group.worker(0).stats().connections_opened == 0);
  CHECK(rig.group.worker(1).stats().connections_opened == 0);
  CHECK(rig.rec.send_errors.empty());
}

TEST_CASE("workers: dispatch by transaction hands a message to its owner with its parse") {
  // One source, many branches: about half the requests belong to the other worker. The
  // reader's parse travels with the hand-off, rebased onto the copy the owner receives:
  // its views point into the bytes delivered, never into the reader's buffer.
  Rig rig;
  transport::Limits limits;
  limits.dispatch = transport::Dispatch::ByTransaction;
  REQUIRE(rig.start({listener(core::Protocol::Udp)}, 2, limits).ok());
  Fd udp(::socket(AF_INET, SOCK_DGRAM, 0));
  constexpr int kCount = 32;
  for (int i = 0; i < kCount; ++i)
    send_udp(udp.fd, rig.endpoint(0), options("tx-" + std::to_string(i), "z9hG4bKtx" + std::to_string(i)));
  REQUIRE(rig.rec.wait([&] { return rig.rec.seen.size() >= kCount; }));
  std::lock_guard lock(rig.rec.m);
  int handed = 0;
  for (const Seen& s : rig.rec.seen) {
    CHECK(s.parsed);
    CHECK(s.views_in_bytes);
    CHECK(s.bytes.find("Call-ID: " + s.call_id + "\r\n") != std::string::npos);
    handed += s.worker != s.received_by;
  }
  CHECK(handed > 0);  // none at all: odds 1 in 2^32
  CHECK(rig.group.stats().handoff_in == static_cast<uint64_t>(handed));
}

TEST_CASE("workers: with one worker nothing is handed off") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Udp), listener(core::Protocol::Tcp)}, 1).ok());
  Fd udp(::socket(AF_INET, SOCK_DGRAM, 0));
  for (int i = 0; i < 6; ++i) send_udp(udp.fd, rig.endpoint(0), options("one-" + std::to_string(i), "z9hG4bK1w" + std::to_string(i)));
  Fd tcp(tcp_connect(rig.endpoint(1)));
  write_all(tcp.fd, options("one-tcp", "z9hG4bK1wt", "TCP"));
  REQUIRE(rig.rec.wait([&] { return rig.rec.seen.size() >= 7; }));
  auto st = rig.group.stats();
  CHECK(st.handoff_out == 0);
  CHECK(st.handoff_in == 0);
  std::lock_guard lock(rig.rec.m);
  for (auto& s : rig.rec.seen) CHECK(s.worker == 0);
}

TEST_CASE("workers: IPv6 loopback, UDP and TCP") {
  Fd probe(::socket(AF_INET6, SOCK_DGRAM, 0));
  auto lo6 = *core::Endpoint::parse("::1", 0);
  if (probe.fd < 0 || ::bind(probe.fd, lo6.sa(), lo6.len()) != 0) {
    MESSAGE("no IPv6 loopback here; skipped");
    return;
  }
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Udp, "::1"), listener(core::Protocol::Tcp, "::1")}, 2).ok());
  Fd udp(::socket(AF_INET6, SOCK_DGRAM, 0));
  send_udp(udp.fd, rig.endpoint(0), options("v6-udp", "z9hG4bKv6u"));
  Fd tcp(tcp_connect(rig.endpoint(1)));
  write_all(tcp.fd, options("v6-tcp", "z9hG4bKv6t", "TCP"));
  REQUIRE(rig.rec.wait([&] { return rig.rec.seen.size() >= 2; }));
  std::lock_guard lock(rig.rec.m);
  for (auto& s : rig.rec.seen) {
    CHECK(s.from.endpoint.family() == AF_INET6);
    CHECK(s.worker == s.owner);
  }
}

TEST_CASE("workers: connection limit and idle timeout") {
  Rig rig;
  transport::Limits limits;
  limits.max_connections = 1;
  limits.tcp_idle_timeout_s = 1;
  REQUIRE(rig.start({listener(core::Protocol::Tcp)}, 1, limits).ok());
  Fd first(tcp_connect(rig.endpoint(0)));
  write_all(first.fd, options("first", "z9hG4bKfirst", "TCP"));
  REQUIRE(rig.rec.wait([&] { return rig.rec.count_call("first") == 1; }));
  // Beyond the limit: accepted and closed at once.
  Fd second(tcp_connect(rig.endpoint(0)));
  bool eof = false;
  read_until(second.fd, [](const std::string&) { return false; }, &eof);
  CHECK(eof);
  CHECK(rig.group.stats().connections_refused == 1);
  // The first one (its 200 aside) goes quiet and is closed by the idle timeout.
  read_until(first.fd, [](const std::string&) { return false; }, &eof);
  CHECK(eof);
  CHECK(rig.group.stats().idle_closed == 1);
  CHECK(rig.group.stats().connections_open == 0);
}

TEST_CASE("workers: start fails cleanly when the address is taken by a non-REUSEPORT socket") {
  Fd holder(::socket(AF_INET, SOCK_DGRAM, 0));
  auto ep = *core::Endpoint::parse("127.0.0.1", 0);
  REQUIRE(::bind(holder.fd, ep.sa(), ep.len()) == 0);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(holder.fd, reinterpret_cast<sockaddr*>(&ss), &len);
  uint16_t port = core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))->port();
  Rig rig;
  auto st = rig.start({listener(core::Protocol::Tcp), listener(core::Protocol::Udp, "127.0.0.1", port)}, 2);
  CHECK_FALSE(st.ok());
  CHECK(rig.group.error_detail().find(std::to_string(port)) != std::string::npos);
  CHECK_FALSE(rig.group.running());
  // And the group can start afterwards.
  CHECK(rig.start({listener(core::Protocol::Udp)}, 2).ok());
}

TEST_CASE("workers: a second group on the same address is refused, not silently sharing it") {
  // Both groups would set SO_REUSEPORT; without the probe the kernel would let the second
  // one in and split the traffic between two processes.
  Rig first;
  REQUIRE(first.start({listener(core::Protocol::Udp), listener(core::Protocol::Tcp)}, 2).ok());
  for (size_t i = 0; i < 2; ++i) {
    Rig second;
    auto l = first.group.listeners()[i];
    auto st = second.start({l}, 2);
    CHECK_FALSE(st.ok());
    CHECK(second.group.error_detail().find("in use") != std::string::npos);
  }
}

TEST_CASE("workers: post() runs on the worker's thread; stop() closes what the handler left") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Udp)}, 2).ok());
  std::mutex m;
  std::condition_variable cv;
  std::vector<uint32_t> ran;
  // Timers left running on purpose: stop() must still finish. Freed after stop().
  std::vector<std::unique_ptr<uv_timer_t>> timers;
  for (int i = 0; i < 2; ++i) timers.push_back(std::make_unique<uv_timer_t>());
  for (uint32_t i = 0; i < 2; ++i) {
    REQUIRE(rig.group.worker(i).post([&](Worker& w) {
      uv_timer_t* t = timers[w.id()].get();
      uv_timer_init(w.loop(), t);
      uv_timer_start(t, [](uv_timer_t*) {}, 100000, 0);
      std::lock_guard lock(m);
      ran.push_back(w.id());
      cv.notify_all();
    }));
  }
  std::unique_lock lock(m);
  REQUIRE(cv.wait_for(lock, kWait, [&] { return ran.size() == 2; }));
  lock.unlock();
  rig.group.stop();
  CHECK_FALSE(rig.group.running());
}

TEST_CASE("workers: post() refuses when the bounded queue is full, and counts it") {
  Rig rig;
  transport::Limits limits;
  limits.queue_capacity = 4;
  REQUIRE(rig.start({listener(core::Protocol::Udp)}, 2, limits).ok());
  std::mutex m;
  std::condition_variable cv;
  bool via_post_to = false;
  int ran = 0;
  auto count = [&](Worker&) {
    std::lock_guard lock(m);
    ++ran;
    cv.notify_all();
  };
  WorkerHold hold(rig.group.worker(0));  // nothing drains its queue meanwhile
  int accepted = 0;
  for (int i = 0; i < 4; ++i) accepted += rig.group.worker(0).post(count);
  CHECK(accepted == 4);
  CHECK_FALSE(rig.group.worker(0).post(count));
  CHECK(rig.group.worker(0).stats().queue_full == 1);
  hold.release();
  // The queued ones run once the worker is free again; then post_to reaches it by id.
  std::unique_lock lock(m);
  CHECK(cv.wait_for(lock, kWait, [&] { return ran == 4; }));
  lock.unlock();
  REQUIRE(rig.group.worker(1).post_to(0, [&](Worker& w) {
    std::lock_guard g(m);
    via_post_to = w.id() == 0;
    cv.notify_all();
  }));
  lock.lock();
  CHECK(cv.wait_for(lock, kWait, [&] { return via_post_to; }));
}

// ---- live listener updates (WorkerGroup::update_listeners) ----

namespace {

// connect() to `to`: 0 when it connected, else the errno (ECONNREFUSED when nothing listens).
int tcp_try_connect(const core::Endpoint& to) {
  Fd fd(::socket(to.family(), SOCK_STREAM, 0));
  REQUIRE(fd.fd >= 0);
  return ::connect(fd.fd, to.sa(), to.len()) == 0 ? 0 : errno;
}

size_t open_count(const std::vector<ListenerSpec>& ls) {
  size_t n = 0;
  for (const auto& l : ls) n += !l.closed;
  return n;
}

// One OPTIONS over UDP to `to`, its 200 back (bounded).
bool udp_round_trip(const core::Endpoint& to, const std::string& call_id) {
  Fd c(::socket(AF_INET, SOCK_DGRAM, 0));
  send_udp(c.fd, to, options(call_id, "z9hG4bK" + call_id));
  if (!wait_readable(c.fd, 5000)) return false;
  char buf[2048];
  auto n = ::recv(c.fd, buf, sizeof buf, 0);
  return n > 0 && std::string(buf, static_cast<size_t>(n)).find("Call-ID: " + call_id + "\r\n") != std::string::npos;
}

// One OPTIONS over an open TCP connection, its 200 back over the same connection.
bool tcp_round_trip(int fd, const std::string& call_id) {
  write_all(fd, options(call_id, "z9hG4bK" + call_id, "TCP"));
  std::string got = read_until(fd, [&](const std::string& s) {
    return s.find("Call-ID: " + call_id + "\r\n") != std::string::npos;
  });
  return got.rfind("SIP/2.0 200 OK", 0) == 0;
}

// The listener table as worker `i` sees it, read on its thread.
std::vector<ListenerSpec> worker_listeners(WorkerGroup& g, uint32_t i) {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::vector<ListenerSpec> out;
  REQUIRE(g.worker(i).post([&](Worker& w) {
    std::lock_guard lock(m);
    out = w.listeners();
    done = true;
    cv.notify_all();
  }));
  std::unique_lock lock(m);
  REQUIRE(cv.wait_for(lock, kWait, [&] { return done; }));
  return out;
}

}  // namespace

TEST_CASE("workers: update_listeners opens new TCP and UDP listeners, closes removed ones, drains connections") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Udp)}, 2).ok());
  ListenerSpec base = rig.group.listeners()[0];

  // Add a TCP and a UDP listener (kernel-chosen ports: worker 0 picks, worker 1 shares it).
  REQUIRE(rig.group.update_listeners({base, listener(core::Protocol::Tcp), listener(core::Protocol::Udp)}).ok());
  REQUIRE(rig.group.listeners().size() == 3);
  CHECK(open_count(rig.group.listeners()) == 3);
  CHECK(rig.group.listeners()[0].same_socket(base));  // kept: same index
  ListenerSpec tcp = rig.group.listeners()[1], udp = rig.group.listeners()[2];
  CHECK(tcp.protocol == core::Protocol::Tcp);
  CHECK(udp.protocol == core::Protocol::Udp);
  CHECK(tcp.bind.port() != 0);
  CHECK(udp.bind.port() != 0);
  auto w1 = worker_listeners(rig.group, 1);
  REQUIRE(w1.size() == 3);
  CHECK(w1[1].bind == tcp.bind);
  CHECK(w1[2].bind == udp.bind);

  // A message each way on each new listener, and on the kept one.
  // The new UDP listener has a reply port on every worker, known to every worker.
  auto w0 = worker_listeners(rig.group, 0);
  REQUIRE(w0.size() == 3);
  for (uint32_t w = 0; w < 2; ++w) {
    CHECK(w0[2].reply_port(w) != 0);
    CHECK(w0[2].reply_port(w) != udp.bind.port());
    CHECK(w1[2].reply_port(w) == w0[2].reply_port(w));
  }
  CHECK(w0[2].reply_port(0) != w0[2].reply_port(1));
  CHECK(w1[1].reply_port(1) == 0);  // TCP: none
  CHECK(udp_round_trip(udp.bind, "upd-udp"));
  CHECK(udp_round_trip(base.bind, "upd-base"));
  Fd held(tcp_connect(tcp.bind));
  CHECK(tcp_round_trip(held.fd, "upd-tcp"));
  {
    std::lock_guard lock(rig.rec.m);
    for (auto& s : rig.rec.seen)
      if (s.call_id == "upd-tcp") CHECK(s.from.protocol == core::Protocol::Tcp);
  }

  // Remove both: the UDP port goes quiet, the TCP port refuses new connects, the connection
  // accepted on it still carries a request and its response.
  REQUIRE(rig.group.update_listeners({base}).ok());
  REQUIRE(rig.group.listeners().size() == 3);  // indexes stay; the slots are closed
  CHECK(open_count(rig.group.listeners()) == 1);
  CHECK_FALSE(rig.group.listeners()[0].closed);
  CHECK(rig.group.listeners()[1].closed);
  CHECK(rig.group.listeners()[2].closed);
  CHECK(worker_listeners(rig.group, 1)[1].closed);

  Fd c(::socket(AF_INET, SOCK_DGRAM, 0));
  send_udp(c.fd, udp.bind, options("upd-gone", "z9hG4bKupdgone"));
  CHECK(udp_round_trip(base.bind, "upd-marker"));  // the kept one still answers
  CHECK(rig.rec.count_call("upd-gone") == 0);
  CHECK(tcp_try_connect(tcp.bind) == ECONNREFUSED);
  CHECK(tcp_round_trip(held.fd, "upd-drain"));
  CHECK(rig.group.stats().connections_open == 1);

  // Added back: it takes its old slot again (same identity, same index), and answers.
  REQUIRE(rig.group.update_listeners({base, tcp}).ok());
  CHECK(rig.group.listeners().size() == 3);
  CHECK_FALSE(rig.group.listeners()[1].closed);
  CHECK(rig.group.listeners()[2].closed);
  Fd again(tcp_connect(tcp.bind));
  CHECK(tcp_round_trip(again.fd, "upd-again"));
  CHECK(tcp_round_trip(held.fd, "upd-held-still"));
}

TEST_CASE("workers: a failing update_listeners changes nothing") {
  Rig rig;
  REQUIRE(rig.start({listener(core::Protocol::Udp), listener(core::Protocol::Tcp)}, 2).ok());
  ListenerSpec udp = rig.group.listeners()[0], tcp = rig.group.listeners()[1];
  // Another socket (no SO_REUSEPORT) holds the port of one new listener.
  Fd holder(::socket(AF_INET, SOCK_DGRAM, 0));
  auto ep = *core::Endpoint::parse("127.0.0.1", 0);
  REQUIRE(::bind(holder.fd, ep.sa(), ep.len()) == 0);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(holder.fd, reinterpret_cast<sockaddr*>(&ss), &len);
  uint16_t port = core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))->port();

  // Adds a TCP listener (binds fine, first), adds the taken UDP port, removes the TCP one.
  auto st = rig.group.update_listeners(
      {udp, listener(core::Protocol::Tcp), listener(core::Protocol::Udp, "127.0.0.1", port)});
  CHECK_FALSE(st.ok());
  CAPTURE(rig.group.error_detail());
  CHECK(rig.group.error_detail().find(std::to_string(port)) != std::string::npos);
  CHECK(rig.group.error_detail().find("in use") != std::string::npos);

  // Nothing changed: the same two open, the TCP one (which the update would have removed)
  // still accepts, and both still carry messages.
  CHECK(open_count(rig.group.listeners()) == 2);
  CHECK_FALSE(rig.group.listeners()[0].closed);
  CHECK_FALSE(rig.group.listeners()[1].closed);
  for (size_t i = 2; i < rig.group.listeners().size(); ++i) CHECK(rig.group.listeners()[i].closed);
  auto w1 = worker_listeners(rig.group, 1);
  CHECK(open_count(w1) == 2);
  CHECK(udp_round_trip(udp.bind, "fail-udp"));
  Fd c(tcp_connect(tcp.bind));
  CHECK(tcp_round_trip(c.fd, "fail-tcp"));

  // Not "fail once, fail forever": with the port free, the same update succeeds.
  ::close(holder.fd);
  holder.fd = -1;
  REQUIRE(rig.group.update_listeners({udp, listener(core::Protocol::Udp, "127.0.0.1", port)}).ok());
  CHECK(open_count(rig.group.listeners()) == 2);
  CHECK(udp_round_trip(*core::Endpoint::parse("127.0.0.1", port), "fail-then-ok"));
  CHECK(tcp_try_connect(tcp.bind) == ECONNREFUSED);
  CHECK(tcp_round_trip(c.fd, "fail-drain"));
}

TEST_CASE("workers: update_listeners needs a running group") {
  WorkerGroup g;
  CHECK_FALSE(g.update_listeners({listener(core::Protocol::Udp)}).ok());
  CHECK_FALSE(g.error_detail().empty());
}
