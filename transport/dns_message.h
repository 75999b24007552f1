// DNS answers as the RFC 3263 resolver uses them, and the interface that asks for them:
// the records of the queried type with their TTLs (c-ares parses NAPTR and SRV without
// TTLs, so we read the answer ourselves), and the negative-caching TTL of RFC 2308 from the
// SOA of a negative answer.
// Private to transport/.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/address.h"

namespace sb::transport::dns {

enum class Type : uint16_t { A = 1, Cname = 5, Soa = 6, Aaaa = 28, Srv = 33, Naptr = 35 };
std::string_view type_name(Type t);

struct Srv {  // RFC 2782
  uint16_t priority = 0;
  uint16_t weight = 0;
  uint16_t port = 0;
  std::string target;  // "." = the service is decidedly not available
};

struct Naptr {  // RFC 3403
  uint16_t order = 0;
  uint16_t preference = 0;
  std::string flags;
  std::string service;
  std::string regexp;
  std::string replacement;
};

// The outcome of one query. Ok with no records is NODATA.
enum class Status : uint8_t { Ok, NoSuchName, Failed };

struct Answer {
  Status status = Status::Failed;
  std::string error;                      // Failed: why (timeout, SERVFAIL, ...)
  bool timed_out = false;                 // Failed: no server answered at all
  uint32_t ttl_s = 0;                     // Ok with records: the least TTL of the RRset
  int64_t negative_ttl_s = -1;            // negative: from the SOA (RFC 2308 §5); -1 = none
  std::vector<core::Endpoint> addresses;  // A / AAAA (port 0), in answer order
  std::vector<Srv> srv;
  std::vector<Naptr> naptr;

  bool negative() const {
    return status == Status::NoSuchName ||
           (status == Status::Ok && addresses.empty() && srv.empty() && naptr.empty());
  }
};

// Reads a DNS response to a query of type `qtype`: the rcode, the answer records of that
// type (following no CNAME explicitly: records of the type are taken whatever their owner,
// and a CNAME's TTL bounds the RRset's), the SOA of the authority section.
Answer parse_answer(const uint8_t* buf, size_t len, Type qtype);

// Sends DNS queries: c-ares on a worker's loop (dns_cares.h), the cache in front of it
// (dns_cache.h), a fake in tests. `done` runs exactly once, now or later on this worker,
// unless the querier is stopped first.
class Querier {
 public:
  virtual ~Querier() = default;
  virtual void query(const std::string& name, Type type, std::function<void(Answer)> done) = 0;
};

// The lower-case form of a name, without a trailing dot ("Example.COM." → "example.com").
std::string normalize_name(std::string_view name);

}  // namespace sb::transport::dns
