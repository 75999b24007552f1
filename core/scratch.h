// Scratch memory for the temporaries of one call on the message path: a buffer on the stack
// that std::pmr containers draw from, so building a few small vectors allocates nothing.
// What does not fit goes to the heap as usual; everything is released when the Scratch
// goes out of scope (nothing is freed piecemeal before that).
#pragma once
#include <cstddef>
#include <memory_resource>

namespace sb::core {

template <size_t Bytes>
class Scratch {
 public:
  Scratch() : res_(buf_, Bytes, std::pmr::new_delete_resource()) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  std::pmr::memory_resource* resource() { return &res_; }

 private:
  alignas(std::max_align_t) std::byte buf_[Bytes];
  std::pmr::monotonic_buffer_resource res_;
};

}  // namespace sb::core
