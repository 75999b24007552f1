#include "core/method.h"

namespace sb::core {

namespace {
constexpr std::string_view kNames[] = {"",       "INVITE",    "ACK",    "BYE",    "CANCEL",
                                       "OPTIONS", "REGISTER", "PRACK",  "SUBSCRIBE", "NOTIFY",
                                       "PUBLISH", "INFO",     "REFER",  "MESSAGE", "UPDATE"};
}

Method method_from_name(std::string_view name) {
  for (size_t i = 1; i < std::size(kNames); ++i)
    if (kNames[i] == name) return static_cast<Method>(i);
  return Method::Other;
}

std::string_view method_name(Method m) { return kNames[static_cast<int>(m)]; }

}  // namespace sb::core
