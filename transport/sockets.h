// A worker's UDP socket and listening TCP socket on one listener, each bound with
// SO_REUSEPORT so every worker has its own and the kernel spreads the traffic.
// Private to transport/.
#pragma once
#include <uv.h>

#include <string>
#include <string_view>

#include "core/address.h"
#include "transport/uv_handle.h"

namespace sb::transport::detail {

class UvWorker;

// With SO_REUSEPORT a second process of the same user binding our address would silently
// share its traffic instead of failing. So, before the first worker binds, check that
// nothing is bound there: a plain bind (no SO_REUSEPORT) on a throw-away socket. Returns 0
// or a libuv error (UV_EADDRINUSE).
int probe_unused(core::Protocol protocol, const core::Endpoint& bind);

class UdpSocket final : public HandleOwner {
 public:
  // Bound and receiving; nullptr (with `detail` set) on failure. `bound` gets the local
  // address (the port the kernel chose when `bind` had port 0). `shared`: SO_REUSEPORT (a
  // listener every worker binds); else the worker's own reply socket for that listener.
  static UdpSocket* open(UvWorker& w, int listener, const core::Endpoint& bind,
                         core::Endpoint& bound, std::string& detail, bool shared = true);

  // false on an immediate failure; a later one is reported to worker `origin`.
  bool send(const core::Peer& to, std::string_view bytes, uint64_t cookie, uint32_t origin);
  int listener() const { return listener_; }
  int family() const { return family_; }

 private:
  UdpSocket(UvWorker& w, int listener, int family) : w_(w), listener_(listener), family_(family) {}
  static void on_recv(uv_udp_t* h, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr,
                      unsigned flags);

  UvWorker& w_;
  uv_udp_t udp_{};
  int listener_;
  int family_;
};

class TcpServer final : public HandleOwner {
 public:
  static TcpServer* open(UvWorker& w, int listener, const core::Endpoint& bind,
                         core::Endpoint& bound, std::string& detail);
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  int listener() const { return listener_; }

 private:
  TcpServer(UvWorker& w, int listener) : w_(w), listener_(listener) {}
  static void on_connection(uv_stream_t* server, int status);

  UvWorker& w_;
  uv_tcp_t tcp_{};
  int listener_;
};

}  // namespace sb::transport::detail
