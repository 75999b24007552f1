#include "transport/dns_cares.h"

#include <arpa/nameser.h>

#include <mutex>

#include "core/log.h"

namespace sb::transport::dns {

struct CaresChannel::Poll {
  uv_poll_t handle;
  CaresChannel* owner;
  ares_socket_t fd;
};

namespace {

struct PendingQuery {
  Type type;
  std::function<void(Answer)> done;
};

void free_handle(uv_handle_t* h) { delete static_cast<uv_timer_t*>(static_cast<void*>(h)); }

}  // namespace

// Stops watching `p`'s socket; its memory goes in the close callback (STYLE.md 9).
void CaresChannel::close_poll(Poll* p) {
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle),
           [](uv_handle_t* h) { delete static_cast<Poll*>(h->data); });
}

std::unique_ptr<CaresChannel> CaresChannel::create(uv_loop_t* loop, const ChannelSettings& settings,
                                                   std::string& error) {
  static std::once_flag once;
  static int init_status = ARES_SUCCESS;
  std::call_once(once, [] { init_status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (init_status != ARES_SUCCESS) {
    error = std::string("c-ares: ") + ares_strerror(init_status);
    return nullptr;
  }
  std::unique_ptr<CaresChannel> c(new CaresChannel(loop));
  ares_options opts{};
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  opts.sock_state_cb = &CaresChannel::on_sock_state;
  opts.sock_state_cb_data = c.get();
  opts.timeout = settings.timeout_ms;
  opts.tries = settings.tries;
  int st = ares_init_options(&c->channel_, &opts, mask);
  if (st != ARES_SUCCESS) {
    error = std::string("c-ares: ") + ares_strerror(st);
    c->channel_ = nullptr;
    return nullptr;
  }
  if (!settings.servers.empty()) {
    st = ares_set_servers_ports_csv(c->channel_, settings.servers.c_str());
    if (st != ARES_SUCCESS) {
      error = "c-ares: DNS servers \"" + settings.servers + "\": " + ares_strerror(st);
      ares_destroy(c->channel_);
      c->channel_ = nullptr;
      return nullptr;
    }
  }
  c->timer_ = new uv_timer_t;
  uv_timer_init(loop, c->timer_);
  c->timer_->data = c.get();
  return c;
}

CaresChannel::~CaresChannel() {
  // A worker closes the channel from on_stop, while its loop runs. Without that (a start
  // that failed half-way), close now: the handles' memory is freed if the loop runs again.
  close();
}

void CaresChannel::close() {
  if (closed_) return;
  closed_ = true;
  if (channel_) {
    // Pending queries get ARES_EDESTRUCTION (dropped in on_answer); open sockets are
    // reported closed through on_sock_state, which closes their polls.
    ares_destroy(channel_);
    channel_ = nullptr;
  }
  for (auto& [fd, p] : polls_) close_poll(p);
  polls_.clear();
  if (timer_) {
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), free_handle);
    timer_ = nullptr;
  }
}

void CaresChannel::query(const std::string& name, Type type, std::function<void(Answer)> done) {
  if (closed_ || !channel_) {
    Answer a;
    a.error = "the resolver is stopped";
    done(std::move(a));
    return;
  }
  auto* q = new PendingQuery{type, std::move(done)};
  // May call on_answer before returning (e.g. a name c-ares refuses at once).
  ares_query(channel_, name.c_str(), ns_c_in, static_cast<int>(type), &CaresChannel::on_answer, q);
  rearm();
}

void CaresChannel::on_answer(void* arg, int status, int, unsigned char* abuf, int alen) {
  std::unique_ptr<PendingQuery> q(static_cast<PendingQuery*>(arg));
  if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) return;  // stopping
  Answer a;
  if (abuf && alen > 0) {
    // Also for ENOTFOUND / ENODATA / ESERVFAIL: the rcode and records are in the answer.
    a = parse_answer(abuf, static_cast<size_t>(alen), q->type);
  } else if (status == ARES_ENOTFOUND) {
    a.status = Status::NoSuchName;
  } else if (status == ARES_ENODATA) {
    a.status = Status::Ok;
  } else {
    a.status = Status::Failed;
    a.timed_out = status == ARES_ETIMEOUT;
    a.error = a.timed_out ? "timeout" : ares_strerror(status);
  }
  q->done(std::move(a));
}

void CaresChannel::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<CaresChannel*>(data);
  auto it = self->polls_.find(fd);
  if (!readable && !writable) {
    // c-ares closes the socket right after this: stop watching it now.
    if (it == self->polls_.end()) return;
    Poll* p = it->second;
    self->polls_.erase(it);
    close_poll(p);
    return;
  }
  if (self->closed_) return;
  Poll* p;
  if (it == self->polls_.end()) {
    p = new Poll{{}, self, fd};
    if (int err = uv_poll_init_socket(self->loop_, &p->handle, fd)) {
      SB_LOG_RL(Error, {}, "dns: cannot watch a c-ares socket: %s", uv_strerror(err));
      delete p;
      return;
    }
    p->handle.data = p;
    self->polls_.emplace(fd, p);
  } else {
    p = it->second;
  }
  int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
  uv_poll_start(&p->handle, events, &CaresChannel::on_poll);
}

void CaresChannel::on_poll(uv_poll_t* h, int status, int events) {
  auto* p = static_cast<Poll*>(h->data);
  CaresChannel* self = p->owner;
  if (self->closed_) return;
  ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;
  // An error on the socket: let c-ares read it and notice.
  if (status < 0 || (events & UV_READABLE)) rfd = p->fd;
  if (status == 0 && (events & UV_WRITABLE)) wfd = p->fd;
  ares_process_fd(self->channel_, rfd, wfd);  // `p` may be gone after this
  self->processed();
}

void CaresChannel::on_timer(uv_timer_t* t) {
  auto* self = static_cast<CaresChannel*>(t->data);
  if (self->closed_) return;
  ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  self->processed();
}

void CaresChannel::processed() {
  if (closed_) return;
  rearm();
  if (after_process_) after_process_();
}

void CaresChannel::rearm() {
  if (closed_ || !timer_) return;
  timeval tv{};
  if (!ares_timeout(channel_, nullptr, &tv)) {
    uv_timer_stop(timer_);
    return;
  }
  uint64_t ms = static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec + 999) / 1000;
  uv_timer_start(timer_, &CaresChannel::on_timer, ms, 0);
}

}  // namespace sb::transport::dns
