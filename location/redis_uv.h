// hiredis's async API on a libuv loop: what <hiredis/adapters/libuv.h> does, with one fix.
// Debian 12's adapter (hiredis 0.14) drops a poll error (status != 0): libuv reports POLLERR
// (a reset connection, e.g. one Redis had not accepted yet when it died) once and stops the
// poll, so the connection hangs silently, neither up nor lost. Here an error is handed to
// hiredis as a read, which fails and disconnects the context the usual way.
#pragma once
#include <hiredis/async.h>
#include <uv.h>

#include <cstdlib>

namespace sb::location {

struct RedisUvEvents {
  redisAsyncContext* context = nullptr;
  uv_poll_t handle{};
  int events = 0;
};

inline void redis_uv_poll(uv_poll_t* handle, int status, int events) {
  auto* p = static_cast<RedisUvEvents*>(handle->data);
  if (status != 0) {
    if (p->context) redisAsyncHandleRead(p->context);  // the read fails: hiredis disconnects
    return;
  }
  if (p->context && (events & UV_READABLE)) redisAsyncHandleRead(p->context);
  if (p->context && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->context);
}

inline void redis_uv_set(void* privdata, int add, int remove) {
  auto* p = static_cast<RedisUvEvents*>(privdata);
  p->events = (p->events | add) & ~remove;
  if (p->events) uv_poll_start(&p->handle, p->events, redis_uv_poll);
  else uv_poll_stop(&p->handle);
}

// The handle's memory goes only in its close callback (libuv may still touch it until then).
inline void redis_uv_cleanup(void* privdata) {
  auto* p = static_cast<RedisUvEvents*>(privdata);
  p->context = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle),
           [](uv_handle_t* h) { delete static_cast<RedisUvEvents*>(h->data); });
}

// Attaches `ac` to `loop`; false when it cannot be (the caller frees `ac`).
inline bool redis_uv_attach(redisAsyncContext* ac, uv_loop_t* loop) {
  if (ac->ev.data) return false;
  auto* p = new RedisUvEvents;
  if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
    delete p;
    return false;
  }
  p->handle.data = p;
  p->context = ac;
  ac->ev.addRead = [](void* d) { redis_uv_set(d, UV_READABLE, 0); };
  ac->ev.delRead = [](void* d) { redis_uv_set(d, 0, UV_READABLE); };
  ac->ev.addWrite = [](void* d) { redis_uv_set(d, UV_WRITABLE, 0); };
  ac->ev.delWrite = [](void* d) { redis_uv_set(d, 0, UV_WRITABLE); };
  ac->ev.cleanup = redis_uv_cleanup;
  ac->ev.data = p;
  return true;
}

}  // namespace sb::location
