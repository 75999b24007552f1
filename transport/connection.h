// One TCP or TLS connection, owned by the worker that accepted or opened it (DESIGN.md
// "Threading"). Frames what it reads (RFC 3261 §18.3), answers keep-alive pings
// (RFC 5626 §3.5.1), queues what is sent before the connect (and the TLS handshake)
// completes, and closes itself on EOF, error, idle or handshake timeout or a framing error.
// TLS runs over memory BIOs (transport/tls.h): bytes read are decrypted before framing,
// bytes sent are encrypted before the socket write. Private to transport/.
#pragma once
#include <uv.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/address.h"
#include "transport/stream_reader.h"
#include "transport/tls.h"
#include "transport/uv_handle.h"

namespace sb::transport::detail {

class UvWorker;

class Connection final : public HandleOwner {
 public:
  enum class State : uint8_t { Connecting, Open, Draining, Closed };

  // Accepts a pending connection on `server`; nullptr when that failed. With `tls`, the
  // connection is TLS (server side) and open once the handshake completed.
  static Connection* accept(UvWorker& w, uv_stream_t* server, uint32_t id, int listener,
                            std::shared_ptr<const TlsContext> tls = nullptr);
  // Starts connecting to `to` (from `local` when given, port 0); nullptr and `err` when it
  // could not even start. With `tls`: TLS client verifying the server as `peer_name`.
  static Connection* connect(UvWorker& w, const core::Endpoint& to, uint32_t id, int listener,
                             const core::Endpoint* local, int& err,
                             std::shared_ptr<const TlsContext> tls = nullptr,
                             std::string peer_name = {});

  // Writes (or queues while connecting). false on an immediate failure; a later failure is
  // reported to worker `origin` with `cookie`.
  bool send(std::string_view bytes, uint64_t cookie, uint32_t origin);
  // After a framing error the stream cannot be resynchronised (§18.3): stop reading, let
  // what is queued be written, then close.
  void drain_and_close();
  // Idempotent. `notify`: tell the handler (on_connection_closed) once it is gone.
  void close(bool notify);

  uint32_t id() const { return id_; }
  int listener() const { return listener_; }
  const core::Endpoint& remote() const { return remote_; }
  core::Protocol protocol() const { return tls_ ? core::Protocol::Tls : core::Protocol::Tcp; }
  // A TLS peer whose verified certificate proves `host` (RFC 5923 §5: it may be reached here).
  bool peer_proves(std::string_view host) const { return tls_ && tls_->peer_proves(host); }
  State state() const { return state_; }
  bool usable() const { return state_ == State::Connecting || state_ == State::Open; }
  core::Peer peer() const;

 private:
  Connection(UvWorker& w, uint32_t id, int listener);
  ~Connection() override;

  struct Pending {
    std::string bytes;
    uint64_t cookie;
    uint32_t origin;
  };
  struct WriteReq;

  bool init_handles();
  void start_reading();
  void arm_timer(uint64_t ms);
  void touch();
  // Raw bytes to the socket (ciphertext on a TLS connection).
  bool write(std::string_view bytes, uint64_t cookie, uint32_t origin, bool report);
  // A message on an open connection: encrypted first when TLS.
  bool send_open(std::string_view bytes, uint64_t cookie, uint32_t origin, bool report);
  bool on_frame(const core::Frame& f, std::string_view bytes);
  void send_pong();
  void on_data(std::string_view data);
  void on_connected(int status);
  void on_timer();
  void on_written(WriteReq& r, int status);
  // TLS: the transport is up; start the handshake (client) or wait for it (server).
  void start_tls();
  void on_tls_data(std::string_view cipher);
  // Writes what the TLS session produced (handshake records, alerts, encrypted data).
  bool flush_tls(uint64_t cookie, uint32_t origin, bool report);
  // The connection became usable (TCP connected, or the TLS handshake done): send the queue.
  void on_open();

  UvWorker& w_;
  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  uv_connect_t connect_req_{};
  uv_shutdown_t shutdown_req_{};
  const uint32_t id_;
  const int listener_;
  core::Endpoint remote_;
  State state_ = State::Connecting;
  bool notify_ = false;
  bool was_open_ = false;  // only a connection that was ever up is reported closed
  StreamReader reader_;
  std::vector<Pending> pending_;  // sent before the connect completed
  size_t pending_bytes_ = 0;
  uint64_t last_activity_ = 0;    // loop time (ms) of the last read or write
  std::unique_ptr<TlsSession> tls_;  // set for TLS connections
  bool tcp_up_ = false;              // TLS: the TCP connection is established
};

}  // namespace sb::transport::detail
