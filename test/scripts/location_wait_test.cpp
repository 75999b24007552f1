// location.lookup with a shared location backend (docs/cluster.md): an AOR the table does not
// hold is read from the store while the request waits (its coroutine yields), then the script
// carries on with the bindings, or with nil, err when the store did not answer in time.
#include "test/scripts/script_test_util.h"

using namespace sb;
using namespace sb::scripts;
using namespace sb::scripts::test;

namespace {

const char* kScript = R"(
function on_request(req)
  local contacts, err = location.lookup(req.uri)
  if not contacts then return req:reply(500, err) end
  if #contacts == 0 then return req:reply(404, "Not Found") end
  return req:relay(contacts)
end
)";

}  // namespace

TEST_CASE("location.lookup: a miss waits for the shared store, then relays to what it had") {
  auto h = Harness::text(kScript);
  h.services.shared_store = true;
  FakeRequest r(sip_request("INVITE", "sip:bob@example.com"));
  Outcome o;
  h.policy.on_request(r, capture(o));
  CHECK(o.calls == 0);  // waiting
  REQUIRE(h.services.pending_lookups.size() == 1);
  // The store's answer lands in the table, then the request carries on.
  h.services.bind("sip:bob@example.com", target("sip:bob@192.0.2.7:5062"));
  h.services.pending_lookups[0](true);
  REQUIRE(o.calls == 1);
  CHECK(o.d.kind == proxy::Decision::Kind::Relay);
  REQUIRE(o.d.targets.size() == 1);
  CHECK(o.d.targets[0].uri == "sip:bob@192.0.2.7:5062");
}

TEST_CASE("location.lookup: the store not answering in time gives nil, err") {
  auto h = Harness::text(kScript);
  h.services.shared_store = true;
  FakeRequest r(sip_request("INVITE", "sip:bob@example.com"));
  Outcome o;
  h.policy.on_request(r, capture(o));
  REQUIRE(h.services.pending_lookups.size() == 1);
  h.services.pending_lookups[0](false);
  REQUIRE(o.calls == 1);
  CHECK(o.d.status == 500);
  CHECK(o.d.reason.find("did not answer in time") != std::string::npos);
}

TEST_CASE("location.lookup: an AOR the table holds, or a local backend, answers at once") {
  auto h = Harness::text(kScript);
  h.services.shared_store = true;
  h.services.bind("sip:alice@example.com", target("sip:alice@192.0.2.8"));
  FakeRequest r(sip_request("INVITE", "sip:alice@example.com"));
  CHECK(h.request(r).kind == proxy::Decision::Kind::Relay);
  h.services.shared_store = false;
  FakeRequest r2(sip_request("INVITE", "sip:carol@example.com"));
  CHECK(h.request(r2).status == 404);
  CHECK(h.services.pending_lookups.empty());
}
