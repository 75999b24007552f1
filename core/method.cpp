#include "core/method.h"

namespace sb::core {

namespace {
constexpr std::string_view kNames[] = {"",       "INVITE",    "ACK",    "BYE",    "CANCEL",
                                       "OPTIONS", "REGISTER", "PRACK",  "SUBSCRIBE", "NOTIFY",
                                       "PUBLISH", "INFO",     "REFER",  "MESSAGE", "UPDATE"};
}

Method method_from_name(std::string_view name) {
  // Dispatch on the length so at most three names are compared.
  auto is = [&](Method m) { return kNames[static_cast<int>(m)] == name; };
  switch (name.size()) {
    case 3:
      if (is(Method::Ack)) return Method::Ack;
      if (is(Method::Bye)) return Method::Bye;
      break;
    case 4:
      if (is(Method::Info)) return Method::Info;
      break;
    case 5:
      if (is(Method::Prack)) return Method::Prack;
      if (is(Method::Refer)) return Method::Refer;
      break;
    case 6:
      if (is(Method::Invite)) return Method::Invite;
      if (is(Method::Cancel)) return Method::Cancel;
      if (is(Method::Notify)) return Method::Notify;
      if (is(Method::Update)) return Method::Update;
      break;
    case 7:
      if (is(Method::Options)) return Method::Options;
      if (is(Method::Publish)) return Method::Publish;
      if (is(Method::Message)) return Method::Message;
      break;
    case 8:
      if (is(Method::Register)) return Method::Register;
      break;
    case 9:
      if (is(Method::Subscribe)) return Method::Subscribe;
      break;
    default:
      break;
  }
  return Method::Other;
}

std::string_view method_name(Method m) { return kNames[static_cast<int>(m)]; }

}  // namespace sb::core
