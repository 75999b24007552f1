// Shared-nothing workers (DESIGN.md "Threading"): N threads, each with its own libuv loop,
// its own UDP sockets on every UDP listener (SO_REUSEPORT), its own listening TCP sockets,
// the connections it accepted or opened, and a bounded lock-free queue + uv_async_t for
// work other threads hand it. The transport frames, delivers and sends bytes; transaction
// and proxy logic live above it, in the MessageHandler each worker is given.
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/address.h"
#include "core/message.h"
#include "core/result.h"
#include "transport/listener.h"
#include "transport/source_limits.h"

namespace sb::transport {

// One message for its owner worker. The views are valid only during on_message.
struct Inbound {
  std::string_view bytes;  // one framed message: a datagram or one stream frame
  core::Peer from;         // protocol, source endpoint, connection (streams)
  // Index into listeners() it arrived on (-1: unknown). Indexes are stable: an update of
  // the listeners never renumbers them (see WorkerGroup::update_listeners), so an index
  // carried by a message in flight, or by a connection accepted before its listener was
  // removed, still names the same protocol and address (that slot may be closed now).
  int listener = -1;
  // Set when the message parsed: the receiving worker parses it, and a hand-off carries that
  // parse to the owner, rebased onto the hand-off's copy of the bytes (an unparsed message
  // is never handed off). nullptr: parsing failed (the handler parses `bytes` itself to get
  // the error and answers 400 when the Via is usable, DESIGN.md "Security") or framing
  // failed (has_frame_error).
  const core::Message* parsed = nullptr;
  // Framing failed: 513 (too large) or 400 (bad Content-Length on a stream). `bytes` is what
  // was read (at least the header block when there was one), to answer from. Always
  // delivered on the receiving worker. A stream is closed after this callback, once what
  // is queued on it (e.g. the error response sent from this callback) has been written.
  core::Error frame_error{};
  bool has_frame_error = false;
  // The worker that read it from the socket (differs from the handler's worker after a
  // hand-off).
  uint32_t received_by = 0;
};

// Counters of one worker; read from any thread (each is a relaxed atomic inside).
struct WorkerStats {
  uint64_t datagrams_in = 0;        // UDP datagrams received
  uint64_t frames_in = 0;           // messages framed on streams
  uint64_t bytes_in = 0;            // UDP + stream bytes read
  uint64_t bytes_out = 0;           // bytes handed to the kernel
  uint64_t messages_out = 0;        // send() calls accepted (written or queued)
  uint64_t delivered = 0;           // messages given to this worker's handler
  uint64_t handoff_out = 0;         // messages passed to their owner worker
  uint64_t handoff_in = 0;          // messages received from another worker
  uint64_t handoff_dropped = 0;     // hand-offs this worker could not queue (owner full)
  uint64_t queue_full = 0;          // posts to this worker refused: its queue was full
  uint64_t parse_failures = 0;      // messages that did not parse (delivered unparsed)
  uint64_t frame_errors = 0;        // oversize datagrams, stream framing errors
  uint64_t keepalives = 0;          // CRLF keep-alives: pings answered, pongs, UDP CRLFs
  uint64_t send_errors = 0;         // sends that failed, at once or later
  uint64_t dropped_no_handler = 0;  // messages that arrived before set_handler()
  uint64_t connections_open = 0;    // gauge: stream connections this worker holds
  uint64_t connections_accepted = 0;
  uint64_t connections_opened = 0;  // outgoing connects started
  uint64_t connections_refused = 0; // accepts/connects beyond max_connections
  uint64_t connect_failures = 0;    // refused, unreachable or timed out
  uint64_t idle_closed = 0;         // connections closed by the idle timeout
  uint64_t tls_handshakes_ok = 0;
  uint64_t tls_handshakes_failed = 0;    // refused certificates, bad records, timeouts
  uint64_t tls_handshake_timeouts = 0;   // of which: not done in tls_handshake_timeout_ms
  uint64_t queue_depth = 0;         // gauge: hand-offs and tasks waiting in this worker's queue
  // Flood protection (config "security", transport/source_limits.h): messages dropped before
  // parsing, and accepted connections closed at once.
  uint64_t rate_limited = 0;        // over the source's rate
  uint64_t blocked = 0;             // from a source blocked for sustained excess
  uint64_t sources_blocked = 0;     // times a source became blocked
  uint64_t connections_per_source = 0;  // beyond security.max_connections_per_source

  WorkerStats& operator+=(const WorkerStats& o);
};

class Worker;
class TlsContext;

// The layer above the transport, one instance per worker, called on that worker's thread.
class MessageHandler {
 public:
  virtual ~MessageHandler() = default;
  virtual void on_message(Worker& w, Inbound& in) = 0;
  // An accepted send() failed later: connect refused / timed out, write error, connection
  // closed with the message still queued. Called on the worker that called send().
  virtual void on_send_error(Worker& w, uint64_t cookie, const core::Peer& to) = 0;
  // A stream connection this worker owned has closed (EOF, error, idle timeout); not
  // called during stop. RFC 5626 §4.4 flow failure detection hooks in here.
  virtual void on_connection_closed(Worker&, const core::Peer&) {}
  // The group is stopping: close every libuv handle you created on this worker's loop
  // (the loop runs until their close callbacks ran). No more messages follow.
  virtual void on_stop(Worker&) {}
};

// A worker as the layers above see it. Every method except post()/post_to() is for the
// worker's own thread only. An interface, so the proxy can be tested with an in-memory
// transport (DESIGN.md "Tests").
class Worker {
 public:
  virtual ~Worker() = default;
  virtual uint32_t id() const = 0;
  // Number of workers in the group.
  virtual uint32_t workers() const = 0;
  virtual uv_loop_t* loop() = 0;
  virtual void set_handler(MessageHandler* handler) = 0;

  // Sends one message (returns false on an immediate failure; later failures call
  // handler->on_send_error(cookie, to) on this worker).
  // UDP: from this worker's socket on `via_listener`, or the first UDP listener of the
  // destination's family when -1; with `from_reply_port`, from this worker's reply socket
  // of that listener instead (reply_port(); not when the listener is symmetric or `to` is a
  // flow): a request whose Via names that port gets its responses on this worker. Streams: over `to.connection` when set (handed to the
  // owning worker when another worker owns it); if that connection has closed, or none is
  // set, over an open connection to `to.endpoint`, else a new one (connected
  // asynchronously, the bytes queued until then). TLS like TCP, over a TLS connection
  // (verifying the server's certificate: tls.h tls_peer_name); false without a TLS
  // context (WorkerGroup::set_tls). WS is not implemented yet: false.
  virtual bool send(const core::Peer& to, std::string_view bytes, uint64_t cookie,
                    int via_listener = -1, bool from_reply_port = false) = 0;
  // This worker's reply port on UDP listener `listener` (ListenerSpec::reply_ports), 0 when
  // it has none.
  uint16_t reply_port(int listener) const {
    const auto& ls = listeners();
    return listener >= 0 && static_cast<size_t>(listener) < ls.size() ? ls[static_cast<size_t>(listener)].reply_port(id())
                                                                      : 0;
  }
  // This worker's thread. Gives `in` (a message this worker read) to worker
  // `worker` as if that one had read it (Inbound::received_by stays), e.g. a CANCEL whose
  // INVITE is not here. `in.parsed` must be set: the parse goes with it. False when that
  // worker's queue is full (or the message is not parsed).
  virtual bool hand_off(uint32_t worker, const Inbound& in) = 0;
  // Thread-safe: run `fn` on this worker's thread. False when its bounded queue is full
  // (counted in queue_full) or the worker is stopping.
  virtual bool post(std::function<void(Worker&)> fn) = 0;
  // Thread-safe: run `fn` on worker `worker` of the same group.
  virtual bool post_to(uint32_t worker, std::function<void(Worker&)> fn) = 0;

  // The listeners, with ports chosen by the kernel filled in; indexed as Inbound::listener.
  // Includes the slots of listeners removed by an update (closed = true). This worker's
  // copy: it changes only between tasks on this worker's thread, so a reference stays valid
  // for the duration of a callback.
  virtual const std::vector<ListenerSpec>& listeners() const = 0;
  virtual WorkerStats stats() const = 0;
  // Flood protection for this worker (config "security"): trusted networks, rate limits per
  // source IP, connections per source. This worker's thread only; applies from the next
  // message. The default (for in-memory test transports) ignores it.
  virtual void set_source_limits(const SourceLimitSettings& s) { (void)s; }
};

namespace detail {
class UvWorker;
struct GroupState;
}  // namespace detail

// The workers, owned by the application's main thread.
class WorkerGroup {
 public:
  WorkerGroup();
  ~WorkerGroup();  // stop()s
  WorkerGroup(const WorkerGroup&) = delete;
  WorkerGroup& operator=(const WorkerGroup&) = delete;

  // Binds every listener on every worker (UDP with recvmmsg, TCP listening, both with
  // SO_REUSEPORT; IPv6 with IPV6_V6ONLY), then starts the threads. `on_worker_start` runs
  // on each worker's thread before its loop runs: create the per-worker objects there and
  // call set_handler. Returns once every worker ran it. On failure nothing is left running
  // and error_detail() says what failed (address, errno text).
  core::Status start(std::vector<ListenerSpec> listeners, uint32_t workers, Limits limits,
                     std::function<void(Worker&)> on_worker_start);
  // Closes every handle on every worker (handlers get on_stop first), waits for the close
  // callbacks and joins the threads. Idempotent. Not from a worker thread (it joins them).
  // Work still queued for a worker is dropped without running.
  void stop();

  // Live reload of the listeners (DESIGN.md "Configuration and live reload"). Main thread
  // only, never from a worker thread, never concurrently with start()/stop(). Identity is
  // protocol + bind address (ListenerSpec::same_socket); for a listener kept, only
  // advertise_host is updated.
  // - Listeners in `next` that are not open are bound on every worker, worker 0 first (a
  //   port-0 listener gets its port there and the others bind the same one), SO_REUSEPORT
  //   as at start, after the same "nothing else holds this address" probe as start().
  // - Open listeners not in `next` are then closed on every worker: a UDP socket closes; a
  //   TCP listening socket closes (new connects are refused) while the connections already
  //   accepted on it stay open and keep working until they end or idle out (drain).
  // All or nothing: when a new listener cannot be bound on some worker, what was opened is
  // closed again, the running set is unchanged, and the error (address, errno text) is
  // returned and kept in error_detail(). New listeners are opened before old ones close, so
  // replacing an address with an overlapping one (0.0.0.0 -> 127.0.0.1, same port) fails.
  // Indexes are stable: a removed listener keeps its slot in listeners() with closed = true;
  // a new one takes back the closed slot with the same identity, else is appended.
  // Each worker's part runs on its own thread (its queue); this thread blocks until they
  // are done — socket calls only, so briefly — but never longer than a few seconds per step:
  // a worker that does not answer in time fails the update (its part still runs later, and
  // the roll-back queued behind it undoes it).
  core::Status update_listeners(std::vector<ListenerSpec> next);
  // The TLS context for connections accepted on TLS listeners and opened to TLS peers from
  // now on (before start(): the one they start with). Established connections keep the
  // context they began with. Main thread only; null = no TLS.
  void set_tls(std::shared_ptr<const TlsContext> tls);
  const std::shared_ptr<const TlsContext>& tls() const { return tls_; }

  Worker& worker(uint32_t i);
  uint32_t size() const;
  bool running() const { return !threads_.empty(); }
  // The main thread's view (see update_listeners for closed slots).
  const std::vector<ListenerSpec>& listeners() const;
  // Summed over the workers.
  WorkerStats stats() const;
  const std::string& error_detail() const { return error_detail_; }

 private:
  std::unique_ptr<detail::GroupState> state_;
  std::vector<std::unique_ptr<detail::UvWorker>> workers_;
  std::vector<std::thread> threads_;
  std::string error_detail_;
  std::shared_ptr<const TlsContext> tls_;
};

}  // namespace sb::transport
