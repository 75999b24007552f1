#include "transport/dns_message.h"

#include <arpa/inet.h>
#include <ares.h>

#include <algorithm>
#include <cstring>

#include "core/text.h"

namespace sb::transport::dns {

namespace {

uint16_t u16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t u32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}

// A (possibly compressed) name at `p`; advances `p` past it. False on a malformed name.
bool read_name(const uint8_t* buf, size_t len, const uint8_t*& p, std::string* out) {
  if (p >= buf + len) return false;
  char* s = nullptr;
  long used = 0;
  if (ares_expand_name(p, buf, static_cast<int>(len), &s, &used) != ARES_SUCCESS) return false;
  if (out) *out = normalize_name(s);
  ares_free_string(s);
  p += used;
  return p <= buf + len;
}

// A <character-string> (RFC 1035 §3.3) inside rdata ending at `end`.
bool read_string(const uint8_t*& p, const uint8_t* end, std::string& out) {
  if (p >= end) return false;
  size_t n = *p++;
  if (static_cast<size_t>(end - p) < n) return false;
  out.assign(reinterpret_cast<const char*>(p), n);
  p += n;
  return true;
}

Answer failed(std::string why) {
  Answer a;
  a.status = Status::Failed;
  a.error = std::move(why);
  return a;
}

const char* rcode_name(int rcode) {
  switch (rcode) {
    case 1: return "FORMERR";
    case 2: return "SERVFAIL";
    case 4: return "NOTIMP";
    case 5: return "REFUSED";
    default: return "error";
  }
}

}  // namespace

std::string_view type_name(Type t) {
  switch (t) {
    case Type::A: return "A";
    case Type::Cname: return "CNAME";
    case Type::Soa: return "SOA";
    case Type::Aaaa: return "AAAA";
    case Type::Srv: return "SRV";
    case Type::Naptr: return "NAPTR";
  }
  return "?";
}

std::string normalize_name(std::string_view name) {
  while (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  for (char& c : out) c = core::ascii_lower(c);
  return out;
}

Answer parse_answer(const uint8_t* buf, size_t len, Type qtype) {
  if (!buf || len < 12) return failed("short DNS response");
  const uint8_t* end = buf + len;
  int rcode = buf[3] & 0x0F;
  uint16_t qd = u16(buf + 4), an = u16(buf + 6), ns = u16(buf + 8);
  if (rcode != 0 && rcode != 3)
    return failed(std::string("the DNS server answered ") + rcode_name(rcode) + " (rcode " +
                  std::to_string(rcode) + ")");
  Answer a;
  a.status = rcode == 3 ? Status::NoSuchName : Status::Ok;
  const uint8_t* p = buf + 12;
  for (uint16_t i = 0; i < qd; ++i) {
    if (!read_name(buf, len, p, nullptr) || end - p < 4) return failed("malformed DNS response");
    p += 4;
  }
  uint32_t min_ttl = UINT32_MAX;
  uint32_t cname_ttl = UINT32_MAX;
  for (uint32_t i = 0; i < uint32_t(an) + ns; ++i) {
    const bool answer_section = i < an;
    if (!read_name(buf, len, p, nullptr) || end - p < 10) return failed("malformed DNS response");
    uint16_t type = u16(p), cls = u16(p + 2);
    uint32_t ttl = u32(p + 4);
    if (ttl > 0x7FFFFFFF) ttl = 0;  // RFC 2181 §8: a TTL with the top bit set is zero
    uint16_t rdlen = u16(p + 8);
    p += 10;
    if (end - p < rdlen) return failed("malformed DNS response");
    const uint8_t* rd = p;
    const uint8_t* rd_end = p + rdlen;
    p = rd_end;
    if (cls != 1) continue;  // IN only
    if (!answer_section) {
      if (type == uint16_t(Type::Soa)) {
        // RFC 2308 §5: a negative answer lives min(SOA TTL, SOA MINIMUM).
        const uint8_t* q = rd;
        if (!read_name(buf, len, q, nullptr) || !read_name(buf, len, q, nullptr) || rd_end - q < 20)
          continue;
        uint32_t minimum = u32(q + 16);
        a.negative_ttl_s = std::min(ttl, minimum);
      }
      continue;
    }
    if (type == uint16_t(Type::Cname)) {
      cname_ttl = std::min(cname_ttl, ttl);
      continue;
    }
    if (type != uint16_t(qtype)) continue;
    bool ok = true;
    switch (qtype) {
      case Type::A:
      case Type::Aaaa: {
        sockaddr_storage ss{};
        if (qtype == Type::A && rdlen == 4) {
          auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
          sin->sin_family = AF_INET;
          std::memcpy(&sin->sin_addr, rd, 4);
        } else if (qtype == Type::Aaaa && rdlen == 16) {
          auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
          sin6->sin6_family = AF_INET6;
          std::memcpy(&sin6->sin6_addr, rd, 16);
        } else {
          ok = false;
          break;
        }
        auto ep = core::Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss));
        if (!ep) {
          ok = false;
          break;
        }
        a.addresses.push_back(*ep);
        break;
      }
      case Type::Srv: {
        if (rdlen < 7) {
          ok = false;
          break;
        }
        Srv s;
        s.priority = u16(rd);
        s.weight = u16(rd + 2);
        s.port = u16(rd + 4);
        const uint8_t* q = rd + 6;
        ok = read_name(buf, len, q, &s.target) && q <= rd_end;
        if (ok && s.target.empty()) s.target = ".";
        if (ok) a.srv.push_back(std::move(s));
        break;
      }
      case Type::Naptr: {
        if (rdlen < 4) {
          ok = false;
          break;
        }
        Naptr n;
        n.order = u16(rd);
        n.preference = u16(rd + 2);
        const uint8_t* q = rd + 4;
        ok = read_string(q, rd_end, n.flags) && read_string(q, rd_end, n.service) &&
             read_string(q, rd_end, n.regexp) && read_name(buf, len, q, &n.replacement) &&
             q <= rd_end;
        if (ok) a.naptr.push_back(std::move(n));
        break;
      }
      default:
        break;
    }
    if (!ok) return failed(std::string("malformed ") + std::string(type_name(qtype)) + " record");
    min_ttl = std::min(min_ttl, ttl);
  }
  if (a.status == Status::Ok && min_ttl != UINT32_MAX) a.ttl_s = std::min(min_ttl, cname_ttl);
  return a;
}

}  // namespace sb::transport::dns
