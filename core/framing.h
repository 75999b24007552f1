// Stream framing for TCP/TLS (RFC 3261 §18.3): a message ends Content-Length bytes after
// its empty line. Also recognises RFC 5626 §3.5.1 keep-alives: CRLFCRLF ping, CRLF pong.
#pragma once
#include <cstddef>
#include <string_view>

#include "core/result.h"

namespace sb::core {

struct Frame {
  enum class Kind { NeedMore, Message, Ping, Pong, Error };
  Kind kind = Kind::NeedMore;
  size_t length = 0;  // bytes to consume from the front of the buffer
  Error error{};      // for Kind::Error: 513 when too large, 400 otherwise
};

Frame next_frame(std::string_view buffer, size_t max_message_bytes);

}  // namespace sb::core
