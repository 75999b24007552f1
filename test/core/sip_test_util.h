// Helpers shared by the core parser tests: reading the conformance data, parsing a message
// that must be valid, collecting list values.
#pragma once
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/message.h"

namespace sb::core::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string torture_dir() { return std::string(SB_SHARED_DIR) + "/conformance/rfc4475/"; }

// A torture message by its file name relative to the rfc4475 directory, e.g. "wsinv.dat".
inline std::string torture(const std::string& file) { return read_file(torture_dir() + file); }

// Join lines with CRLF and end the header section: msg({"INVITE ...", "Via: ..."}, "body").
inline std::string msg(std::initializer_list<std::string_view> lines, std::string_view body = {},
                       bool with_length = true) {
  std::string s;
  for (auto l : lines) s.append(l).append("\r\n");
  if (with_length) s.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  s.append("\r\n").append(body);
  return s;
}

// A minimal valid request with the given extra header lines.
inline std::string request(std::initializer_list<std::string_view> extra = {},
                           std::string_view body = {}, std::string_view method = "OPTIONS") {
  std::string s;
  s.append(method).append(" sip:bob@example.com SIP/2.0\r\n");
  s += "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n";
  s += "Max-Forwards: 70\r\n";
  s += "To: Bob <sip:bob@example.com>\r\n";
  s += "From: Alice <sip:alice@example.com>;tag=1928301774\r\n";
  s += "Call-ID: a84b4c76e66710@pc33.example.com\r\n";
  s.append("CSeq: 314159 ").append(method).append("\r\n");
  for (auto l : extra) s.append(l).append("\r\n");
  s.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n\r\n");
  s.append(body);
  return s;
}

inline std::vector<std::string> values(const Message& m, HeaderId id) {
  std::vector<std::string> out;
  m.for_each_value(id, [&](std::string_view v) {
    out.emplace_back(v);
    return true;
  });
  return out;
}

inline std::string err(const Status& st) { return st ? std::string("ok") : describe(st.error()); }

}  // namespace sb::core::test
