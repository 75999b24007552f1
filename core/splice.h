// Forwarding without re-serialising (DESIGN.md "A request's way through"): the outgoing
// bytes are the received ones plus edits, written into one output buffer of exact size.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/message.h"

namespace sb::core {

struct SpliceEdits {
  std::string_view request_uri;                 // replace the Request-URI when non-empty
  std::string_view add_via;                     // a Via value to put on top when non-empty
  bool remove_top_via = false;                  // drop the top Via value (responses, §16.7)
  int max_forwards = -1;                        // set (or add) Max-Forwards when >= 0
  int remove_routes = 0;                        // drop the first N Route values (§16.4/§16.12)
  std::span<const std::string_view> add_record_route;  // values put on top, in order
  std::span<const std::string_view> add_route;         // Route values put on top, in order
  std::span<const uint16_t> remove_headers;     // indexes into Message::headers()
  std::span<const std::string_view> add_headers;       // whole "Name: value" lines, no CRLF
  std::optional<std::string_view> body;         // replace the body
};

// Build the edited message into `out` (cleared first; at most one allocation, of exactly
// the output's size, none when `out` already has the room). Content-Length is always written and always true; a
// message without one (a datagram) gets one. Header lines are copied byte for byte, so
// unknown headers go unchanged.
void splice(const Message& m, const SpliceEdits& edits, std::string& out);

}  // namespace sb::core
