#include "transport/uv_worker.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>

#include <cassert>
#include <cstdio>
#include <cstring>

#include "core/log.h"
#include "transport/connection.h"
#include "transport/owner.h"
#include "transport/sockets.h"

namespace sb::transport::detail {

namespace {

// Tasks run per wake-up before the loop gets back to its sockets: a flood of hand-offs must
// not starve this worker's own I/O.
constexpr int kTaskBudget = 1024;

class FnTask final : public Task {
 public:
  explicit FnTask(std::function<void(Worker&)> fn) : fn_(std::move(fn)) {}
  void run(UvWorker& w) override { fn_(w); }

 private:
  std::function<void(Worker&)> fn_;
};

// A message read by another worker, for its owner (DESIGN.md "Threading"). It carries the
// reader's parse, rebased onto the task's copy of the bytes, so the owner does not parse
// the message a second time.
class HandOffTask final : public BytesTask<HandOffTask> {
 public:
  HandOffTask(const core::Peer& from, int listener, uint32_t received_by)
      : from_(from), listener_(listener), received_by_(received_by) {}
  // On the reader's thread, while the views of `parsed` are still valid.
  void adopt(const core::Message& parsed) { msg_.rebase(parsed, bytes()); }
  void run(UvWorker& w) override { w.receive_handed_off(bytes(), from_, listener_, received_by_, msg_); }

 private:
  core::Peer from_;
  int listener_;
  uint32_t received_by_;
  core::Message msg_;
};

// A send over a connection another worker owns.
class SendTask final : public BytesTask<SendTask> {
 public:
  SendTask(const core::Peer& to, uint64_t cookie, uint32_t origin, int via_listener)
      : to_(to), cookie_(cookie), origin_(origin), via_listener_(via_listener) {}
  void run(UvWorker& w) override {
    if (!w.send_from(origin_, to_, bytes(), cookie_, via_listener_))
      w.report_send_error(origin_, cookie_, to_);
  }

 private:
  core::Peer to_;
  uint64_t cookie_;
  uint32_t origin_;
  int via_listener_;
};

bool is_loopback(const core::Endpoint& e) {
  if (e.family() == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(e.sa());
    return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  }
  if (e.family() == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(e.sa());
    return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
  }
  return false;
}

bool is_wildcard(const core::Endpoint& e) {
  if (e.family() == AF_INET)
    return reinterpret_cast<const sockaddr_in*>(e.sa())->sin_addr.s_addr == htonl(INADDR_ANY);
  if (e.family() == AF_INET6)
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(e.sa())->sin6_addr);
  return false;
}

bool is_keepalive(std::string_view bytes) {
  for (char c : bytes)
    if (c != '\r' && c != '\n') return false;
  return true;
}

}  // namespace

UvWorker::UvWorker(uint32_t id, GroupState& group)
    : id_(id), group_(group), inbox_(group.limits.queue_capacity) {
  std::snprintf(name_, sizeof name_, "w%u", id);
}

UvWorker::~UvWorker() {
  // run() or close_unstarted() closed the loop; a loop still open here would leak handles.
  assert(!loop_open_);
}

bool UvWorker::on_thread() const {
  return thread_ == std::thread::id{} || thread_ == std::this_thread::get_id();
}

// ---- lifecycle ----

core::Status UvWorker::open(std::string& detail) {
  if (int err = uv_loop_init(&loop_)) {
    detail = std::string("uv_loop_init: ") + uv_strerror(err);
    return core::Error{"cannot create the event loop", 500};
  }
  loop_open_ = true;
  if (int err = uv_async_init(&loop_, &async_, &UvWorker::on_async)) {
    detail = std::string("uv_async_init: ") + uv_strerror(err);
    return core::Error{"cannot create the worker queue", 500};
  }
  async_.data = this;
  async_open_ = true;
  tls_ = group_.tls;
  udp_buf_ = std::make_unique<char[]>(kUdpBufferSize);
  stream_buf_ = std::make_unique<char[]>(kStreamBufferSize);

  // Worker 0 opens first, on the main thread, and writes the ports the kernel chose back
  // into the group's list, which the later workers copy.
  listeners_ = group_.listeners;
  udp_.assign(listeners_.size(), nullptr);
  reply_udp_.assign(listeners_.size(), nullptr);
  servers_.assign(listeners_.size(), nullptr);
  for (size_t i = 0; i < listeners_.size(); ++i) {
    listeners_[i].closed = false;
    if (core::Status st = open_listener(i, detail); !st) return st;
    if (id_ == 0) group_.listeners[i] = listeners_[i];
    // Every worker's reply port goes into the group's list; WorkerGroup::start hands the
    // completed list to every worker once all are open.
    group_.listeners[i].reply_ports.resize(id_ + 1, 0);
    group_.listeners[i].reply_ports[id_] = listeners_[i].reply_port(id_);
  }
  return {};
}

core::Status UvWorker::open_listener(size_t i, std::string& detail) {
  ListenerSpec& spec = listeners_[i];
  core::Endpoint bound;
  int idx = static_cast<int>(i);
  if (id_ == 0) {
    if (int err = probe_unused(spec.protocol, spec.bind)) {
      detail = std::string(core::protocol_name(spec.protocol)) + " listener " +
               spec.bind.to_string() + ": " + uv_strerror(err) +
               (err == UV_EADDRINUSE ? " (another process holds it)" : "");
      return core::Error{"listener address in use", 500};
    }
  }
  if (spec.protocol == core::Protocol::Udp) {
    udp_[i] = UdpSocket::open(*this, idx, spec.bind, bound, detail);
    if (!udp_[i]) return core::Error{"cannot bind a UDP listener", 500};
    if (!spec.symmetric) {
      // This worker's own port on the listener's address (listener.h): what it reads there
      // is delivered as read on the listener.
      core::Endpoint any = spec.bind, reply;
      any.set_port(0);
      reply_udp_[i] = UdpSocket::open(*this, idx, any, reply, detail, false);
      if (!reply_udp_[i]) {
        std::exchange(udp_[i], nullptr)->release();
        return core::Error{"cannot bind a UDP reply socket", 500};
      }
      spec.reply_ports.resize(std::max<size_t>(spec.reply_ports.size(), id_ + 1), 0);
      spec.reply_ports[id_] = reply.port();
    }
  } else if (spec.protocol == core::Protocol::Tcp || spec.protocol == core::Protocol::Tls) {
    // TLS is TCP underneath; the handshake starts per accepted connection.
    servers_[i] = TcpServer::open(*this, idx, spec.bind, bound, detail);
    if (!servers_[i]) return core::Error{"cannot listen on a TCP listener", 500};
  } else {
    detail = "listener " + spec.bind.to_string() + ": " +
             std::string(core::protocol_name(spec.protocol)) + " is not implemented";
    return core::Error{"transport not implemented", 500};
  }
  // Port 0: the first worker lets the kernel choose; the others bind the same port.
  if (spec.bind.port() == 0 && bound.valid()) spec.bind.set_port(bound.port());
  return {};
}

// ---- listener updates (WorkerGroup::update_listeners) ----

void UvWorker::set_listener_table(std::vector<ListenerSpec> table) {
  assert(on_thread());
  assert(table.size() >= listeners_.size());  // slots are never taken away
  listeners_ = std::move(table);
  udp_.resize(listeners_.size(), nullptr);
  reply_udp_.resize(listeners_.size(), nullptr);
  servers_.resize(listeners_.size(), nullptr);
}

std::string UvWorker::open_listeners(const std::vector<size_t>& slots) {
  assert(on_thread());
  if (stopping_) return "worker " + std::to_string(id_) + " is stopping";
  std::string detail;
  for (size_t k = 0; k < slots.size(); ++k) {
    size_t i = slots[k];
    assert(i < listeners_.size() && !udp_[i] && !servers_[i]);
    if (open_listener(i, detail)) {
      listeners_[i].closed = false;
      continue;
    }
    // All or nothing on this worker too: the update rolls back the other workers.
    close_listeners(std::vector<size_t>(slots.begin(), slots.begin() + static_cast<ptrdiff_t>(k)));
    return detail.empty() ? "cannot bind " + listeners_[i].bind.to_string() : detail;
  }
  return {};
}

void UvWorker::close_listeners(const std::vector<size_t>& slots) {
  assert(on_thread());
  for (size_t i : slots) {
    if (i >= listeners_.size()) continue;
    // release() frees each socket from its close callback (STYLE.md 9). A TCP listening
    // socket's close drops only connections not yet accepted; accepted ones are their own
    // handles and drain.
    if (udp_[i]) std::exchange(udp_[i], nullptr)->release();
    if (reply_udp_[i]) std::exchange(reply_udp_[i], nullptr)->release();
    if (servers_[i]) std::exchange(servers_[i], nullptr)->release();
    listeners_[i].closed = true;
  }
}

void UvWorker::run() {
  thread_ = std::this_thread::get_id();
  core::log::set_thread_name(name_);
  if (group_.limits.batch_scheduling) {
    // Unprivileged: SCHED_BATCH at the thread's nice value needs no capability.
    sched_param none{};
    if (int err = pthread_setschedparam(pthread_self(), SCHED_BATCH, &none))
      SB_WARN("worker %u: SCHED_BATCH refused (%s), scheduled as a normal thread", id_,
              std::strerror(err));
  }
  const auto& cpus = group_.limits.worker_cpus;
  if (id_ < cpus.size() && cpus[id_] >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpus[id_], &set);
    if (int err = pthread_setaffinity_np(pthread_self(), sizeof set, &set))
      SB_WARN("worker %u: cannot pin it to CPU %d (%s), the kernel places it", id_, cpus[id_],
              std::strerror(err));
  }
  if (group_.on_start) group_.on_start(*this);
  group_.started->count_down();
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (int err = uv_loop_close(&loop_))
    SB_ERROR("worker %u: loop still busy at exit: %s", id_, uv_strerror(err));
  loop_open_ = false;
}

void UvWorker::close_unstarted() {
  if (!loop_open_) return;
  shut_down();
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (int err = uv_loop_close(&loop_))
    SB_ERROR("worker %u: loop still busy at exit: %s", id_, uv_strerror(err));
  loop_open_ = false;
}

void UvWorker::request_stop() {
  stop_requested_.store(true, std::memory_order_seq_cst);
  posters_.fetch_add(1, std::memory_order_seq_cst);
  if (accepting_.load(std::memory_order_seq_cst)) uv_async_send(&async_);
  posters_.fetch_sub(1, std::memory_order_seq_cst);
}

void UvWorker::shut_down() {
  if (stopping_) return;
  stopping_ = true;
  if (handler_) handler_->on_stop(*this);
  std::vector<Connection*> conns;
  conns.reserve(connections_.size());
  for (auto& [id, c] : connections_) conns.push_back(c);
  for (Connection* c : conns) c->close(false);
  for (UdpSocket*& s : udp_)
    if (s) std::exchange(s, nullptr)->release();
  for (UdpSocket*& s : reply_udp_)
    if (s) std::exchange(s, nullptr)->release();
  for (TcpServer*& s : servers_)
    if (s) std::exchange(s, nullptr)->release();
  close_inbox();
  // Whatever the handler left open would keep the loop (and stop()) waiting forever.
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void* arg) {
        if (uv_is_closing(h)) return;
        SB_WARN("worker %u: a %s handle was left open at stop; closing it",
                static_cast<UvWorker*>(arg)->id_, uv_handle_type_name(uv_handle_get_type(h)));
        uv_close(h, nullptr);
      },
      this);
}

void UvWorker::close_inbox() {
  if (!async_open_) return;
  accepting_.store(false, std::memory_order_seq_cst);
  while (posters_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  std::unique_ptr<Task> t;
  while (inbox_.try_pop(t)) t.reset();  // not run: the handler has stopped
  async_open_ = false;
  // async_ is a member: the worker outlives the loop, which runs until this close completes.
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
}

// ---- the queue ----

bool UvWorker::push(std::unique_ptr<Task> task) {
  posters_.fetch_add(1, std::memory_order_seq_cst);
  bool ok = false;
  bool full = false;
  if (accepting_.load(std::memory_order_seq_cst)) {
    ok = inbox_.try_push(std::move(task));
    if (ok) uv_async_send(&async_);
    else full = true;
  }
  posters_.fetch_sub(1, std::memory_order_seq_cst);
  if (full) c_.queue_full.fetch_add(1, std::memory_order_relaxed);
  return ok;
}

bool UvWorker::post(std::function<void(Worker&)> fn) {
  return push(std::make_unique<FnTask>(std::move(fn)));
}

bool UvWorker::post_to(uint32_t worker, std::function<void(Worker&)> fn) {
  if (worker >= group_.workers.size()) return false;
  return group_.workers[worker]->post(std::move(fn));
}

void UvWorker::on_async(uv_async_t* h) {
  auto* w = static_cast<UvWorker*>(h->data);
  if (w->stop_requested_.load(std::memory_order_acquire)) {
    w->shut_down();
    return;
  }
  w->drain_inbox();
}

void UvWorker::drain_inbox() {
  std::unique_ptr<Task> t;
  for (int i = 0; i < kTaskBudget; ++i) {
    if (stopping_ || !inbox_.try_pop(t)) return;
    t->run(*this);
    t.reset();
  }
  // More left: come back after the sockets had their turn.
  if (!inbox_.empty_approx()) uv_async_send(&async_);
}

// ---- receiving ----

void UvWorker::on_datagram(const UdpSocket& s, ssize_t nread, const uv_buf_t* buf,
                           const sockaddr* addr, unsigned flags) {
  if (flags & UV_UDP_MMSG_FREE) return;  // the buffer is ours and reused
  if (nread < 0) {
    SB_LOG_RL(Warn, {}, "udp receive: %s", uv_strerror(static_cast<int>(nread)));
    return;
  }
  if (addr == nullptr || nread == 0 || stopping_) return;  // nothing read / empty datagram
  bump(c_.datagrams_in);
  bump(c_.bytes_in, static_cast<uint64_t>(nread));
  auto src = core::Endpoint::from_sockaddr(addr);
  if (!src) return;
  if (admit(*src) != SourceLimits::Verdict::Pass) return;
  core::Peer from;
  from.protocol = core::Protocol::Udp;
  from.endpoint = *src;
  std::string_view bytes(buf->base, static_cast<size_t>(nread));
  if ((flags & UV_UDP_PARTIAL) || bytes.size() > limits().max_message_bytes) {
    // RFC 3261 §18.1.1 / §21.5.14: too large for us.
    bump(c_.frame_errors);
    if (bytes.size() > limits().max_message_bytes) bytes = bytes.substr(0, limits().max_message_bytes);
    deliver_frame_error(bytes, from, s.listener(), core::Error{"message too large", 513});
    return;
  }
  if (is_keepalive(bytes)) {  // CRLF keep-alives some UAs send over UDP too
    bump(c_.keepalives);
    return;
  }
  receive(bytes, from, s.listener());
}

bool UvWorker::on_stream_frame(Connection& c, const core::Frame& f, std::string_view bytes) {
  if (stopping_) return false;
  if (f.kind == core::Frame::Kind::Error) {
    bump(c_.frame_errors);
    SB_LOG_RL(Info, {}, "tcp %s: framing error: %s", c.remote().to_string().c_str(),
              core::describe(f.error).c_str());
    deliver_frame_error(bytes, c.peer(), c.listener(), f.error);
    c.drain_and_close();
    return false;
  }
  bump(c_.frames_in);
  if (SourceLimits::Verdict v = admit(c.remote()); v != SourceLimits::Verdict::Pass) {
    // A blocked source loses its connection; one merely over its rate only this frame.
    if (v == SourceLimits::Verdict::Blocked) {
      c.close(true);
      return false;
    }
    return c.state() == Connection::State::Open;
  }
  receive(bytes, c.peer(), c.listener());
  return c.state() == Connection::State::Open;
}

SourceLimits::Verdict UvWorker::admit(const core::Endpoint& from) {
  bool newly_blocked = false;
  SourceLimits::Verdict v = sources_.on_message(from, static_cast<int64_t>(uv_now(&loop_)), &newly_blocked);
  switch (v) {
    case SourceLimits::Verdict::Pass:
      break;
    case SourceLimits::Verdict::RateLimited:
      bump(c_.rate_limited);
      if (newly_blocked) {
        bump(c_.sources_blocked);
        SB_LOG_RL(Warn, {}, "worker %u: %s keeps exceeding its rate: blocked for %u s", id_,
                  from.ip().c_str(), sources_.settings().block_s);
      }
      break;
    case SourceLimits::Verdict::Blocked:
      bump(c_.blocked);
      break;
  }
  return v;
}

void UvWorker::set_source_limits(const SourceLimitSettings& s) {
  assert(on_thread());
  sources_.configure(s);
}

void UvWorker::receive(std::string_view bytes, const core::Peer& from, int listener) {
  Inbound in;
  in.bytes = bytes;
  in.from = from;
  in.listener = listener;
  in.received_by = id_;
  if (!msg_.parse(bytes)) {
    // Still ours to answer (400 when the Via is usable) or drop: DESIGN.md "Security".
    bump(c_.parse_failures);
    deliver(in);
    return;
  }
  if (from.protocol == core::Protocol::Tls && msg_.is_request()) note_alias(from);
  in.parsed = &msg_;
  uint32_t owner = owner_of(msg_, workers(), id_, limits().dispatch);
  if (owner == id_) {
    deliver(in);
    return;
  }
  hand_off(owner, in);
}

bool UvWorker::hand_off(uint32_t worker, const Inbound& in) {
  // Only a parsed message changes workers (one that does not parse is answered where it
  // was read); its parse goes with it.
  assert(in.parsed);
  if (!in.parsed) return false;
  if (worker >= workers()) {
    bump(c_.handoff_dropped);
    return false;
  }
  auto task = HandOffTask::make(in.bytes, in.from, in.listener, in.received_by);
  task->adopt(*in.parsed);
  if (group_.workers[worker]->push(std::move(task))) {
    bump(c_.handoff_out);
    return true;
  }
  bump(c_.handoff_dropped);
  SB_LOG_RL(Warn, {}, "worker %u queue full: message dropped", worker);
  return false;
}

// RFC 5923 connection reuse: a TLS peer whose top Via offers ";alias" may be sent requests for
// its sent-by over the connection it opened, instead of a new connection to a port it may
// not even listen on. §5/§6: only when the peer's certificate, verified against our CA
// bundle, proves the sent-by host (config tls.verify_client makes clients present one). A
// sent-by that is a name is not aliased (the address it resolves to is not known here).
void UvWorker::note_alias(const core::Peer& from) {
  const core::Via& via = msg_.top_via();
  if (!via.param("alias") || !from.connection.valid() || from.connection.worker != id_) return;
  auto sent_by = core::Endpoint::parse(via.host, via.port ? via.port : 5061);
  if (!sent_by || *sent_by == from.endpoint) return;
  auto it = connections_.find(from.connection.id);
  if (it == connections_.end() || !it->second->usable()) return;
  auto known = by_endpoint_.find(StreamKey{core::Protocol::Tls, *sent_by});
  if (known != by_endpoint_.end() && known->second == from.connection.id) return;
  if (!it->second->peer_proves(via.host)) return;
  remember_stream(core::Protocol::Tls, *sent_by, from.connection.id);
  aliases_[from.connection.id] = *sent_by;
}

void UvWorker::receive_handed_off(std::string_view bytes, const core::Peer& from, int listener,
                                  uint32_t received_by, const core::Message& parsed) {
  bump(c_.handoff_in);
  Inbound in;
  in.bytes = bytes;
  in.from = from;
  in.listener = listener;
  in.received_by = received_by;
  in.parsed = &parsed;  // the reader's parse, its views rebased onto `bytes`
  deliver(in);
}

void UvWorker::deliver_frame_error(std::string_view bytes, const core::Peer& from, int listener,
                                   const core::Error& e) {
  Inbound in;
  in.bytes = bytes;
  in.from = from;
  in.listener = listener;
  in.received_by = id_;
  in.frame_error = e;
  in.has_frame_error = true;
  deliver(in);
}

void UvWorker::deliver(Inbound& in) {
  if (stopping_) return;
  if (!handler_) {
    bump(c_.dropped_no_handler);
    return;
  }
  bump(c_.delivered);
  handler_->on_message(*this, in);
}

// ---- sending ----

bool UvWorker::send(const core::Peer& to, std::string_view bytes, uint64_t cookie,
                    int via_listener, bool from_reply_port) {
  assert(on_thread());
  bool ok = send_from(id_, to, bytes, cookie, via_listener, from_reply_port);
  bump(ok ? c_.messages_out : c_.send_errors);
  return ok;
}

bool UvWorker::send_from(uint32_t origin, const core::Peer& to, std::string_view bytes,
                         uint64_t cookie, int via_listener, bool from_reply_port) {
  if (stopping_) return false;
  switch (to.protocol) {
    case core::Protocol::Udp:
      return send_udp(origin, to, bytes, cookie, via_listener, from_reply_port);
    case core::Protocol::Tcp:
    case core::Protocol::Tls:
      return send_stream(origin, to, bytes, cookie, via_listener);
    default:  // WebSocket is not implemented yet
      return false;
  }
}

UdpSocket* UvWorker::pick_udp(int via_listener, const core::Endpoint& to) const {
  if (via_listener >= 0 && static_cast<size_t>(via_listener) < udp_.size()) {
    UdpSocket* s = udp_[static_cast<size_t>(via_listener)];
    if (s && s->family() == to.family()) return s;
  }
  // The first UDP listener of the family; but a socket bound to loopback cannot reach other
  // hosts, so for those prefer one that can.
  UdpSocket* first = nullptr;
  for (UdpSocket* s : udp_) {
    if (!s || s->family() != to.family()) continue;
    if (!first) first = s;
    if (!is_loopback(listeners_[static_cast<size_t>(s->listener())].bind) || is_loopback(to))
      return s;
  }
  return first;
}

int UvWorker::pick_stream_listener(core::Protocol protocol, int via_listener,
                                   const core::Endpoint& to) const {
  const auto& specs = listeners_;
  auto fits = [&](size_t i) {
    return !specs[i].closed && specs[i].protocol == protocol &&
           specs[i].bind.family() == to.family();
  };
  if (via_listener >= 0 && static_cast<size_t>(via_listener) < specs.size() &&
      fits(static_cast<size_t>(via_listener)))
    return via_listener;
  int first = -1;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!fits(i)) continue;
    if (first < 0) first = static_cast<int>(i);
    if (!is_loopback(specs[i].bind) || is_loopback(to)) return static_cast<int>(i);
  }
  return first;
}

bool UvWorker::send_udp(uint32_t origin, const core::Peer& to, std::string_view bytes,
                        uint64_t cookie, int via_listener, bool from_reply_port) {
  if (!to.endpoint.valid()) return false;
  UdpSocket* s = pick_udp(via_listener, to.endpoint);
  if (s && from_reply_port && !to.flow) {
    if (UdpSocket* own = reply_udp_[static_cast<size_t>(s->listener())]) s = own;
  }
  return s && s->send(to, bytes, cookie, origin);
}

bool UvWorker::send_stream(uint32_t origin, const core::Peer& to, std::string_view bytes,
                           uint64_t cookie, int via_listener) {
  const core::ConnectionId& cid = to.connection;
  if (cid.valid() && cid.worker != id_ && cid.worker < workers() && origin == id_) {
    // Another worker owns that connection: only it may write to it.
    return group_.workers[cid.worker]->push(
        SendTask::make(bytes, to, cookie, origin, via_listener));
  }
  if (cid.valid() && cid.worker == id_) {
    auto it = connections_.find(cid.id);
    if (it != connections_.end() && it->second->usable())
      return it->second->send(bytes, cookie, origin);
    // Gone: RFC 3261 §18.2.2 / §18.1.1, try the endpoint (a new connection if need be).
  }
  if (!to.endpoint.valid() || to.endpoint.port() == 0) return false;
  auto found = by_endpoint_.find(StreamKey{to.protocol, to.endpoint});
  if (found != by_endpoint_.end()) {
    auto it = connections_.find(found->second);
    if (it != connections_.end() && it->second->usable())
      return it->second->send(bytes, cookie, origin);
  }
  if (origin == id_ && workers() > 1) {
    // Another worker may hold a connection to that peer (stream_directory.h): reuse it.
    auto held = group_.streams.find(to.protocol, to.endpoint);
    if (held && held->worker != id_ && held->worker < workers()) {
      core::Peer via_owner = to;
      via_owner.connection = *held;
      return group_.workers[held->worker]->push(
          SendTask::make(bytes, via_owner, cookie, origin, via_listener));
    }
  }
  if (connections_.size() >= limits().max_connections) {
    bump(c_.connections_refused);
    SB_LOG_RL(Warn, {}, "worker %u: %zu connections, connect to %s refused", id_,
              connections_.size(), to.endpoint.to_string().c_str());
    return false;
  }
  std::shared_ptr<const TlsContext> tls;
  if (to.protocol == core::Protocol::Tls) {
    if (!tls_) {
      SB_LOG_RL(Warn, {}, "tls to %s: no TLS configured (config \"tls\")",
                to.endpoint.to_string().c_str());
      return false;
    }
    tls = tls_;
  }
  int listener = pick_stream_listener(to.protocol, via_listener, to.endpoint);
  // When the caller named a listener with a specific address (multi-homed hosts), connect
  // from it, so the far end sees the address we put in Via / Record-Route. Otherwise the
  // kernel picks the source by route.
  const core::Endpoint* local = nullptr;
  core::Endpoint local_ep;
  if (listener >= 0 && listener == via_listener) {
    local_ep = listeners_[static_cast<size_t>(listener)].bind;
    local_ep.set_port(0);
    if (!is_wildcard(local_ep)) local = &local_ep;
  }
  int err = 0;
  // RFC 5922: the certificate must match the SIP domain this server was resolved for (noted
  // by this worker's resolver), else the address itself.
  std::string peer_name = tls ? tls_peer_name(to.endpoint) : std::string();
  Connection* c = Connection::connect(*this, to.endpoint, next_connection_id(), listener, local,
                                      err, std::move(tls), std::move(peer_name));
  if (!c) {
    bump(c_.connect_failures);
    SB_LOG_RL(Info, {}, "tcp connect to %s: %s", to.endpoint.to_string().c_str(), uv_strerror(err));
    return false;
  }
  bump(c_.connections_opened);
  add_connection(c);
  return c->send(bytes, cookie, origin);
}

// ---- connections ----

uint32_t UvWorker::next_connection_id() {
  // 0 means "no connection"; skip ids still in use after a wrap.
  do {
    ++last_connection_id_;
  } while (last_connection_id_ == 0 || connections_.count(last_connection_id_) != 0);
  return last_connection_id_;
}

void UvWorker::add_connection(Connection* c) {
  connections_[c->id()] = c;
  remember_stream(c->protocol(), c->remote(), c->id());
  bump(c_.connections_open);
}

void UvWorker::remember_stream(core::Protocol protocol, const core::Endpoint& remote, uint32_t id) {
  by_endpoint_[StreamKey{protocol, remote}] = id;
  group_.streams.add(protocol, remote, core::ConnectionId{id_, id});
}

void UvWorker::forget_stream(core::Protocol protocol, const core::Endpoint& remote, uint32_t id) {
  auto it = by_endpoint_.find(StreamKey{protocol, remote});
  if (it != by_endpoint_.end() && it->second == id) by_endpoint_.erase(it);
  group_.streams.remove(protocol, remote, core::ConnectionId{id_, id});
}

void UvWorker::on_incoming(TcpServer& s) {
  const bool tls_listener = listeners_[static_cast<size_t>(s.listener())].protocol == core::Protocol::Tls;
  Connection* c = Connection::accept(*this, s.stream(), next_connection_id(), s.listener(),
                                     tls_listener ? tls_ : nullptr);
  if (!c) return;
  add_connection(c);
  if (tls_listener && !tls_) {  // cannot happen with a validated config: a tls listener needs "tls"
    bump(c_.connections_refused);
    SB_LOG_RL(Warn, {}, "tls listener %d without a TLS context: connection refused", s.listener());
    c->close(false);
    return;
  }
  if (connections_.size() > limits().max_connections) {
    bump(c_.connections_refused);
    SB_LOG_RL(Warn, {}, "worker %u: connection limit %u reached, closing %s", id_,
              limits().max_connections, c->remote().to_string().c_str());
    c->close(false);
    return;
  }
  if (sources_.blocked(c->remote(), static_cast<int64_t>(uv_now(&loop_)))) {
    // Blocked for flooding (config "security"): no new connection, no TLS handshake.
    bump(c_.blocked);
    c->close(false);
    return;
  }
  if (!sources_.connection_accepted(c->id(), c->remote())) {
    bump(c_.connections_per_source);
    SB_LOG_RL(Warn, {}, "worker %u: %s holds %u connections (security.max_connections_per_source), "
              "closing the new one", id_, c->remote().ip().c_str(), sources_.settings().max_connections_per_source);
    c->close(false);
    return;
  }
  bump(c_.connections_accepted);
}

void UvWorker::unregister(Connection& c) {
  if (connections_.erase(c.id()) == 0) return;
  sources_.connection_closed(c.id());
  forget_stream(c.protocol(), c.remote(), c.id());
  if (auto a = aliases_.find(c.id()); a != aliases_.end()) {
    forget_stream(core::Protocol::Tls, a->second, c.id());
    aliases_.erase(a);
  }
  drop(c_.connections_open);
}

// ---- reporting back to the handler ----

void UvWorker::report_send_error(uint32_t origin, uint64_t cookie, const core::Peer& to) {
  bump(c_.send_errors);
  if (stopping_) return;
  if (origin == id_) {
    notify_send_error(cookie, to);
    return;
  }
  // The cookie means something only to the worker that sent.
  post_to(origin, [cookie, to](Worker& w) {
    static_cast<UvWorker&>(w).notify_send_error(cookie, to);
  });
}

void UvWorker::notify_send_error(uint64_t cookie, const core::Peer& to) {
  if (!stopping_ && handler_) handler_->on_send_error(*this, cookie, to);
}

void UvWorker::notify_connection_closed(const core::Peer& peer) {
  if (!stopping_ && handler_) handler_->on_connection_closed(*this, peer);
}

// ---- stats ----

WorkerStats UvWorker::stats() const {
  auto v = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  WorkerStats s;
  s.queue_depth = inbox_.size_approx();
  s.datagrams_in = v(c_.datagrams_in);
  s.frames_in = v(c_.frames_in);
  s.bytes_in = v(c_.bytes_in);
  s.bytes_out = v(c_.bytes_out);
  s.messages_out = v(c_.messages_out);
  s.delivered = v(c_.delivered);
  s.handoff_out = v(c_.handoff_out);
  s.handoff_in = v(c_.handoff_in);
  s.handoff_dropped = v(c_.handoff_dropped);
  s.queue_full = v(c_.queue_full);
  s.parse_failures = v(c_.parse_failures);
  s.frame_errors = v(c_.frame_errors);
  s.keepalives = v(c_.keepalives);
  s.send_errors = v(c_.send_errors);
  s.dropped_no_handler = v(c_.dropped_no_handler);
  s.connections_open = v(c_.connections_open);
  s.connections_accepted = v(c_.connections_accepted);
  s.connections_opened = v(c_.connections_opened);
  s.connections_refused = v(c_.connections_refused);
  s.connect_failures = v(c_.connect_failures);
  s.idle_closed = v(c_.idle_closed);
  s.tls_handshakes_ok = v(c_.tls_handshakes_ok);
  s.tls_handshakes_failed = v(c_.tls_handshakes_failed);
  s.tls_handshake_timeouts = v(c_.tls_handshake_timeouts);
  s.rate_limited = v(c_.rate_limited);
  s.blocked = v(c_.blocked);
  s.sources_blocked = v(c_.sources_blocked);
  s.connections_per_source = v(c_.connections_per_source);
  return s;
}

}  // namespace sb::transport::detail
