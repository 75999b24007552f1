// RAII over libuv handles (STYLE.md 9, as uvw's handle.hpp does it): an object that embeds
// libuv handles frees its memory only after libuv's close callback for every one of them
// has run. Freeing earlier is the classic libuv use-after-free: libuv keeps the handle in
// its queues until then, and pending write/connect/shutdown requests are completed with
// UV_ECANCELED just before the close callback, so their callbacks may still use the object.
// Private to transport/.
#pragma once
#include <uv.h>

#include <array>
#include <cassert>
#include <cstdint>

namespace sb::transport::detail {

class HandleOwner {
 public:
  HandleOwner(const HandleOwner&) = delete;
  HandleOwner& operator=(const HandleOwner&) = delete;

  // Closes every adopted handle and deletes this object from the last close callback (at
  // once when none was adopted). Idempotent. Callbacks already on the stack stay safe:
  // close callbacks only run in a later loop phase.
  void release() {
    if (released_) return;
    released_ = true;
    if (open_ == 0) {
      delete this;
      return;
    }
    for (uint8_t i = 0; i < count_; ++i)
      if (!uv_is_closing(handles_[i])) uv_close(handles_[i], &HandleOwner::on_closed);
  }
  bool released() const { return released_; }

  // The owner stored in a handle's data by adopt().
  template <class T>
  static T* from_handle(const void* handle) {
    return static_cast<T*>(static_cast<HandleOwner*>(static_cast<const uv_handle_t*>(handle)->data));
  }

 protected:
  HandleOwner() = default;
  virtual ~HandleOwner() { assert(open_ == 0); }

  // Call right after a successful uv_*_init: from now on the handle must be closed before
  // this object's memory goes away.
  template <class H>
  void adopt(H* h) {
    auto* uh = reinterpret_cast<uv_handle_t*>(h);
    assert(count_ < handles_.size());
    uh->data = this;
    handles_[count_++] = uh;
    ++open_;
  }

 private:
  static void on_closed(uv_handle_t* h) {
    auto* self = static_cast<HandleOwner*>(h->data);
    assert(self->open_ > 0);
    if (--self->open_ == 0) delete self;
  }

  std::array<uv_handle_t*, 3> handles_{};
  uint8_t count_ = 0;
  uint8_t open_ = 0;
  bool released_ = false;
};

}  // namespace sb::transport::detail
