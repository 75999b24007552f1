#include "transport/owner.h"

#include <doctest/doctest.h>

#include <set>
#include <string>

#include "core/branch.h"
#include "core/message.h"

using sb::core::Message;
using sb::transport::owner_of;

namespace {

std::string request(const std::string& method, const std::string& via_params,
                    const std::string& sent_by = "192.0.2.10:5060",
                    const std::string& call_id = "a84b4c76e66710",
                    const std::string& cseq_method = "") {
  return method + " sip:bob@example.com SIP/2.0\r\n"
         "Via: SIP/2.0/UDP " + sent_by + via_params + "\r\n"
         "Max-Forwards: 70\r\n"
         "To: <sip:bob@example.com>\r\n"
         "From: <sip:alice@example.com>;tag=1928301774\r\n"
         "Call-ID: " + call_id + "\r\n"
         "CSeq: 314159 " + (cseq_method.empty() ? method : cseq_method) + "\r\n"
         "Content-Length: 0\r\n\r\n";
}

std::string response(int status, const std::string& branch, const std::string& sent_by = "192.0.2.10:5060",
                     const std::string& call_id = "a84b4c76e66710") {
  return "SIP/2.0 " + std::to_string(status) + " Whatever\r\n"
         "Via: SIP/2.0/UDP " + sent_by + ";branch=" + branch + "\r\n"
         "To: <sip:bob@example.com>;tag=xyz\r\n"
         "From: <sip:alice@example.com>;tag=1928301774\r\n"
         "Call-ID: " + call_id + "\r\n"
         "CSeq: 314159 INVITE\r\n"
         "Content-Length: 0\r\n\r\n";
}

uint32_t owner(const std::string& bytes, uint32_t n) {
  Message m;
  auto st = m.parse(bytes);
  REQUIRE_MESSAGE(st.ok(), bytes);
  return owner_of(m, n);
}

}  // namespace

TEST_CASE("owner_of: one worker owns everything") {
  CHECK(owner(request("INVITE", ";branch=z9hG4bKabc"), 1) == 0);
  CHECK(owner(response(200, sb::core::make_branch(3, 7)), 1) == 0);
}

TEST_CASE("owner_of: a response to our branch goes to the worker in the branch") {
  for (uint32_t w = 0; w < 8; ++w) {
    std::string branch = sb::core::make_branch(w, 0xabcdef + w);
    CHECK(owner(response(180, branch), 8) == w);
    CHECK(owner(response(200, branch, "10.0.0.1:5080", "other-call"), 8) == w);
  }
}

TEST_CASE("owner_of: our branch naming a worker we do not have is hashed like a request") {
  std::string branch = sb::core::make_branch(6, 1);
  uint32_t o = owner(response(200, branch), 4);
  CHECK(o < 4);
  CHECK(owner(response(200, branch), 4) == o);
  // The same key as a request with that branch and sent-by.
  CHECK(owner(request("INVITE", ";branch=" + branch), 4) == o);
}

TEST_CASE("owner_of: a foreign response is hashed by branch and sent-by, stably") {
  std::string r = response(200, "z9hG4bKforeign42");
  uint32_t o = owner(r, 4);
  CHECK(o < 4);
  CHECK(owner(r, 4) == o);
  // Same branch and sent-by as a request: same owner (stateless forwarding either way).
  CHECK(owner(request("INVITE", ";branch=z9hG4bKforeign42"), 4) == o);
}

TEST_CASE("owner_of: retransmission, ACK and CANCEL of a branch land on the INVITE's owner") {
  for (uint32_t n : {2u, 3u, 4u, 7u, 16u}) {
    for (int i = 0; i < 50; ++i) {
      std::string params = ";branch=z9hG4bK" + std::to_string(i * 7919) + ";rport";
      uint32_t o = owner(request("INVITE", params), n);
      CHECK(o < n);
      CHECK(owner(request("INVITE", params), n) == o);
      CHECK(owner(request("CANCEL", params), n) == o);
      CHECK(owner(request("ACK", params), n) == o);
      // A different CSeq number, Call-ID change or param order must not matter for matching
      // (§17.2.3 matches on branch + sent-by), and neither does host case.
      CHECK(owner(request("ACK", params, "192.0.2.10:5060", "changed-call-id"), n) == o);
    }
  }
  std::string p = ";branch=z9hG4bKcase";
  CHECK(owner(request("INVITE", p, "Host.Example.COM:5060"), 8) ==
        owner(request("CANCEL", p, "host.example.com:5060"), 8));
}

TEST_CASE("owner_of: the sent-by is part of the key") {
  // Two clients that happen to pick the same branch are different transactions (§17.2.3);
  // over many sent-bys they must not all collapse onto one worker.
  std::set<uint32_t> owners;
  for (int i = 0; i < 64; ++i)
    owners.insert(owner(request("INVITE", ";branch=z9hG4bKsame", "192.0.2." + std::to_string(i) + ":5060"), 4));
  CHECK(owners.size() > 1);
}

TEST_CASE("owner_of: branches spread over every worker") {
  std::set<uint32_t> owners;
  for (int i = 0; i < 200; ++i)
    owners.insert(owner(request("INVITE", ";branch=z9hG4bK" + std::to_string(i)), 4));
  CHECK(owners.size() == 4);
}

TEST_CASE("owner_of: without the magic cookie the Call-ID decides (RFC 2543 peers)") {
  for (uint32_t n : {2u, 5u}) {
    for (int i = 0; i < 30; ++i) {
      std::string cid = "legacy-" + std::to_string(i);
      uint32_t o = owner(request("INVITE", ";branch=old1", "192.0.2.10:5060", cid), n);
      CHECK(owner(request("ACK", ";branch=other", "10.9.9.9", cid), n) == o);
      CHECK(owner(request("BYE", "", "192.0.2.10:5060", cid), n) == o);
    }
  }
}
