// The admin HTTP/1.1 listener (DESIGN.md "Admin and observability"): libuv on the main
// thread's loop, Debian's http-parser for the wire, JSON in and out. It only speaks HTTP;
// everything it serves comes from an AdminBackend. Routes, status codes and JSON shapes
// are in docs/admin.md.
//
// Bad input (malformed HTTP, oversized headers or body, bad JSON, slow or vanished
// clients) costs the offending connection only: it gets a 4xx JSON error and/or is closed.
#pragma once
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <unordered_set>

#include "app/admin_backend.h"
#include "core/result.h"

namespace sb::app {

struct AdminLimits {
  size_t max_body_bytes = 64 * 1024;     // larger → 413
  size_t max_header_bytes = 16 * 1024;   // request line + headers; larger → 431
  size_t max_connections = 32;           // beyond it a new connection is closed at once
  // A connection must deliver a complete request within this time of being accepted or of
  // its previous response being written; otherwise it is closed (idle keep-alive and
  // slow senders alike). 0 disables it.
  uint64_t idle_timeout_ms = 30000;
};

class AdminServer {
 public:
  // `loop` is the loop of the thread every call below, and every backend call, runs on.
  AdminServer(uv_loop_t* loop, AdminBackend& backend, AdminLimits limits = {});
  // Calls stop(). The memory of the closed handles is freed by their close callbacks, so
  // the loop must run once more (as it does when its owner drains it before uv_loop_close).
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Listen on an IPv4 or IPv6 literal ("127.0.0.1", "::1", "[::1]"); port 0 picks a free
  // one (see port()). Fails when already started or when the address cannot be bound.
  core::Status start(std::string_view address, uint16_t port);
  // The bound port once started, else 0.
  uint16_t port() const { return port_; }
  bool running() const { return listener_ != nullptr; }
  // Close the listener and every connection. Answers the backend gives later for requests
  // of those connections are dropped. Idempotent; start() may be called again afterwards.
  void stop();

  // Open (not closing) connections.
  size_t connections() const { return conns_.size(); }

  struct Listener;
  struct Connection;

 private:
  friend struct Listener;
  friend struct Connection;
  static void on_connection(uv_stream_t* server, int status);
  void forget(Connection* c) { conns_.erase(c); }

  uv_loop_t* loop_;
  AdminBackend& backend_;
  AdminLimits limits_;
  Listener* listener_ = nullptr;
  uint16_t port_ = 0;
  std::unordered_set<Connection*> conns_;
  // One reload at a time through the admin API: a second POST /reload while one runs gets
  // 409 (two concurrent reloads must never race; STYLE.md, Kamailio #1874).
  bool reload_in_flight_ = false;
  // Backend answers hold a weak reference: after this object is gone they do nothing.
  std::shared_ptr<AdminServer*> self_;
};

}  // namespace sb::app
