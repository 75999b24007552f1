// RFC 3261 §16.3 request validation, the checks that need no transaction state:
// URI scheme (416), Max-Forwards (483), Proxy-Require (420). Syntax (step 1) is the parser's;
// loop detection (step 4) needs our Via branches and lives in the proxy core.
#pragma once
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/message.h"

namespace sb::proxy {

struct Rejection {
  int status = 0;
  std::string reason;
  std::vector<std::string> headers;  // whole "Name: value" lines for the response
};

// `supported_options` are the option tags we accept in Proxy-Require.
std::optional<Rejection> validate_request(const core::Message& req,
                                          std::span<const std::string_view> supported_options = {});

}  // namespace sb::proxy
