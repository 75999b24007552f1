// `switchboard route-test`: run the routing script on one message offline and print the
// decision, so script writers can test before they deploy (issue "Stateful proxy core").
#pragma once
#include <string>
#include <vector>

namespace sb::app {

struct RouteTestOptions {
  std::string config_path;             // "" = the embedded default
  std::string message_path;            // the SIP request to route
  std::vector<std::string> bindings;   // "AOR=CONTACT" registered before the run
  std::string source = "127.0.0.1:5060";
  std::string transport = "udp";
};

// Prints the decision on stdout. 0: a decision was made; 1: a script error, no decision, or
// bad input (message that does not parse, config/script errors); 2: usage.
int route_test(const RouteTestOptions& opts);

}  // namespace sb::app
