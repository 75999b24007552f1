// core/branch: our Via branch carries the owning worker (DESIGN.md "Threading").
#include <doctest/doctest.h>

#include <cstdint>
#include <string>

#include "core/branch.h"
#include "core/sip_headers.h"

using namespace sb::core;

TEST_CASE("branch: format and round trip") {
  CHECK(make_branch(1, 0x5f3a9c0e) == "z9hG4bKsb1.5f3a9c0e");
  CHECK(make_branch(0, 0) == "z9hG4bKsb0.0");
  for (uint32_t w : {0u, 1u, 7u, 15u, 16u, 255u, 4096u, 0xffffffffu}) {
    CAPTURE(w);
    std::string b = make_branch(w, 0x0123456789abcdefull);
    CHECK(b.rfind("z9hG4bK", 0) == 0);  // RFC 3261 §8.1.1.7 magic cookie
    CHECK(branch_worker(b) == w);
  }
  std::string out = "prefix;branch=";
  append_branch(out, 3, 42);
  CHECK(out == "prefix;branch=z9hG4bKsb3.2a");
  CHECK(make_branch(2, UINT64_MAX) == "z9hG4bKsb2.ffffffffffffffff");
}

TEST_CASE("branch: unique per transaction counter") {
  CHECK(make_branch(1, 1) != make_branch(1, 2));
  CHECK(make_branch(1, 0x10) != make_branch(0x10, 1));
}

TEST_CASE("branch: a branch that is not ours has no worker") {
  for (const char* b : {"", "z9hG4bK", "z9hG4bKsb", "z9hG4bKsb.1", "z9hG4bKsb1", "z9hG4bKsbx.1",
                        "z9hG4bKsb123456789.1", "z9hG4bK74bf9", "z9hG4bKSB1.2", "sb1.2",
                        "z9hG4bKsb1x.2", "z9hG4bKsb-1.2", "z9hG4bKsb+1.2"}) {
    CAPTURE(b);
    CHECK_FALSE(branch_worker(b).has_value());
  }
  CHECK(branch_worker("z9hG4bKsb12345678.1") == 0x12345678u);
  CHECK(branch_worker("z9hG4bKsbA.1") == 10u);  // hex digits in either case
  CHECK_FALSE(branch_worker("z9hG4bKsb1.").has_value());  // ours always have a unique part
}

TEST_CASE("branch: survives a Via round trip") {
  std::string via = "SIP/2.0/UDP 192.0.2.10:5060;branch=" + make_branch(5, 99) + ";rport";
  auto v = parse_via(via);
  REQUIRE(v.ok());
  CHECK(v->rfc3261_branch());
  CHECK(branch_worker(v->branch) == 5u);
}
