// A c-ares channel on a worker's libuv loop: c-ares' sockets are watched with uv_poll
// handles, its timeouts run on a uv timer, so no query ever blocks the worker. The handles
// are freed only in their close callbacks (STYLE.md 9). Private to transport/.
#pragma once
#include <ares.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "transport/dns_message.h"

namespace sb::transport::dns {

struct ChannelSettings {
  std::string servers;  // "ip:port,[v6]:port" (ares_set_servers_ports_csv); "" = resolv.conf
  int timeout_ms = 2000;
  int tries = 2;
};

class CaresChannel final : public Querier {
 public:
  // nullptr and `error` set when c-ares cannot start (bad servers, no memory).
  static std::unique_ptr<CaresChannel> create(uv_loop_t* loop, const ChannelSettings& settings,
                                              std::string& error);
  ~CaresChannel() override;
  CaresChannel(const CaresChannel&) = delete;
  CaresChannel& operator=(const CaresChannel&) = delete;

  void query(const std::string& name, Type type, std::function<void(Answer)> done) override;
  // Runs after c-ares processed socket events or timeouts (answers may have been delivered).
  void set_after_process(std::function<void()> hook) { after_process_ = std::move(hook); }
  // Cancels what is pending (callbacks dropped) and closes the handles. Idempotent; on the
  // loop's thread, while the loop still runs (a worker's on_stop).
  void close();
  bool closed() const { return closed_; }

 private:
  struct Poll;
  CaresChannel(uv_loop_t* loop) : loop_(loop) {}
  static void close_poll(Poll* p);
  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_poll(uv_poll_t* h, int status, int events);
  static void on_timer(uv_timer_t* t);
  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  void rearm();
  void processed();

  uv_loop_t* loop_;
  ares_channel channel_ = nullptr;
  uv_timer_t* timer_ = nullptr;  // heap: freed in its close callback
  std::unordered_map<ares_socket_t, Poll*> polls_;
  std::function<void()> after_process_;
  bool closed_ = false;
};

}  // namespace sb::transport::dns
