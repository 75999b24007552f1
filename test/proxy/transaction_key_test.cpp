#include "proxy/transaction_key.h"

#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "transaction_fixture.h"

using namespace sb::proxy;
using namespace sb::proxy::test;

TEST_CASE("client key: request and its response share branch + CSeq method (§17.1.3)") {
  Req r = downstream();
  Msg req(r.text());
  Msg resp(response_to(req.text, 180));
  CHECK(client_key(req.m) == client_key(resp.m));
  CHECK(TransactionKeyHash{}(client_key(req.m)) == TransactionKeyHash{}(client_key(resp.m)));

  // CANCEL shares the INVITE's branch but is its own transaction.
  Req c = downstream("CANCEL");
  Msg cancel(c.text());
  CHECK_FALSE(client_key(cancel.m) == client_key(req.m));
}

TEST_CASE("server key: ACK matches INVITE; branch and sent-by compare without case (§17.2.3)") {
  Msg invite(Req{}.text());
  Req a;
  a.method = "ACK";
  a.to_tag = "tt1";
  Msg ack(a.text());
  CHECK(server_key(ack.m) == server_key(invite.m));
  CHECK(server_key(ack.m).method == "INVITE");

  Req upper;
  upper.branch = "z9hG4bKUP1";  // the same branch in other case
  upper.sent_by = "192.0.2.10:5060";
  Msg up(upper.text());
  CHECK(server_key(up.m) == server_key(invite.m));
  CHECK(TransactionKeyHash{}(server_key(up.m)) == TransactionKeyHash{}(server_key(invite.m)));

  Req other_host;
  other_host.sent_by = "192.0.2.11:5060";
  Msg oh(other_host.text());
  CHECK_FALSE(server_key(oh.m) == server_key(invite.m));

  Req bye;
  bye.method = "BYE";
  Msg b(bye.text());
  CHECK_FALSE(server_key(b.m) == server_key(invite.m));
  // find_server_invite's form: a CANCEL looked up as INVITE.
  Req c;
  c.method = "CANCEL";
  Msg cancel(c.text());
  CHECK_FALSE(server_key(cancel.m) == server_key(invite.m));
  CHECK(server_key(cancel.m, "INVITE") == server_key(invite.m));
}

TEST_CASE("server key: RFC 2543 fallback uses Call-ID, CSeq number, From tag, top Via") {
  Req r;
  r.branch = "";  // no branch at all
  Msg invite(r.text());
  CHECK(server_key(invite.m).branch.empty());
  CHECK(server_key(invite.m).call_id == "call-1@192.0.2.10");

  Req a = r;
  a.method = "ACK";
  a.to_tag = "whatever";  // the To tag is not part of the key
  Msg ack(a.text());
  CHECK(server_key(ack.m) == server_key(invite.m));

  Req other_tag = r;
  other_tag.from_tag = "ft2";
  Msg ot(other_tag.text());
  CHECK_FALSE(server_key(ot.m) == server_key(invite.m));

  Req other_cseq = r;
  other_cseq.cseq = 2;
  Msg oc(other_cseq.text());
  CHECK_FALSE(server_key(oc.m) == server_key(invite.m));

  // A branch without the magic cookie is an RFC 2543 branch: the fallback applies.
  Req old_branch = r;
  old_branch.branch = "1234";
  Msg ob(old_branch.text());
  CHECK(server_key(ob.m).branch.empty());
  CHECK_FALSE(server_key(ob.m) == server_key(invite.m));  // the raw Via differs
}

TEST_CASE("StoredKey owns a copy equal to the view it was built from") {
  StoredKey stored;
  {
    Req r;
    r.branch = "";
    Msg m(r.text());
    stored.assign(server_key(m.m));
    Msg again(r.text());
    CHECK(stored.view() == server_key(again.m));
  }
  // The message is gone; the stored key still reads.
  CHECK(stored.view().call_id == "call-1@192.0.2.10");
  CHECK(stored.view().from_tag == "ft1");
  CHECK(stored.view().method == "INVITE");
  CHECK(stored.view().cseq == 1);
}

TEST_CASE("key hash: case-folded fields hash alike; the low bits spread (the tables index by them)") {
  TransactionKey a, b;
  a.branch = "z9hG4bK.abcDEF0123456789xyz";  // longer than one 8-byte word, with a tail
  b.branch = "Z9HG4BK.ABCdef0123456789XYZ";
  a.sent_by = "Proxy.Example.COM:5060";
  b.sent_by = "proxy.example.com:5060";
  a.method = b.method = "INVITE";
  CHECK(a == b);
  CHECK(TransactionKeyHash{}(a) == TransactionKeyHash{}(b));
  b.method = "invite";  // the method is case-sensitive (§7.1)
  CHECK_FALSE(a == b);
  CHECK(TransactionKeyHash{}(a) != TransactionKeyHash{}(b));

  // Field boundaries count: ("ab", "c") and ("a", "bc") are different keys.
  TransactionKey x, y;
  x.branch = "z9hG4bKab";
  x.sent_by = "c";
  y.branch = "z9hG4bKa";
  y.sent_by = "bc";
  CHECK(TransactionKeyHash{}(x) != TransactionKeyHash{}(y));

  // Branches as proxies write them (a shared prefix, a counter at the end): the low 12 bits
  // of 4096 keys hit about as many distinct slots as random values would (1 - 1/e: 2589).
  std::vector<std::string> branches;
  for (int i = 0; i < 4096; ++i) branches.push_back("z9hG4bK-sb1-" + std::to_string(i));
  std::set<size_t> slots;
  for (const auto& br : branches) {
    TransactionKey k;
    k.branch = br;
    k.sent_by = "127.0.0.1:5060";
    k.method = "INVITE";
    slots.insert(TransactionKeyHash{}(k) & 0xfff);
  }
  CHECK(slots.size() > 2450);
}
