#include "transport/worker.h"

#include <cassert>
#include <latch>

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
  queue_depth += o.queue_depth;
  return *this;
}

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
