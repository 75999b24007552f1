// The libuv implementation of Worker. Private to transport/.
#pragma once
#include <uv.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <latch>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/framing.h"
#include "core/message.h"
#include "transport/bounded_queue.h"
#include "transport/stream_directory.h"
#include "transport/tls.h"
#include "transport/worker.h"

namespace sb::transport::detail {

class Connection;
class TcpServer;
class UdpSocket;
class UvWorker;

// What the workers of one group share; immutable while the threads run, except
// `listeners`, which is the main thread's view (each worker keeps its own copy).
struct GroupState {
  std::vector<ListenerSpec> listeners;
  Limits limits;
  std::vector<UvWorker*> workers;
  // Kept here, not on start()'s stack: a worker may still be inside count_down() when
  // start() returns.
  std::function<void(Worker&)> on_start;
  std::unique_ptr<std::latch> started;
  // Which worker holds the stream connection to a peer (stream_directory.h).
  StreamDirectory streams;
  // The TLS context the workers start with (later ones reach them via UvWorker::set_tls).
  std::shared_ptr<const TlsContext> tls;
};

// Work handed to a worker by another thread (or by itself, via post()).
class Task {
 public:
  virtual ~Task() = default;
  virtual void run(UvWorker& w) = 0;
};

// A Task followed, in the same allocation, by a copy of some bytes: one allocation per
// hand-off (DESIGN.md: "copy bytes + Peer + listener into a heap buffer").
template <class Derived>
class BytesTask : public Task {
 public:
  template <class... A>
  static std::unique_ptr<Derived> make(std::string_view bytes, A&&... args) {
    void* mem = ::operator new(sizeof(Derived) + bytes.size());
    auto* t = new (mem) Derived(std::forward<A>(args)...);
    t->len_ = bytes.size();
    if (!bytes.empty()) std::memcpy(t->tail(), bytes.data(), bytes.size());
    return std::unique_ptr<Derived>(t);
  }
  // Found by the deleting destructor of Derived: frees the whole block, bytes included.
  static void operator delete(void* p) { ::operator delete(p); }

 protected:
  std::string_view bytes() { return {tail(), len_}; }

 private:
  char* tail() { return reinterpret_cast<char*>(static_cast<Derived*>(this) + 1); }
  size_t len_ = 0;
};

// The counters behind WorkerStats. Most have one writer (the worker thread) and are bumped
// with a relaxed load + store, no locked instruction; queue_full is bumped by posters.
struct Counters {
  std::atomic<uint64_t> datagrams_in{0}, frames_in{0}, bytes_in{0}, bytes_out{0},
      messages_out{0}, delivered{0}, handoff_out{0}, handoff_in{0}, handoff_dropped{0},
      queue_full{0}, parse_failures{0}, frame_errors{0}, keepalives{0}, send_errors{0},
      dropped_no_handler{0}, connections_open{0}, connections_accepted{0},
      connections_opened{0}, connections_refused{0}, connect_failures{0}, idle_closed{0},
      rate_limited{0}, blocked{0}, sources_blocked{0}, connections_per_source{0},
      tls_handshakes_ok{0}, tls_handshakes_failed{0}, tls_handshake_timeouts{0};
};
inline void bump(std::atomic<uint64_t>& c, uint64_t n = 1) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void drop(std::atomic<uint64_t>& c) {
  c.store(c.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

class UvWorker final : public Worker {
 public:
  UvWorker(uint32_t id, GroupState& group);
  ~UvWorker() override;

  // Worker
  uint32_t id() const override { return id_; }
  uint32_t workers() const override { return static_cast<uint32_t>(group_.workers.size()); }
  uv_loop_t* loop() override { return &loop_; }
  void set_handler(MessageHandler* handler) override { handler_ = handler; }
  bool send(const core::Peer& to, std::string_view bytes, uint64_t cookie, int via_listener,
            bool from_reply_port) override;
  bool hand_off(uint32_t worker, const Inbound& in) override;
  bool post(std::function<void(Worker&)> fn) override;
  bool post_to(uint32_t worker, std::function<void(Worker&)> fn) override;
  const std::vector<ListenerSpec>& listeners() const override { return listeners_; }
  WorkerStats stats() const override;
  void set_source_limits(const SourceLimitSettings& s) override;

  // Lifecycle, driven by WorkerGroup.
  // On the main thread before the worker's thread exists: loop, queue, sockets. Listener
  // ports that are 0 are replaced in the group's list by the ones the kernel chose.
  core::Status open(std::string& detail);
  // Listener updates (WorkerGroup::update_listeners), on this worker's thread.
  // Adopt the group's new slot table (same slots, possibly more; sockets unchanged).
  void set_listener_table(std::vector<ListenerSpec> table);
  // Bind the listeners in `slots` (ports already resolved unless this is worker 0, which
  // fills them in its table); on failure close those opened here and return the detail.
  std::string open_listeners(const std::vector<size_t>& slots);
  // Close the sockets of `slots` and mark them closed; accepted connections stay.
  void close_listeners(const std::vector<size_t>& slots);

  // On the worker's thread: the group's on_start, then the loop until stop.
  void run();
  // On the main thread when run() never ran: close what open() made, finish the loop.
  void close_unstarted();
  // Any thread.
  void request_stop();
  // Any thread: queue a task; false when full or stopping.
  bool push(std::unique_ptr<Task> task);

  // For the socket classes and tasks, on this worker's thread.
  const Limits& limits() const { return group_.limits; }
  Counters& counters() { return c_; }
  bool stopping() const { return stopping_; }
  uv_buf_t udp_buffer() { return uv_buf_init(udp_buf_.get(), kUdpBufferSize); }
  uv_buf_t stream_buffer() { return uv_buf_init(stream_buf_.get(), kStreamBufferSize); }
  // Where a TLS connection decrypts one read before framing it; one per worker, like
  // stream_buffer() (the reader copies only an incomplete tail out of it).
  std::string& tls_plain_buffer() { return tls_plain_; }
  // On this worker's thread: the context for new TLS connections (WorkerGroup::set_tls).
  void set_tls(std::shared_ptr<const TlsContext> tls) { tls_ = std::move(tls); }
  void on_datagram(const UdpSocket& s, ssize_t nread, const uv_buf_t* buf, const sockaddr* addr,
                   unsigned flags);
  void on_incoming(TcpServer& s);
  // One frame read on `c`; false stops reading it (closed or closing).
  bool on_stream_frame(Connection& c, const core::Frame& f, std::string_view bytes);
  // `c` is closing: forget it (it is freed after its close callbacks).
  void unregister(Connection& c);
  // An accepted send failed: tell the handler of the worker that sent it.
  void report_send_error(uint32_t origin, uint64_t cookie, const core::Peer& to);
  void notify_send_error(uint64_t cookie, const core::Peer& to);
  void notify_connection_closed(const core::Peer& peer);
  // send() on behalf of worker `origin` (origin == id() for our own sends).
  bool send_from(uint32_t origin, const core::Peer& to, std::string_view bytes, uint64_t cookie,
                 int via_listener, bool from_reply_port = false);
  // `parsed`: the reader's parse, rebased onto `bytes`.
  void receive_handed_off(std::string_view bytes, const core::Peer& from, int listener,
                          uint32_t received_by, const core::Message& parsed);

 private:
  // recvmmsg reads into 64 KiB slots (libuv's UV__UDP_DGRAM_MAXSIZE), up to 20 per call.
  static constexpr size_t kUdpBufferSize = 20 * 64 * 1024;
  static constexpr size_t kStreamBufferSize = 64 * 1024;


  static void on_async(uv_async_t* h);
  void drain_inbox();
  void shut_down();  // on the loop thread: close everything
  void close_inbox();
  bool on_thread() const;
  // Binds listener slot `i` on this worker (sockets only; the port-0 port is written back
  // into listeners_[i]).
  core::Status open_listener(size_t i, std::string& detail);

  // Flood protection before parsing: anything but Pass = drop it (counted).
  SourceLimits::Verdict admit(const core::Endpoint& from);
  // The receiving side: parse, then deliver here or hand to the owner.
  void receive(std::string_view bytes, const core::Peer& from, int listener);
  void deliver(Inbound& in);
  void note_alias(const core::Peer& from);
  void deliver_frame_error(std::string_view bytes, const core::Peer& from, int listener,
                           const core::Error& e);

  bool send_udp(uint32_t origin, const core::Peer& to, std::string_view bytes, uint64_t cookie,
                int via_listener, bool from_reply_port);
  bool send_stream(uint32_t origin, const core::Peer& to, std::string_view bytes,
                   uint64_t cookie, int via_listener);
  UdpSocket* pick_udp(int via_listener, const core::Endpoint& to) const;
  int pick_stream_listener(core::Protocol protocol, int via_listener, const core::Endpoint& to) const;
  void add_connection(Connection* c);
  // Connection `id` of this worker is the way to `remote` over `protocol`: for this worker
  // (by_endpoint_) and for the group (stream_directory.h). forget_stream undoes it when `id`
  // still holds the entry.
  void remember_stream(core::Protocol protocol, const core::Endpoint& remote, uint32_t id);
  void forget_stream(core::Protocol protocol, const core::Endpoint& remote, uint32_t id);
  uint32_t next_connection_id();

  const uint32_t id_;
  GroupState& group_;
  char name_[16] = {};
  MessageHandler* handler_ = nullptr;
  std::thread::id thread_;

  uv_loop_t loop_{};
  uv_async_t async_{};
  bool loop_open_ = false;
  bool async_open_ = false;
  bool stopping_ = false;

  BoundedQueue<std::unique_ptr<Task>> inbox_;
  // post()/push() vs. closing the async handle: a poster registers in posters_ and then
  // checks accepting_; the closer clears accepting_ and then waits for posters_ to drain.
  // Both sides seq_cst, so a poster that saw accepting_ is waited for.
  std::atomic<uint32_t> posters_{0};
  std::atomic<bool> accepting_{true};
  std::atomic<bool> stop_requested_{false};

  std::unique_ptr<char[]> udp_buf_;
  std::unique_ptr<char[]> stream_buf_;
  std::string tls_plain_;
  std::shared_ptr<const TlsContext> tls_;
  std::vector<ListenerSpec> listeners_;  // this worker's copy of the slot table
  std::vector<UdpSocket*> udp_;         // per listener; nullptr for stream / closed listeners
  std::vector<UdpSocket*> reply_udp_;   // per listener: this worker's reply socket, or nullptr
  std::vector<TcpServer*> servers_;     // per listener; nullptr for UDP listeners
  std::unordered_map<uint32_t, Connection*> connections_;
  std::unordered_map<StreamKey, uint32_t, StreamKeyHash> by_endpoint_;
  std::unordered_map<uint32_t, core::Endpoint> aliases_;  // connection id → its RFC 5923 alias
  uint32_t last_connection_id_ = 0;

  core::Message msg_;  // reused: its header vector keeps its capacity
  SourceLimits sources_{SourceLimitSettings{}};  // config "security"; this thread only
  Counters c_;
};

}  // namespace sb::transport::detail
