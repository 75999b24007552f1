// Errors as values: no exceptions on the message path (STYLE.md 2, 11).
#pragma once
#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace sb::core {

// A fault found in input. `reason` is a static string naming the header and the fault,
// e.g. "bad Via: missing sent-by"; `status` is the SIP response it maps to (400, 505, ...).
struct Error {
  const char* reason = "error";
  int status = 400;
  std::string_view header{};  // the header the fault is in, when there is one
};

// "bad Via: missing sent-by", or the bare reason when no header is named.
inline std::string describe(const Error& e) {
  if (e.header.empty()) return e.reason;
  std::string s = "bad ";
  s.append(e.header).append(": ").append(e.reason);
  return s;
}
inline Error in_header(Error e, std::string_view header) {
  if (e.header.empty()) e.header = header;
  return e;
}

template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error e) : v_(e) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { assert(ok()); return std::get<0>(v_); }
  const T& value() const { assert(ok()); return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success or an Error.
class Status {
 public:
  Status() = default;
  Status(Error e) : err_(e), ok_(false) {}
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { assert(!ok_); return err_; }

 private:
  Error err_{};
  bool ok_ = true;
};

}  // namespace sb::core
