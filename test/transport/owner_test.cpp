#include "transport/owner.h"

#include <doctest/doctest.h>

#include <cctype>
#include <set>
#include <string>

#include "core/branch.h"
#include "core/message.h"

using sb::core::Message;
using sb::transport::Dispatch;
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

uint32_t owner(const std::string& bytes, uint32_t n, uint32_t receiver = 0,
               Dispatch dispatch = Dispatch::BySource) {
  Message m;
  auto st = m.parse(bytes);
  REQUIRE_MESSAGE(st.ok(), bytes);
  return owner_of(m, n, receiver, dispatch);
}

uint32_t hashed(const std::string& bytes, uint32_t n, uint32_t receiver = 0) {
  return owner(bytes, n, receiver, Dispatch::ByTransaction);
}

}  // namespace

TEST_CASE("owner_of: one worker owns everything") {
  CHECK(owner(request("INVITE", ";branch=z9hG4bKabc"), 1, 0) == 0);
  CHECK(owner(response(200, sb::core::make_branch(3, 7)), 1, 0) == 0);
}

TEST_CASE("owner_of: a response to our branch goes to the worker in the branch, wherever it was read") {
  for (uint32_t w = 0; w < 8; ++w) {
    std::string branch = sb::core::make_branch(w, 0xabcdef + w);
    for (uint32_t receiver = 0; receiver < 8; ++receiver) {
      CHECK(owner(response(180, branch), 8, receiver) == w);
      CHECK(owner(response(200, branch, "10.0.0.1:5080", "other-call"), 8, receiver) == w);
    }
  }
}

TEST_CASE("owner_of: our branch naming a worker we do not have stays with the receiver") {
  std::string branch = sb::core::make_branch(9, 1);
  CHECK(owner(response(200, branch), 4, 2) == 2);
}

TEST_CASE("owner_of: a request, or a response to a foreign branch, belongs to the worker that read it") {
  // The same INVITE, its ACK and its CANCEL: wherever SO_REUSEPORT delivered them (the same
  // socket for one source), that worker owns them; nothing is hashed.
  for (uint32_t receiver = 0; receiver < 4; ++receiver) {
    CHECK(owner(request("INVITE", ";branch=z9hG4bK776asdhds"), 4, receiver) == receiver);
    CHECK(owner(request("ACK", ";branch=z9hG4bK776asdhds", "192.0.2.10:5060", "a84b4c76e66710", "ACK"), 4,
                receiver) == receiver);
    CHECK(owner(request("CANCEL", ";branch=z9hG4bK776asdhds"), 4, receiver) == receiver);
    CHECK(owner(request("OPTIONS", ""), 4, receiver) == receiver);  // RFC 2543: no branch
    CHECK(owner(response(200, "z9hG4bKforeign"), 4, receiver) == receiver);
  }
}

TEST_CASE("owner_of, by transaction: the INVITE's retransmission, ACK and CANCEL meet it, wherever read") {
  for (uint32_t n : {2u, 3u, 4u, 7u, 16u}) {
    for (int i = 0; i < 50; ++i) {
      std::string params = ";branch=z9hG4bK" + std::to_string(i * 7919) + ";rport";
      uint32_t o = hashed(request("INVITE", params), n, 0);
      CHECK(o < n);
      for (uint32_t receiver = 0; receiver < n; ++receiver) {
        CHECK(hashed(request("INVITE", params), n, receiver) == o);
        CHECK(hashed(request("CANCEL", params), n, receiver) == o);
        CHECK(hashed(request("ACK", params, "192.0.2.10:5060", "changed-call-id"), n, receiver) == o);
      }
    }
  }
  // §17.2.3 matches the sent-by case-insensitively.
  std::string p = ";branch=z9hG4bKcase";
  CHECK(hashed(request("INVITE", p, "Host.Example.COM:5060"), 8) == hashed(request("CANCEL", p, "host.example.com:5060"), 8));
  // So does the transaction layer with the branch (TransactionKey): its owner must agree.
  for (int i = 0; i < 20; ++i) {
    std::string b = "casebranch" + std::to_string(i);
    std::string upper = b;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(hashed(request("INVITE", ";branch=z9hG4bK" + b), 8) ==
          hashed(request("CANCEL", ";branch=z9hG4bK" + upper), 8));
  }
  // RFC 2543 peers (no magic cookie): the Call-ID decides.
  for (int i = 0; i < 30; ++i) {
    std::string cid = "legacy-" + std::to_string(i);
    uint32_t o = hashed(request("INVITE", ";branch=old1", "192.0.2.10:5060", cid), 5);
    CHECK(hashed(request("BYE", "", "192.0.2.10:5060", cid), 5, 3) == o);
  }
}

TEST_CASE("owner_of, by transaction: one source's requests spread over every worker; our responses stay put") {
  std::set<uint32_t> owners;
  for (int i = 0; i < 200; ++i) owners.insert(hashed(request("INVITE", ";branch=z9hG4bK" + std::to_string(i)), 4));
  CHECK(owners.size() == 4);
  for (uint32_t w = 0; w < 4; ++w) CHECK(hashed(response(180, sb::core::make_branch(w, 9)), 4, (w + 1) % 4) == w);
}
