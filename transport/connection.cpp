#include "transport/connection.h"

#include <cstring>
#include <new>

#include "core/log.h"
#include "transport/uv_worker.h"

namespace sb::transport::detail {

namespace {
// A connection that failed framing gets this long to flush its last response.
constexpr uint64_t kDrainTimeoutMs = 5000;
}  // namespace

// The bytes of one uv_write that could not be written at once.
struct Connection::WriteReq {
  uv_write_t req;
  Connection* conn;
  uint64_t cookie;
  uint32_t origin;
  uint32_t len;
  bool report;

  char* data() { return reinterpret_cast<char*>(this + 1); }
  static WriteReq* make(std::string_view bytes) {
    void* mem = ::operator new(sizeof(WriteReq) + bytes.size());
    auto* r = new (mem) WriteReq{};
    r->len = static_cast<uint32_t>(bytes.size());
    std::memcpy(r->data(), bytes.data(), bytes.size());
    return r;
  }
  static void free(WriteReq* r) {
    r->~WriteReq();
    ::operator delete(r);
  }
};

Connection::Connection(UvWorker& w, uint32_t id, int listener)
    : w_(w), id_(id), listener_(listener), reader_(w.limits().max_message_bytes) {}

Connection::~Connection() {
  // Runs from the last close callback, outside any handler call: safe to call back up.
  if (w_.stopping()) return;
  for (auto& p : pending_) w_.report_send_error(p.origin, p.cookie, peer());
  if (notify_ && was_open_) w_.notify_connection_closed(peer());
}

core::Peer Connection::peer() const {
  core::Peer p;
  p.protocol = protocol();
  p.endpoint = remote_;
  p.connection = core::ConnectionId{w_.id(), id_};
  return p;
}

bool Connection::init_handles() {
  if (uv_timer_init(w_.loop(), &timer_) != 0) return false;
  adopt(&timer_);
  connect_req_.data = this;
  shutdown_req_.data = this;
  return true;
}

Connection* Connection::accept(UvWorker& w, uv_stream_t* server, uint32_t id, int listener,
                               std::shared_ptr<const TlsContext> tls) {
  auto* c = new Connection(w, id, listener);
  if (tls) c->tls_ = std::make_unique<TlsSession>(std::move(tls), TlsSession::Role::Server, std::string());
  if (uv_tcp_init(w.loop(), &c->tcp_) != 0) {
    c->release();
    return nullptr;
  }
  c->adopt(&c->tcp_);
  if (!c->init_handles() || uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp_)) != 0) {
    c->release();
    return nullptr;
  }
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (auto e = core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))) c->remote_ = *e;
  }
  uv_tcp_nodelay(&c->tcp_, 1);
  c->touch();
  if (c->tls_) {
    // Connecting until the handshake is done: what is sent meanwhile is queued.
    c->start_tls();
    return c;
  }
  c->state_ = State::Open;
  c->was_open_ = true;
  c->start_reading();
  if (w.limits().tcp_idle_timeout_s != 0) c->arm_timer(uint64_t{w.limits().tcp_idle_timeout_s} * 1000);
  return c;
}

Connection* Connection::connect(UvWorker& w, const core::Endpoint& to, uint32_t id, int listener,
                                const core::Endpoint* local, int& err,
                                std::shared_ptr<const TlsContext> tls, std::string peer_name) {
  auto* c = new Connection(w, id, listener);
  c->remote_ = to;
  if (tls)
    c->tls_ = std::make_unique<TlsSession>(std::move(tls), TlsSession::Role::Client, std::move(peer_name));
  err = uv_tcp_init_ex(w.loop(), &c->tcp_, static_cast<unsigned>(to.family()));
  if (err) {
    c->release();
    return nullptr;
  }
  c->adopt(&c->tcp_);
  if (!c->init_handles()) {
    err = UV_ENOMEM;
    c->release();
    return nullptr;
  }
  if (local) err = uv_tcp_bind(&c->tcp_, local->sa(), 0);
  if (!err) {
    uv_tcp_nodelay(&c->tcp_, 1);
    err = uv_tcp_connect(&c->connect_req_, &c->tcp_, to.sa(), [](uv_connect_t* req, int status) {
      static_cast<Connection*>(req->data)->on_connected(status);
    });
  }
  if (err) {
    c->release();
    return nullptr;
  }
  c->touch();
  c->arm_timer(w.limits().tcp_connect_timeout_ms);
  return c;
}

void Connection::start_reading() {
  int err = uv_read_start(
      reinterpret_cast<uv_stream_t*>(&tcp_),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        // One buffer per worker: libuv calls read_cb before the next alloc_cb, and the
        // reader copies only an incomplete tail out of it.
        *buf = from_handle<Connection>(h)->w_.stream_buffer();
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
        auto* c = from_handle<Connection>(s);
        if (nread > 0) {
          c->on_data(std::string_view(buf->base, static_cast<size_t>(nread)));
        } else if (nread < 0) {
          if (nread != UV_EOF)
            SB_LOG_RL(Debug, {}, "tcp read from %s: %s", c->remote_.to_string().c_str(),
                      uv_strerror(static_cast<int>(nread)));
          c->close(true);
        }
      });
  if (err) close(true);
}

void Connection::arm_timer(uint64_t ms) {
  uv_timer_start(&timer_, [](uv_timer_t* t) { from_handle<Connection>(t)->on_timer(); }, ms, 0);
}

void Connection::touch() { last_activity_ = uv_now(w_.loop()); }

void Connection::on_timer() {
  switch (state_) {
    case State::Connecting:
      if (tcp_up_) {
        SB_LOG_RL(Info, {}, "tls handshake with %s timed out", remote_.to_string().c_str());
        bump(w_.counters().tls_handshake_timeouts);
        bump(w_.counters().tls_handshakes_failed);
      } else {
        SB_LOG_RL(Info, {}, "tcp connect to %s timed out", remote_.to_string().c_str());
        bump(w_.counters().connect_failures);
      }
      close(true);
      return;
    case State::Open: {
      uint64_t idle = uint64_t{w_.limits().tcp_idle_timeout_s} * 1000;
      uint64_t quiet = uv_now(w_.loop()) - last_activity_;
      if (quiet >= idle) {
        bump(w_.counters().idle_closed);
        close(true);
      } else {
        // Re-armed lazily here instead of on every read/write: one timer restart per idle
        // period rather than per message.
        arm_timer(idle - quiet);
      }
      return;
    }
    case State::Draining:
      close(true);
      return;
    case State::Closed:
      return;
  }
}

void Connection::on_connected(int status) {
  if (state_ != State::Connecting) return;  // closed meanwhile (UV_ECANCELED)
  if (status < 0) {
    SB_LOG_RL(Info, {}, "tcp connect to %s failed: %s", remote_.to_string().c_str(),
              uv_strerror(status));
    bump(w_.counters().connect_failures);
    close(true);  // the queued messages are reported from the destructor
    return;
  }
  touch();
  if (tls_) {
    start_tls();
    return;
  }
  state_ = State::Open;
  was_open_ = true;
  start_reading();
  if (state_ != State::Open) return;
  on_open();
}

void Connection::start_tls() {
  tcp_up_ = true;
  arm_timer(w_.limits().tls_handshake_timeout_ms);
  start_reading();
  if (state_ != State::Connecting) return;
  if (!tls_->start()) {
    SB_LOG_RL(Info, {}, "tls with %s: %s", remote_.to_string().c_str(), tls_->error().c_str());
    bump(w_.counters().tls_handshakes_failed);
    close(true);
    return;
  }
  flush_tls(0, w_.id(), false);
}

bool Connection::flush_tls(uint64_t cookie, uint32_t origin, bool report) {
  std::string& out = tls_->output();
  if (out.empty()) return true;
  bool ok = write(out, cookie, origin, report);
  out.clear();  // keeps its capacity: no allocation per message
  return ok;
}

void Connection::on_tls_data(std::string_view cipher) {
  const bool was_done = tls_->handshake_done();
  std::string& plain = w_.tls_plain_buffer();
  plain.clear();
  const bool ok = tls_->feed(cipher, plain);
  // Handshake records and alerts (also the one telling a refused peer why) go out first.
  flush_tls(0, w_.id(), false);
  if (state_ == State::Closed) return;
  if (!was_done) {
    if (!ok) {
      // Also a server certificate that verified but names another domain (RFC 5922).
      bump(w_.counters().tls_handshakes_failed);
      SB_LOG_RL(Info, {}, "tls %s: %s", remote_.to_string().c_str(), tls_->error().c_str());
      close(true);
      return;
    }
    if (!tls_->handshake_done()) return;
    bump(w_.counters().tls_handshakes_ok);
    state_ = State::Open;
    was_open_ = true;
    on_open();
    if (state_ != State::Open) return;
  }
  // Records that arrived with the Finished may already carry SIP: frame them too.
  if (!plain.empty() && state_ == State::Open) {
    reader_.feed(plain, [this](const core::Frame& f, std::string_view bytes) {
      return on_frame(f, bytes);
    });
  }
  if (!ok && state_ != State::Closed) {
    if (tls_->closed_by_peer())
      SB_LOG_RL(Debug, {}, "tls %s: closed by the peer", remote_.to_string().c_str());
    else
      SB_LOG_RL(Info, {}, "tls %s: %s", remote_.to_string().c_str(), tls_->error().c_str());
    close(true);
  }
}

void Connection::on_open() {
  std::vector<Pending> queued;
  queued.swap(pending_);
  pending_bytes_ = 0;
  for (size_t i = 0; i < queued.size(); ++i) {
    if (state_ != State::Open) {
      // A write failed and closed us: the rest fails too.
      for (size_t j = i; j < queued.size(); ++j)
        w_.report_send_error(queued[j].origin, queued[j].cookie, peer());
      return;
    }
    if (!send_open(queued[i].bytes, queued[i].cookie, queued[i].origin, true))
      w_.report_send_error(queued[i].origin, queued[i].cookie, peer());
  }
  if (w_.limits().tcp_idle_timeout_s != 0) arm_timer(uint64_t{w_.limits().tcp_idle_timeout_s} * 1000);
  else uv_timer_stop(&timer_);
}

bool Connection::send(std::string_view bytes, uint64_t cookie, uint32_t origin) {
  switch (state_) {
    case State::Connecting:
      if (pending_bytes_ + bytes.size() > w_.limits().max_connection_queue_bytes) return false;
      pending_.push_back(Pending{std::string(bytes), cookie, origin});
      pending_bytes_ += bytes.size();
      return true;
    case State::Open:
      return send_open(bytes, cookie, origin, true);
    default:
      return false;
  }
}

bool Connection::send_open(std::string_view bytes, uint64_t cookie, uint32_t origin, bool report) {
  if (!tls_) return write(bytes, cookie, origin, report);
  if (!tls_->write(bytes)) {
    SB_LOG_RL(Info, {}, "tls %s: %s", remote_.to_string().c_str(), tls_->error().c_str());
    tls_->output().clear();
    close(true);
    return false;
  }
  return flush_tls(cookie, origin, report);
}

bool Connection::write(std::string_view bytes, uint64_t cookie, uint32_t origin, bool report) {
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  size_t queued = uv_stream_get_write_queue_size(stream);
  if (queued + bytes.size() > w_.limits().max_connection_queue_bytes) {
    SB_LOG_RL(Warn, {}, "tcp %s: %zu bytes queued, peer not reading; send refused",
              remote_.to_string().c_str(), queued);
    return false;
  }
  size_t done = 0;
  if (queued == 0) {
    uv_buf_t b = uv_buf_init(const_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
    int n = uv_try_write(stream, &b, 1);
    if (n >= 0) {
      done = static_cast<size_t>(n);
      bump(w_.counters().bytes_out, done);
      touch();
      if (done == bytes.size()) return true;
    } else if (n != UV_EAGAIN) {
      SB_LOG_RL(Debug, {}, "tcp write to %s: %s", remote_.to_string().c_str(), uv_strerror(n));
      close(true);
      return false;
    }
  }
  // The rest goes through libuv's queue, from a copy (the caller's bytes are a view).
  WriteReq* r = WriteReq::make(bytes.substr(done));
  r->conn = this;
  r->cookie = cookie;
  r->origin = origin;
  r->report = report;
  uv_buf_t b = uv_buf_init(r->data(), r->len);
  int err = uv_write(&r->req, stream, &b, 1, [](uv_write_t* req, int status) {
    auto* wr = reinterpret_cast<WriteReq*>(req);  // req is the first member
    wr->conn->on_written(*wr, status);
    WriteReq::free(wr);
  });
  if (err) {
    WriteReq::free(r);
    close(true);
    return false;
  }
  return true;
}

void Connection::on_written(WriteReq& r, int status) {
  if (status == 0) {
    bump(w_.counters().bytes_out, r.len);
    touch();
    return;
  }
  // UV_ECANCELED: the connection closed with this still queued.
  if (r.report) w_.report_send_error(r.origin, r.cookie, peer());
  if (status != UV_ECANCELED) close(true);
}

void Connection::send_pong() {
  // RFC 5626 §3.5.1: a CRLFCRLF ping is answered with a single CRLF.
  if (state_ == State::Open) send_open("\r\n", 0, w_.id(), false);
}

void Connection::on_data(std::string_view data) {
  // A TLS connection reads from the moment TCP is up: the handshake comes first.
  if (state_ != State::Open && !(tls_ && state_ == State::Connecting && tcp_up_)) return;
  touch();
  bump(w_.counters().bytes_in, data.size());
  if (tls_) {
    on_tls_data(data);
    return;
  }
  reader_.feed(data, [this](const core::Frame& f, std::string_view bytes) {
    return on_frame(f, bytes);
  });
}

bool Connection::on_frame(const core::Frame& f, std::string_view bytes) {
  if (f.kind == core::Frame::Kind::Ping) {
    bump(w_.counters().keepalives);
    send_pong();
    return state_ == State::Open;
  }
  if (f.kind == core::Frame::Kind::Pong) {
    bump(w_.counters().keepalives);
    return true;
  }
  return w_.on_stream_frame(*this, f, bytes);
}

void Connection::drain_and_close() {
  if (state_ != State::Open) {
    close(true);
    return;
  }
  state_ = State::Draining;
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  uv_read_stop(stream);
  // uv_shutdown completes after every queued write: then FIN and close.
  int err = uv_shutdown(&shutdown_req_, stream, [](uv_shutdown_t* req, int) {
    static_cast<Connection*>(req->data)->close(true);
  });
  if (err) {
    close(true);
    return;
  }
  arm_timer(kDrainTimeoutMs);
}

void Connection::close(bool notify) {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  notify_ = notify;
  w_.unregister(*this);
  release();
}

}  // namespace sb::transport::detail
