#include "transport/sockets.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <new>

#include "core/log.h"
#include "transport/uv_worker.h"

namespace sb::transport::detail {

namespace {

// Asks the kernel for a large receive buffer: a burst of datagrams must not be dropped while
// the worker is busy (the kernel caps it at net.core.rmem_max).
constexpr int kUdpReceiveBuffer = 4 << 20;
constexpr int kListenBacklog = 1024;

std::string describe_bind(const char* what, const core::Endpoint& e, int err) {
  std::string s = what;
  s.append(" ").append(e.to_string()).append(": ").append(uv_strerror(err));
  return s;
}

// SO_REUSEPORT on the handle's socket, before bind: every worker binds the same address and
// the kernel balances datagrams / accepted connections over them. (uv_*_bind's REUSEADDR
// flag sets only SO_REUSEADDR on Linux, which does not balance.)
int set_reuseport(uv_handle_t* h) {
  uv_os_fd_t fd;
  if (int err = uv_fileno(h, &fd)) return err;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) return uv_translate_sys_error(errno);
  return 0;
}

// A UDP datagram that could not be sent at once: owns a copy of the bytes.
struct UdpSendReq {
  uv_udp_send_t req;
  UvWorker* worker;
  core::Peer to;
  uint64_t cookie;
  uint32_t origin;
  uint32_t len;

  char* data() { return reinterpret_cast<char*>(this + 1); }
  static UdpSendReq* make(std::string_view bytes) {
    void* mem = ::operator new(sizeof(UdpSendReq) + bytes.size());
    auto* r = new (mem) UdpSendReq{};
    r->len = static_cast<uint32_t>(bytes.size());
    std::memcpy(r->data(), bytes.data(), bytes.size());
    return r;
  }
  static void free(UdpSendReq* r) {
    r->~UdpSendReq();
    ::operator delete(r);
  }
  static void on_sent(uv_udp_send_t* req, int status) {
    auto* r = reinterpret_cast<UdpSendReq*>(req);  // req is the first member
    if (status == 0) {
      bump(r->worker->counters().bytes_out, r->len);
    } else {
      // UV_ECANCELED: the socket closed (stop) before the kernel took it.
      SB_LOG_RL(Warn, {}, "udp send to %s failed: %s", r->to.endpoint.to_string().c_str(),
                uv_strerror(status));
      r->worker->report_send_error(r->origin, r->cookie, r->to);
    }
    free(r);
  }
};

}  // namespace

int probe_unused(core::Protocol protocol, const core::Endpoint& bind) {
  if (bind.port() == 0) return 0;  // the kernel picks a free one
  int fd = ::socket(bind.family(), protocol == core::Protocol::Udp ? SOCK_DGRAM : SOCK_STREAM, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  int one = 1;
  // TCP: SO_REUSEADDR so a connection of ours left in TIME_WAIT does not count; a listening
  // socket still makes the bind fail.
  if (protocol != core::Protocol::Udp) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind.family() == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  int err = ::bind(fd, bind.sa(), bind.len()) == 0 ? 0 : uv_translate_sys_error(errno);
  ::close(fd);
  return err;
}

UdpSocket* UdpSocket::open(UvWorker& w, int listener, const core::Endpoint& bind,
                           core::Endpoint& bound, std::string& detail, bool shared) {
  auto* s = new UdpSocket(w, listener, bind.family());
  // recvmmsg (libuv >= 1.40): up to 20 datagrams per system call under load.
  int err = uv_udp_init_ex(w.loop(), &s->udp_,
                           static_cast<unsigned>(bind.family()) | UV_UDP_RECVMMSG);
  if (err) {
    detail = describe_bind("udp socket", bind, err);
    s->release();
    return nullptr;
  }
  s->adopt(&s->udp_);
  auto* h = reinterpret_cast<uv_handle_t*>(&s->udp_);
  if (shared) err = set_reuseport(h);
  if (!err)
    err = uv_udp_bind(&s->udp_, bind.sa(), bind.family() == AF_INET6 ? UV_UDP_IPV6ONLY : 0);
  if (err) {
    detail = describe_bind("udp bind", bind, err);
    s->release();
    return nullptr;
  }
  int rcvbuf = kUdpReceiveBuffer;
  uv_recv_buffer_size(h, &rcvbuf);  // best effort
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_udp_getsockname(&s->udp_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (auto e = core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))) bound = *e;
  }
  err = uv_udp_recv_start(
      &s->udp_, [](uv_handle_t* hh, size_t, uv_buf_t* buf) {
        *buf = from_handle<UdpSocket>(hh)->w_.udp_buffer();
      },
      &UdpSocket::on_recv);
  if (err) {
    detail = describe_bind("udp receive", bind, err);
    s->release();
    return nullptr;
  }
  return s;
}

void UdpSocket::on_recv(uv_udp_t* h, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr,
                        unsigned flags) {
  auto* s = from_handle<UdpSocket>(h);
  s->w_.on_datagram(*s, nread, buf, addr, flags);
}

bool UdpSocket::send(const core::Peer& to, std::string_view bytes, uint64_t cookie,
                     uint32_t origin) {
  if (released()) return false;
  uv_buf_t b = uv_buf_init(const_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
  int r = uv_udp_try_send(&udp_, &b, 1, to.endpoint.sa());
  if (r >= 0) {
    bump(w_.counters().bytes_out, bytes.size());
    return true;
  }
  if (r != UV_EAGAIN) {
    SB_LOG_RL(Warn, {}, "udp send to %s failed: %s", to.endpoint.to_string().c_str(),
              uv_strerror(r));
    return false;
  }
  // The kernel buffer is full or sends are already queued: queue a copy, within a bound.
  if (uv_udp_get_send_queue_size(&udp_) + bytes.size() > w_.limits().max_connection_queue_bytes)
    return false;
  UdpSendReq* req = UdpSendReq::make(bytes);
  req->worker = &w_;
  req->to = to;
  req->cookie = cookie;
  req->origin = origin;
  b = uv_buf_init(req->data(), req->len);
  r = uv_udp_send(&req->req, &udp_, &b, 1, to.endpoint.sa(), &UdpSendReq::on_sent);
  if (r != 0) {
    UdpSendReq::free(req);
    return false;
  }
  return true;
}

TcpServer* TcpServer::open(UvWorker& w, int listener, const core::Endpoint& bind,
                           core::Endpoint& bound, std::string& detail) {
  auto* s = new TcpServer(w, listener);
  int err = uv_tcp_init_ex(w.loop(), &s->tcp_, static_cast<unsigned>(bind.family()));
  if (err) {
    detail = describe_bind("tcp socket", bind, err);
    s->release();
    return nullptr;
  }
  s->adopt(&s->tcp_);
  err = set_reuseport(reinterpret_cast<uv_handle_t*>(&s->tcp_));
  if (!err)
    err = uv_tcp_bind(&s->tcp_, bind.sa(), bind.family() == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
  // libuv reports EADDRINUSE from uv_listen, not from uv_tcp_bind.
  if (!err) err = uv_listen(s->stream(), kListenBacklog, &TcpServer::on_connection);
  if (err) {
    detail = describe_bind("tcp listen", bind, err);
    s->release();
    return nullptr;
  }
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(&s->tcp_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (auto e = core::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss))) bound = *e;
  }
  return s;
}

void TcpServer::on_connection(uv_stream_t* server, int status) {
  auto* s = from_handle<TcpServer>(server);
  if (status < 0) {
    SB_LOG_RL(Warn, {}, "tcp accept failed: %s", uv_strerror(status));
    return;
  }
  s->w_.on_incoming(*s);
}

}  // namespace sb::transport::detail
