// The SIP message: parsed once into views over the received bytes (STYLE.md 2).
// Start line, every header in order (name + raw value), the frequently used headers typed
// (top Via, From, To, Call-ID, CSeq, Max-Forwards) and the body. Parsing never allocates
// beyond the header vector, whose capacity is reused when a Message object is reused.
#pragma once
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "core/header_id.h"
#include "core/method.h"
#include "core/result.h"
#include "core/sip_headers.h"
#include "core/uri.h"

namespace sb::core {

struct Header {
  HeaderId id = HeaderId::Other;
  std::string_view name;   // as received (may be compact)
  std::string_view value;  // trimmed; folded line ends stay inside (they are LWS)
  uint32_t begin = 0;      // offset of the header's first byte in the message
  uint32_t end = 0;        // offset just past its final line end
};

struct ParseOptions {
  // Datagram: a missing Content-Length means "the rest of the datagram" (§18.3).
  // Stream framing has already cut the message, so the same rule applies to its slice.
  // More header lines than this is a 400 (at most 32767 are ever accepted).
  uint32_t max_headers = 256;
};

class Message {
 public:
  // Parse `bytes` (which must outlive this object's use). On failure the fields parsed
  // so far stay readable, so a 400 can still be built when the Via was usable: the typed
  // headers are read even after a fault in the start line or a header section that never
  // ends. The error is the first of: start line, header syntax, typed headers (Via first),
  // header section not closed, Content-Length beyond the message.
  Status parse(std::string_view bytes, const ParseOptions& opts = {});
  // Become `parsed` (a message that parsed), reading from `copy`, a byte-for-byte copy of
  // parsed.raw(): what parsing the copy would give, without parsing it again. Every view is
  // moved from parsed's bytes onto the copy (new fields with views must be added here; the
  // unit test compares every accessor with a fresh parse).
  void rebase(const Message& parsed, std::string_view copy);

  bool is_request() const { return is_request_; }
  bool is_response() const { return !is_request_; }
  std::string_view raw() const { return raw_; }

  // Request line.
  Method method() const { return method_; }
  std::string_view method_text() const { return method_text_; }
  std::string_view ruri_text() const { return ruri_text_; }
  const Uri& ruri() const { return ruri_; }
  // Status line.
  int status() const { return status_; }
  std::string_view reason() const { return reason_; }

  // Headers in order.
  const std::vector<Header>& headers() const { return headers_; }
  const Header* find(HeaderId id) const {
    int i = first_[static_cast<int>(id)];
    return i < 0 ? nullptr : &headers_[static_cast<size_t>(i)];
  }
  // First header with this name (full or compact, any case); works for unknown names.
  const Header* find(std::string_view name) const;
  int count(HeaderId id) const { return counts_[static_cast<int>(id)]; }
  // Every header line with `id`, in order: f(const Header&) -> bool (false stops).
  template <class F>
  void for_each(HeaderId id, F&& f) const {
    if (first_[static_cast<int>(id)] < 0) return;
    for (size_t i = static_cast<size_t>(first_[static_cast<int>(id)]); i < headers_.size(); ++i)
      if (headers_[i].id == id && !f(headers_[i])) return;
  }
  // Every list element of every header line with `id`: f(std::string_view) -> bool.
  template <class F>
  void for_each_value(HeaderId id, F&& f) const {
    bool go = true;
    for_each(id, [&](const Header& h) {
      for_each_list_element(h.value, [&](std::string_view v) { return go = f(v); });
      return go;
    });
  }

  // Typed views of the headers every proxy reads (valid when has_*()).
  bool has_via() const { return has_via_; }
  const Via& top_via() const { return top_via_; }
  // True when the top Via's sent-by could be read, even if the Via or the message is bad:
  // enough to send a 400 back (§18.2.2).
  bool via_usable() const { return via_usable_; }
  int via_count() const { return via_count_; }
  std::string_view call_id() const { return call_id_; }
  const CSeq& cseq() const { return cseq_; }
  // In a response, from() and to() are delimited, not parsed down to their URIs: their
  // uri_text, display and params (the tags) are set, their `uri` is empty.
  const NameAddr& from() const { return from_; }
  const NameAddr& to() const { return to_; }
  bool has_from() const { return has_from_; }
  bool has_to() const { return has_to_; }
  // -1 when absent.
  int max_forwards() const { return max_forwards_; }
  // -1 when absent.
  int64_t content_length() const { return content_length_; }

  std::string_view body() const { return body_; }
  // Offset of the first header line and of the empty line ending the headers.
  uint32_t headers_begin() const { return headers_begin_; }
  uint32_t headers_end() const { return headers_end_; }
  // Offset just past the end of the start line (including its CRLF).
  uint32_t start_line_end() const { return headers_begin_; }
  // Offset of the message's first byte in `bytes` (leading CRLFs are skipped, §7.5).
  uint32_t start() const { return start_; }

 private:
  void reset();
  Status parse_start_line(std::string_view line);
  // Splits the header lines; `unterminated` tells a missing end of the section apart from
  // a malformed line.
  Status parse_headers(std::string_view bytes, size_t& pos, const ParseOptions& opts,
                       bool& unterminated);
  Status check_headers();

  std::string_view raw_;
  bool is_request_ = true;
  Method method_ = Method::Other;
  std::string_view method_text_, ruri_text_, reason_;
  Uri ruri_;
  int status_ = 0;
  std::vector<Header> headers_;
  std::array<int16_t, kHeaderIdCount> first_{};
  std::array<uint16_t, kHeaderIdCount> counts_{};
  Via top_via_;
  bool has_via_ = false, via_usable_ = false, has_from_ = false, has_to_ = false;
  int via_count_ = 0;
  std::string_view call_id_;
  CSeq cseq_;
  NameAddr from_, to_;
  int max_forwards_ = -1;
  int64_t content_length_ = -1;
  std::string_view body_;
  uint32_t headers_begin_ = 0, headers_end_ = 0, start_ = 0;
};

}  // namespace sb::core
