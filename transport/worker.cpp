#include "transport/worker.h"

#include <cassert>
#include <chrono>
#include <condition_variable>
#include <latch>
#include <mutex>

#include "core/log.h"
#include "transport/uv_worker.h"

namespace sb::transport {

WorkerStats& WorkerStats::operator+=(const WorkerStats& o) {
  datagrams_in += o.datagrams_in;
  frames_in += o.frames_in;
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
  messages_out += o.messages_out;
  delivered += o.delivered;
  handoff_out += o.handoff_out;
  handoff_in += o.handoff_in;
  handoff_dropped += o.handoff_dropped;
  queue_full += o.queue_full;
  parse_failures += o.parse_failures;
  frame_errors += o.frame_errors;
  keepalives += o.keepalives;
  send_errors += o.send_errors;
  dropped_no_handler += o.dropped_no_handler;
  connections_open += o.connections_open;
  connections_accepted += o.connections_accepted;
  connections_opened += o.connections_opened;
  connections_refused += o.connections_refused;
  connect_failures += o.connect_failures;
  idle_closed += o.idle_closed;
  tls_handshakes_ok += o.tls_handshakes_ok;
  tls_handshakes_failed += o.tls_handshakes_failed;
  tls_handshake_timeouts += o.tls_handshake_timeouts;
  queue_depth += o.queue_depth;
  rate_limited += o.rate_limited;
  blocked += o.blocked;
  sources_blocked += o.sources_blocked;
  connections_per_source += o.connections_per_source;
  return *this;
}

namespace {

// How long update_listeners waits for the workers at each step. Their part is a few socket
// calls; a worker that takes longer is stuck behind something else (a long task).
constexpr auto kUpdateStepWait = std::chrono::seconds(5);

// The results of one step run on several workers. Shared with the tasks, so a task that
// runs after the main thread gave up waiting still has somewhere to write.
struct StepState {
  std::mutex m;
  std::condition_variable cv;
  size_t left = 0;
  std::string error;  // the first failure
};

// Runs `fn` on each worker of `ids`, on its own thread, and waits (bounded) until all ran.
// `fn` returns "" or what failed. False and `detail` set on a failure or a timeout.
bool run_step(std::vector<std::unique_ptr<detail::UvWorker>>& workers, const std::vector<uint32_t>& ids,
              const std::function<std::string(detail::UvWorker&)>& fn, std::string& detail) {
  auto st = std::make_shared<StepState>();
  st->left = ids.size();
  auto deadline = std::chrono::steady_clock::now() + kUpdateStepWait;
  for (uint32_t id : ids) {
    auto task = [st, fn](Worker& w) {
      std::string err = fn(static_cast<detail::UvWorker&>(w));
      std::lock_guard lock(st->m);
      if (!err.empty() && st->error.empty()) st->error = std::move(err);
      --st->left;
      st->cv.notify_all();
    };
    // A full queue empties quickly; keep trying until the deadline.
    while (!workers[id]->post(task)) {
      if (std::chrono::steady_clock::now() >= deadline) {
        detail = "worker " + std::to_string(id) + ": queue full, listener update not delivered";
        std::lock_guard lock(st->m);
        st->left -= 1;  // never runs
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  std::unique_lock lock(st->m);
  if (!st->cv.wait_until(lock, deadline, [&] { return st->left == 0; })) {
    detail = "a worker did not complete the listener update within " +
             std::to_string(kUpdateStepWait.count()) + " s";
    return false;
  }
  if (!st->error.empty()) {
    detail = st->error;
    return false;
  }
  return true;
}

}  // namespace

WorkerGroup::WorkerGroup() = default;

WorkerGroup::~WorkerGroup() { stop(); }

core::Status WorkerGroup::start(std::vector<ListenerSpec> listeners, uint32_t workers,
                                Limits limits, std::function<void(Worker&)> on_worker_start) {
  error_detail_.clear();
  if (state_) {
    error_detail_ = "the worker group is already running";
    return core::Error{"already started", 500};
  }
  if (workers == 0) {
    error_detail_ = "workers must be at least 1";
    return core::Error{"no workers", 500};
  }
  for (const auto& l : listeners) {
    if (!l.bind.valid()) {
      error_detail_ = "a listener has no bind address";
      return core::Error{"listener without an address", 500};
    }
  }
  state_ = std::make_unique<detail::GroupState>();
  state_->listeners = std::move(listeners);
  state_->limits = limits;
  state_->tls = tls_;

  // Sockets are made on this thread, one worker after the other, before any thread runs: a
  // failure is reported here with nothing left running, and a port-0 listener gets its port
  // from worker 0 before the others bind it. (A loop has no thread affinity until it runs.)
  for (uint32_t i = 0; i < workers; ++i) {
    workers_.push_back(std::make_unique<detail::UvWorker>(i, *state_));
    state_->workers.push_back(workers_.back().get());
    core::Status st = workers_.back()->open(error_detail_);
    if (!st) {
      SB_ERROR("transport start failed: %s", error_detail_.c_str());
      for (auto& w : workers_) w->close_unstarted();
      workers_.clear();
      state_.reset();
      return st;
    }
  }

  // Each worker's copy of the list gets every worker's reply port (written as they opened).
  for (auto& w : workers_) w->set_listener_table(state_->listeners);

  state_->on_start = std::move(on_worker_start);
  state_->started = std::make_unique<std::latch>(static_cast<std::ptrdiff_t>(workers));
  threads_.reserve(workers);
  for (auto& w : workers_) {
    detail::UvWorker* wp = w.get();
    threads_.emplace_back([wp] { wp->run(); });
  }
  state_->started->wait();
  return {};
}

void WorkerGroup::stop() {
  if (!state_) return;
  for (auto& w : workers_) w->request_stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  workers_.clear();
  state_.reset();
}

core::Status WorkerGroup::update_listeners(std::vector<ListenerSpec> next) {
  error_detail_.clear();
  if (!state_ || threads_.empty()) {
    error_detail_ = "the worker group is not running";
    return core::Error{"not running", 500};
  }
  for (const auto& l : next) {
    if (!l.bind.valid()) {
      error_detail_ = "a listener has no bind address";
      return core::Error{"listener without an address", 500};
    }
  }
  // The diff, by identity (protocol + bind address), over the stable slot table.
  std::vector<ListenerSpec> table = state_->listeners;
  std::vector<size_t> added, removed;
  std::vector<bool> wanted(table.size(), false);
  for (auto& spec : next) {
    spec.closed = false;
    size_t found = table.size();
    for (size_t i = 0; i < table.size(); ++i)
      if (table[i].same_socket(spec)) found = i;
    if (found < table.size() && wanted[found]) continue;  // listed twice: once is enough
    if (found < table.size() && !table[found].closed) {
      table[found].advertise_host = spec.advertise_host;  // kept; only this may change
    } else if (found < table.size()) {
      // Back on a closed slot: same identity, so indexes in flight still mean the same.
      table[found] = spec;
      table[found].closed = true;  // until bound
      added.push_back(found);
    } else {
      table.push_back(spec);
      table.back().closed = true;
      wanted.push_back(false);
      found = table.size() - 1;
      added.push_back(found);
    }
    wanted[found] = true;
  }
  for (size_t i = 0; i < state_->listeners.size(); ++i)
    if (!state_->listeners[i].closed && !wanted[i]) removed.push_back(i);
  std::vector<uint32_t> all(workers_.size()), others;
  for (uint32_t i = 0; i < all.size(); ++i) {
    all[i] = i;
    if (i != 0) others.push_back(i);
  }
  if (added.empty() && removed.empty()) {
    // Nothing to bind or close; advertise_host may still have changed.
    std::string ignored;
    run_step(workers_, all, [table](detail::UvWorker& w) {
      w.set_listener_table(table);
      return std::string();
    }, ignored);
    state_->listeners = std::move(table);
    return {};
  }

  auto fail = [&](std::string why) -> core::Status {
    // Roll back: close what any worker opened (queued behind its open step, so it also
    // undoes a step that timed out). The slots stay, closed, so indexes agree everywhere.
    for (size_t i : added) table[i].closed = true;
    std::string ignored;
    run_step(workers_, all, [added](detail::UvWorker& w) {
      w.close_listeners(added);
      return std::string();
    }, ignored);
    state_->listeners = table;
    error_detail_ = std::move(why);
    SB_ERROR("listener update failed: %s", error_detail_.c_str());
    return core::Error{"cannot open a new listener", 500};
  };

  std::string why;
  // 1. Every worker learns the new slots (closed for now) before any socket opens: a
  //    message read on a new socket may be handed to any worker with its index.
  if (!run_step(workers_, all, [table](detail::UvWorker& w) {
        w.set_listener_table(table);
        return std::string();
      }, why))
    return fail(why);
  // 2. Worker 0 binds first (the probe for another holder of the address, and the port the
  //    kernel picks for port 0), then the others bind what it bound. Each reports its reply
  //    ports ([slot][worker]; its own entry only).
  auto ports = std::make_shared<std::vector<uint16_t>>(added.size(), 0);
  auto reply = std::make_shared<std::vector<std::vector<uint16_t>>>(
      added.size(), std::vector<uint16_t>(workers_.size(), 0));
  auto note_reply_ports = [added, reply](detail::UvWorker& w) {
    for (size_t k = 0; k < added.size(); ++k) (*reply)[k][w.id()] = w.listeners()[added[k]].reply_port(w.id());
  };
  if (!run_step(workers_, {0}, [added, ports, note_reply_ports](detail::UvWorker& w) {
        std::string err = w.open_listeners(added);
        if (err.empty()) {
          for (size_t k = 0; k < added.size(); ++k) (*ports)[k] = w.listeners()[added[k]].bind.port();
          note_reply_ports(w);
        }
        return err;
      }, why))
    return fail(why);
  for (size_t k = 0; k < added.size(); ++k) table[added[k]].bind.set_port((*ports)[k]);
  // (The table differs from step 1's only in those ports.)
  if (!others.empty() && !run_step(workers_, others, [table, added, note_reply_ports](detail::UvWorker& w) {
        w.set_listener_table(table);
        std::string err = w.open_listeners(added);
        if (err.empty()) note_reply_ports(w);
        return err;
      }, why))
    return fail(why);
  for (size_t k = 0; k < added.size(); ++k) {
    table[added[k]].closed = false;
    table[added[k]].reply_ports = (*reply)[k];
  }
  // Every worker learns the others' reply ports (its own sockets are open already).
  if (!run_step(workers_, all, [table](detail::UvWorker& w) {
        w.set_listener_table(table);
        return std::string();
      }, why))
    return fail(why);
  // 3. Close the removed ones. Cannot fail; a worker slow to get there still does it.
  for (size_t i : removed) table[i].closed = true;
  if (!removed.empty() && !run_step(workers_, all, [removed](detail::UvWorker& w) {
        w.close_listeners(removed);
        return std::string();
      }, why))
    SB_WARN("listener update: %s; the removed listeners close when it gets there", why.c_str());
  // Every worker's table now matches this one (each closed its removed slots itself).
  state_->listeners = std::move(table);
  return {};
}

void WorkerGroup::set_tls(std::shared_ptr<const TlsContext> tls) {
  tls_ = std::move(tls);
  if (!state_) return;
  state_->tls = tls_;
  for (auto& w : workers_) {
    auto fn = [tls = tls_](Worker& wk) { static_cast<detail::UvWorker&>(wk).set_tls(tls); };
    // The new certificate must reach every worker; a full queue drains in moments (a worker
    // that is stopping never takes it: give up after a few seconds).
    int tries = 0;
    while (!w->post(fn) && ++tries < 5000) uv_sleep(1);
    if (tries == 5000) SB_ERROR("worker %u: TLS context not delivered (queue full or stopping)", w->id());
  }
}

Worker& WorkerGroup::worker(uint32_t i) {
  assert(i < workers_.size());
  return *workers_[i];
}

uint32_t WorkerGroup::size() const { return static_cast<uint32_t>(workers_.size()); }

const std::vector<ListenerSpec>& WorkerGroup::listeners() const {
  static const std::vector<ListenerSpec> kNone;
  return state_ ? state_->listeners : kNone;
}

WorkerStats WorkerGroup::stats() const {
  WorkerStats sum;
  for (const auto& w : workers_) sum += w->stats();
  return sum;
}

}  // namespace sb::transport
