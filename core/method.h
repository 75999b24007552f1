// SIP methods. Unknown (extension) methods are Method::Other with the name kept as text.
#pragma once
#include <cstdint>
#include <string_view>

namespace sb::core {

enum class Method : uint8_t {
  Other = 0, Invite, Ack, Bye, Cancel, Options, Register, Prack, Subscribe, Notify,
  Publish, Info, Refer, Message, Update
};

// Method names are case-sensitive (RFC 3261 §7.1).
Method method_from_name(std::string_view name);
std::string_view method_name(Method m);

}  // namespace sb::core
