// Reassembles a byte stream into frames with core::next_frame (RFC 3261 §18.3,
// RFC 5626 §3.5.1 keep-alives). Reads are framed in place when nothing is buffered; only an
// incomplete tail is copied, so the common case (whole messages per read) copies nothing.
// A frame arriving in pieces is scanned once (core::FrameState).
// Private to transport/.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

#include "core/framing.h"

namespace sb::transport::detail {

class StreamReader {
 public:
  explicit StreamReader(size_t max_message_bytes) : max_(max_message_bytes) {}

  // Frames what was buffered plus `data`. For each frame (Message, Ping, Pong or Error)
  // calls on_frame(const core::Frame&, std::string_view bytes) -> bool; the view is valid
  // during the call only. Returns false when on_frame returned false or a framing error
  // was reported: the stream is then unusable and everything buffered is dropped.
  // on_frame must not call feed() on the same reader.
  template <class F>
  bool feed(std::string_view data, F&& on_frame) {
    const bool own = pos_ < buf_.size();
    std::string_view src = data;
    if (own) {
      buf_.append(data);
      src = std::string_view(buf_).substr(pos_);
    }
    size_t used = 0;
    while (used < src.size()) {
      // state_ remembers how far the pending frame was scanned, so a peer trickling bytes
      // costs linear work, not a rescan of the whole buffer per read.
      core::Frame f = core::next_frame(src.substr(used), max_, state_);
      if (f.kind == core::Frame::Kind::NeedMore) break;
      // A CRLF that ends the input may be the first half of a CRLFCRLF ping split by TCP:
      // wait for what follows rather than take it as a pong (RFC 5626 §3.5.1).
      if (f.kind == core::Frame::Kind::Pong && f.length == 2 && used + 2 == src.size()) break;
      std::string_view bytes = src.substr(used, f.length);
      used += f.length;
      bool go = on_frame(f, bytes);
      if (!go || f.kind == core::Frame::Kind::Error) {
        reset();
        return false;
      }
    }
    // What is left is the front of the next frame; state_ stays valid for it, copied or not.
    if (own) {
      pos_ += used;
      if (pos_ == buf_.size()) {
        clear_buffer();
      } else if (pos_ >= buf_.size() / 2) {
        buf_.erase(0, pos_);  // keep the buffer from creeping
        pos_ = 0;
      }
    } else if (used < src.size()) {
      buf_.assign(src.substr(used));
      pos_ = 0;
    }
    return true;
  }

  size_t buffered() const { return buf_.size() - pos_; }
  void reset() {
    clear_buffer();
    state_ = {};
  }

 private:
  void clear_buffer() {
    buf_.clear();
    // Small buffers are kept for the next split message; an idle connection should not pin
    // a large one.
    if (buf_.capacity() > 16384) buf_.shrink_to_fit();
    pos_ = 0;
  }

  size_t max_;
  std::string buf_;
  size_t pos_ = 0;
  core::FrameState state_;
};

}  // namespace sb::transport::detail
