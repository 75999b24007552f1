#include "core/branch.h"

#include <charconv>

namespace sb::core {

namespace {
constexpr std::string_view kPrefix = "z9hG4bKsb";
}

void append_branch(std::string& out, uint32_t worker, uint64_t unique) {
  char buf[40];
  out.append(kPrefix);
  auto r = std::to_chars(buf, buf + sizeof buf, worker, 16);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
  out.push_back('.');
  r = std::to_chars(buf, buf + sizeof buf, unique, 16);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
}

std::string make_branch(uint32_t worker, uint64_t unique) {
  std::string s;
  s.reserve(40);
  append_branch(s, worker, unique);
  return s;
}

std::optional<uint32_t> branch_worker(std::string_view branch) {
  if (branch.size() <= kPrefix.size() || branch.substr(0, kPrefix.size()) != kPrefix)
    return std::nullopt;
  std::string_view rest = branch.substr(kPrefix.size());
  size_t dot = rest.find('.');
  if (dot == 0 || dot == std::string_view::npos || dot > 8 || dot + 1 == rest.size())
    return std::nullopt;
  uint32_t w = 0;
  auto r = std::from_chars(rest.data(), rest.data() + dot, w, 16);
  if (r.ptr != rest.data() + dot) return std::nullopt;
  return w;
}

}  // namespace sb::core
