// Stream framing for TCP/TLS (RFC 3261 §18.3): a message ends Content-Length bytes after
// its empty line. Also recognises RFC 5626 §3.5.1 keep-alives: CRLFCRLF ping, CRLF pong.
// A CRLF followed by anything but CR is a pong (or CRLF before a message, §7.5); a CRLF
// alone at the end of the buffer is NeedMore, since it may be the first half of a ping. (A
// client waiting for a pong can take a buffer that is exactly "\r\n" as one.)
#pragma once
#include <cstddef>
#include <string_view>

#include "core/result.h"

namespace sb::core {

struct Frame {
  enum class Kind { NeedMore, Message, Ping, Pong, Error };
  Kind kind = Kind::NeedMore;
  size_t length = 0;  // bytes to consume from the front of the buffer
  // For Kind::Error: 513 when too large, 400 otherwise. Framing is lost after an error (the
  // body's end is unknown): answer if possible, then close the connection.
  Error error{};
};

// What a connection remembers between calls, so bytes arriving in small pieces are scanned
// once (linear work in total). Keep one per connection, pass the same buffer front each
// time (appending is fine) and reset it to {} when consuming a frame's bytes.
struct FrameState {
  size_t scanned = 0;  // bytes known not to hold the end of the header section
  size_t total = 0;    // the whole message's length once known, else 0
};

// The first frame in `buffer`.
Frame next_frame(std::string_view buffer, size_t max_message_bytes);
// The same, resuming where the previous call on this buffer stopped.
Frame next_frame(std::string_view buffer, size_t max_message_bytes, FrameState& state);

}  // namespace sb::core
