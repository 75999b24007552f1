// Reports what a binding costs in memory (the budget: under 400 bytes for a typical 60-byte
// contact). It measures and prints; the only assertion is a generous sanity bound.
#include <doctest/doctest.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "location/location_service.h"

using namespace sb;

namespace {

size_t rss_bytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

size_t heap_bytes() { return mallinfo2().uordblks; }

}  // namespace

TEST_CASE("memory per binding (report)") {
  constexpr int kBindings = 100'000;
  core::FakeClock clock;
  location::Settings s;
  s.sweep_interval_ms = 0;
  s.limits.max_aors = kBindings;
  malloc_trim(0);
  const size_t heap0 = heap_bytes(), rss0 = rss_bytes();
  {
    location::LocationService loc(clock, s, nullptr);
    char contact[128], aor[64], call_id[64];
    location::UpdateRequest req;
    req.cseq = 1;
    req.user_agent = "Yealink SIP-T46S 66.86.0.15";
    req.source.protocol = core::Protocol::Udp;
    req.source.endpoint = *core::Endpoint::parse("198.51.100.23", 5060);
    for (int i = 0; i < kBindings; ++i) {
      // A typical contact of 60 bytes, one binding per AOR (the common case).
      std::snprintf(aor, sizeof aor, "sip:user%06d@example.com", i);
      std::snprintf(contact, sizeof contact,
                    "sip:user%06d@198.51.100.%d:%d;transport=udp;line=a7", i, i % 250,
                    5060 + i % 1000);
      std::snprintf(call_id, sizeof call_id, "%08x-%08x@198.51.100.23", i, i * 7919);
      location::BindingChange c;
      std::string padded = contact;
      padded.resize(60, 'x');
      c.contact = padded;
      c.expires = 3600;
      req.call_id = call_id;
      REQUIRE(loc.update(aor, req, {&c, 1}));
    }
    const size_t heap1 = heap_bytes(), rss1 = rss_bytes();
    const double heap_per = double(heap1 - heap0) / kBindings;
    const double rss_per = double(rss1 > rss0 ? rss1 - rss0 : 0) / kBindings;
    std::printf("location: %d bindings: heap %.0f bytes/binding, RSS growth %.0f bytes/binding\n",
                kBindings, heap_per, rss_per);
    MESSAGE("heap bytes per binding: " << heap_per << ", RSS growth per binding: " << rss_per);
    CHECK(loc.size() == size_t(kBindings));
    CHECK(heap_per < 2000);  // a sanity bound, not the budget
  }
}
