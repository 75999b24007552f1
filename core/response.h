// Building a response to a received request (RFC 3261 §8.2.6): Via, From, To (with our
// tag when the request had none), Call-ID and CSeq copied; Timestamp in a 100 (§8.2.6.1);
// Record-Route in a 101-299 to a dialog-creating request (§12.1.1); extra headers and a
// body. Works on a request that failed to parse, from the headers read so far: that is
// how a 400 reaches a request whose top Via was usable.
#pragma once
#include <span>
#include <string>
#include <string_view>

#include "core/message.h"

namespace sb::core {

struct ResponseSpec {
  int status = 200;
  std::string_view reason;                         // "" → the RFC's default phrase
  std::string_view to_tag;                         // added to To when it has no tag (status > 100)
  std::span<const std::string_view> headers;       // whole "Name: value" lines, no CRLF
  std::string_view body;
};

std::string build_response(const Message& request, const ResponseSpec& spec);

// The default reason phrase for a status code (§21), "" when unknown.
std::string_view default_reason(int status);

}  // namespace sb::core
