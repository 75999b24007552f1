// `switchboard ctl`: the command-line client of the admin HTTP API (docs/admin.md). A
// blocking HTTP/1.1 client over a plain socket; responses are parsed with http-parser.
//
// Exit status: 0 success; 1 the server answered with a refusal (an error status, a
// rejected reload, unhealthy); 2 a usage error or no usable answer (cannot connect,
// timed out, malformed answer).
#pragma once
#include <iosfwd>
#include <string>
#include <vector>

namespace sb::app {

// `args` are what follows `ctl` on the command line. Writes to stdout / stderr.
int ctl_main(const std::vector<std::string>& args);
// The same with the output streams given (tests).
int ctl_main(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace sb::app
