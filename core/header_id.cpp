#include "core/header_id.h"

#include <array>
#include <bit>
#include <cstring>

#include "core/text.h"

namespace sb::core {

namespace {

struct Entry {
  HeaderId id;
  std::string_view name;
  char compact;  // 0 when none
  bool list;
  bool single;
};

constexpr Entry kEntries[] = {
    {HeaderId::Other, "", 0, false, false},
    {HeaderId::Via, "Via", 'v', true, false},
    {HeaderId::From, "From", 'f', false, true},
    {HeaderId::To, "To", 't', false, true},
    {HeaderId::CallId, "Call-ID", 'i', false, true},
    {HeaderId::CSeq, "CSeq", 0, false, true},
    {HeaderId::Contact, "Contact", 'm', true, false},
    {HeaderId::MaxForwards, "Max-Forwards", 0, false, true},
    {HeaderId::Route, "Route", 0, true, false},
    {HeaderId::RecordRoute, "Record-Route", 0, true, false},
    {HeaderId::ContentLength, "Content-Length", 'l', false, true},
    {HeaderId::ContentType, "Content-Type", 'c', false, true},
    {HeaderId::ContentEncoding, "Content-Encoding", 'e', true, false},
    {HeaderId::Expires, "Expires", 0, false, true},
    {HeaderId::MinExpires, "Min-Expires", 0, false, true},
    {HeaderId::Require, "Require", 0, true, false},
    {HeaderId::ProxyRequire, "Proxy-Require", 0, true, false},
    {HeaderId::Supported, "Supported", 'k', true, false},
    {HeaderId::Unsupported, "Unsupported", 0, true, false},
    {HeaderId::Allow, "Allow", 0, true, false},
    {HeaderId::Accept, "Accept", 0, true, false},
    {HeaderId::AcceptEncoding, "Accept-Encoding", 0, true, false},
    {HeaderId::AcceptLanguage, "Accept-Language", 0, true, false},
    {HeaderId::Authorization, "Authorization", 0, false, false},
    {HeaderId::ProxyAuthorization, "Proxy-Authorization", 0, false, false},
    {HeaderId::WWWAuthenticate, "WWW-Authenticate", 0, false, false},
    {HeaderId::ProxyAuthenticate, "Proxy-Authenticate", 0, false, false},
    {HeaderId::AuthenticationInfo, "Authentication-Info", 0, false, true},
    {HeaderId::Subject, "Subject", 's', false, true},
    {HeaderId::Event, "Event", 'o', false, true},
    {HeaderId::AllowEvents, "Allow-Events", 'u', true, false},
    {HeaderId::ReferTo, "Refer-To", 'r', false, true},
    {HeaderId::ReferredBy, "Referred-By", 'b', false, true},
    {HeaderId::AcceptContact, "Accept-Contact", 'a', true, false},
    {HeaderId::RejectContact, "Reject-Contact", 'j', true, false},
    {HeaderId::RequestDisposition, "Request-Disposition", 'd', true, false},
    {HeaderId::SessionExpires, "Session-Expires", 'x', false, true},
    {HeaderId::Identity, "Identity", 'y', false, false},
    {HeaderId::IdentityInfo, "Identity-Info", 'n', false, false},
    {HeaderId::Path, "Path", 0, true, false},
    {HeaderId::ServiceRoute, "Service-Route", 0, true, false},
    {HeaderId::UserAgent, "User-Agent", 0, false, true},
    {HeaderId::Server, "Server", 0, false, true},
    {HeaderId::Date, "Date", 0, false, true},
    {HeaderId::Timestamp, "Timestamp", 0, false, true},
    {HeaderId::RetryAfter, "Retry-After", 0, false, true},
    {HeaderId::Warning, "Warning", 0, true, false},
    {HeaderId::Reason, "Reason", 0, true, false},
    {HeaderId::Priority, "Priority", 0, false, true},
    {HeaderId::Organization, "Organization", 0, false, true},
    {HeaderId::InReplyTo, "In-Reply-To", 0, true, false},
    {HeaderId::ReplyTo, "Reply-To", 0, false, true},
    {HeaderId::CallInfo, "Call-Info", 0, true, false},
    {HeaderId::AlertInfo, "Alert-Info", 0, true, false},
    {HeaderId::ErrorInfo, "Error-Info", 0, true, false},
    {HeaderId::MimeVersion, "MIME-Version", 0, false, true},
    {HeaderId::ContentDisposition, "Content-Disposition", 0, false, true},
    {HeaderId::ContentLanguage, "Content-Language", 0, true, false},
};
static_assert(std::size(kEntries) == kHeaderIdCount);

constexpr std::array<HeaderId, 128> make_compact() {
  std::array<HeaderId, 128> t{};
  for (const auto& e : kEntries)
    if (e.compact) {
      t[static_cast<unsigned char>(e.compact)] = e.id;
      t[static_cast<unsigned char>(e.compact - 32)] = e.id;
    }
  return t;
}
constexpr auto kCompact = make_compact();

// Full names in an open-addressed table built at compile time: one hash of the length and
// three letters, then (almost always) one compare of three 64-bit words.
constexpr size_t kSlots = 256;
constexpr size_t kMaxName = kHeaderIdLookahead;  // longer than any known name
constexpr size_t fold(char c) { return static_cast<unsigned char>(c) | 0x20u; }
constexpr size_t name_hash(std::string_view n) {
  size_t len = n.size();
  return (len * 37 + fold(n[0]) * 31 + fold(n[len - 1]) * 7 + fold(n[len / 2]) * 3) & (kSlots - 1);
}
constexpr std::array<uint8_t, kSlots> make_slots() {
  std::array<uint8_t, kSlots> t{};
  for (size_t i = 1; i < std::size(kEntries); ++i) {
    size_t h = name_hash(kEntries[i].name);
    while (t[h] != 0) h = (h + 1) & (kSlots - 1);
    t[h] = static_cast<uint8_t>(i);
  }
  return t;
}
constexpr auto kSlotsTable = make_slots();

// Each name lower-cased into little-endian words, with a mask holding 0x20 where the name
// has a letter: (input | mask) == word is then an exact case-insensitive match.
struct Key {
  uint64_t w[3];
  uint64_t m[3];
};
constexpr std::array<Key, std::size(kEntries)> make_keys() {
  std::array<Key, std::size(kEntries)> t{};
  for (size_t i = 0; i < std::size(kEntries); ++i) {
    std::string_view n = kEntries[i].name;
    for (size_t j = 0; j < n.size(); ++j) {
      uint64_t c = static_cast<unsigned char>(ascii_lower(n[j]));
      t[i].w[j / 8] |= c << (8 * (j % 8));
      const bool letter = (n[j] >= 'A' && n[j] <= 'Z') || (n[j] >= 'a' && n[j] <= 'z');
      if (letter) t[i].m[j / 8] |= 0x20ull << (8 * (j % 8));
    }
  }
  return t;
}
constexpr auto kKeys = make_keys();
static_assert([] {
  for (const auto& e : kEntries)
    if (e.name.size() >= kMaxName) return false;
  return true;
}());

bool matches(size_t i, const uint64_t (&w)[3]) {
  const Key& k = kKeys[i];
  return ((w[0] | k.m[0]) == k.w[0]) & ((w[1] | k.m[1]) == k.w[1]) & ((w[2] | k.m[2]) == k.w[2]);
}

// `w` holds the name's bytes (little-endian words), zero past its length.
HeaderId lookup(std::string_view name, const uint64_t (&w)[3]) {
  for (size_t h = name_hash(name);; h = (h + 1) & (kSlots - 1)) {
    uint8_t i = kSlotsTable[h];
    if (i == 0) return HeaderId::Other;
    if (kEntries[i].name.size() == name.size()) {
      if constexpr (std::endian::native == std::endian::little) {
        if (matches(i, w)) return kEntries[i].id;
      } else {
        if (iequals(kEntries[i].name, name)) return kEntries[i].id;
      }
    }
  }
}

}  // namespace

HeaderId header_id(std::string_view name) {
  if (name.size() == 1) {
    auto c = static_cast<unsigned char>(name[0]);
    return c < 128 ? kCompact[c] : HeaderId::Other;
  }
  if (name.empty() || name.size() >= kMaxName) return HeaderId::Other;
  uint64_t w[3] = {0, 0, 0};
  std::memcpy(w, name.data(), name.size());
  return lookup(name, w);
}

// For each length, the masks keeping that many leading bytes of the three words.
struct LenMask {
  uint64_t m[3];
};
constexpr std::array<LenMask, kMaxName> make_len_masks() {
  std::array<LenMask, kMaxName> t{};
  for (size_t len = 0; len < kMaxName; ++len)
    for (size_t k = 0; k < 3; ++k) {
      size_t have = len > 8 * k ? len - 8 * k : 0;
      t[len].m[k] = have >= 8 ? ~0ull : have ? (~0ull >> (64 - 8 * have)) : 0;
    }
  return t;
}
constexpr auto kLenMasks = make_len_masks();

HeaderId header_id_in_buffer(const char* p, size_t len) {
  if (std::endian::native != std::endian::little || len <= 1 || len >= kMaxName)
    return header_id(std::string_view(p, len));
  uint64_t w[3];
  std::memcpy(w, p, sizeof w);  // fixed size: three loads
  const LenMask& m = kLenMasks[len];
  w[0] &= m.m[0];
  w[1] &= m.m[1];
  w[2] &= m.m[2];
  return lookup(std::string_view(p, len), w);
}

std::string_view header_name(HeaderId id) { return kEntries[static_cast<int>(id)].name; }
bool header_is_list(HeaderId id) { return kEntries[static_cast<int>(id)].list; }
bool header_is_single(HeaderId id) { return kEntries[static_cast<int>(id)].single; }

}  // namespace sb::core
