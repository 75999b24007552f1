// The engine: compiling generations, script errors, the instruction limit, decisions,
// coroutines that wait, generations pinned across publish(), handles that die.
#include <lua.hpp>

#include <string>
#include <vector>

#include "scripts/engine/async.h"
#include "scripts/engine/bridge.h"
#include "test/scripts/script_test_util.h"

using namespace sb::scripts;
using namespace sb::scripts::test;
using sb::proxy::Decision;

namespace {

// The test-only async service: test.wait(label) suspends the request until the test resumes
// it; its results are what the test pushes.
struct Wait {
  uint64_t id;
  std::string label;
};
std::vector<Wait> g_waits;

int test_wait(lua_State* L) {
  const char* label = luaL_optstring(L, 1, "");
  const char* err = nullptr;
  uint64_t id = begin_wait(L, &err);
  if (!id) return luaL_error(L, "%s", err);
  g_waits.push_back({id, label});
  return lua_yield(L, 0);
}

CompileOptions with_wait() {
  CompileOptions o;
  o.natives.push_back({"test", "wait", test_wait});
  return o;
}

std::function<int(lua_State*)> push_string(std::string s) {
  return [s](lua_State* T) {
    lua_pushlstring(T, s.data(), s.size());
    return 1;
  };
}

std::string invite() { return sip_request("INVITE", "sip:bob@example.com"); }

}  // namespace

TEST_CASE("a syntax error comes back as FILE:LINE: message") {
  std::string path = write_script("function on_request(req)\n  local x = = 1\nend\n");
  auto r = compile(path, {});
  REQUIRE_FALSE(r.ok());
  CHECK_MESSAGE(r.error().rfind(path + ":2:", 0) == 0, r.error());
}

TEST_CASE("an error in the top level comes back with its line") {
  std::string path = write_script("local t = {}\n\nerror(\"no config here\")\n"
                                  "function on_request(req) end\n");
  auto r = compile(path, {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error() == path + ":3: no config here");
}

TEST_CASE("a missing file is a compile error") {
  auto r = compile(temp_dir() + "/does-not-exist.lua", {});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().find("cannot open") != std::string::npos);
}

TEST_CASE("on_request must be a function; on_failure a function or nil") {
  auto missing = compile(write_script("function on_reqest(req) end\n"), {});
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().find("no on_request") != std::string::npos);

  auto number = compile(write_script("on_request = 5\n"), {});
  REQUIRE_FALSE(number.ok());
  CHECK(number.error().find("on_request must be a function, not a number") != std::string::npos);

  auto bad_failure =
      compile(write_script("function on_request(req) end\non_failure = \"later\"\n"), {});
  REQUIRE_FALSE(bad_failure.ok());
  CHECK(bad_failure.error().find("on_failure must be a function or nil") != std::string::npos);

  auto ok = compile(write_script("function on_request(req) end\n"), {});
  REQUIRE(ok.ok());
  CHECK_FALSE((*ok)->has_on_failure());
}

TEST_CASE("generations are numbered") {
  std::string path = write_script("function on_request(req) end\n");
  CompileOptions opts;
  opts.number = 42;
  CHECK(must_compile(path, {}, opts)->number() == 42);
  auto a = must_compile(path);
  auto b = must_compile(path);
  CHECK(b->number() > a->number());
  CHECK(a->path() == path);
  CHECK(a->memory_bytes() > 0);
}

TEST_CASE("a script error answers 500, is counted, and the next request works") {
  Harness h = Harness::text(
      "function on_request(req)\n"
      "  if req.method == \"INVITE\" then\n"
      "    error(\"boom\")\n"
      "  end\n"
      "  return req:reply(200)\n"
      "end\n");
  FakeRequest inv(invite());
  Decision d = h.request(inv);
  CHECK(d.kind == Decision::Kind::Reply);
  CHECK(d.status == 500);
  CHECK(d.reason == "Script Error");
  CHECK(d.origin == h.policy.generation()->path() + ":3");
  CHECK(h.policy.counters().errors == 1);
  CHECK(h.policy.last_error().find(":3: boom") != std::string::npos);

  FakeRequest opt(sip_request("OPTIONS", "sip:bob@example.com"));
  d = h.request(opt);
  CHECK(d.status == 200);
  CHECK(h.policy.counters().errors == 1);
  CHECK(h.policy.counters().requests == 2);

  FakeRequest again(invite());
  CHECK(h.request(again).status == 500);
  CHECK(h.policy.counters().errors == 2);
}

TEST_CASE("a runtime error (indexing nil) answers 500") {
  Harness h = Harness::text("function on_request(req)\n  local x = nil\n  return x.y\nend\n");
  FakeRequest r(invite());
  CHECK(h.request(r).status == 500);
  CHECK(h.policy.last_error().find("attempt to index") != std::string::npos);
}

TEST_CASE("the instruction limit stops a runaway script") {
  ScriptLimits limits;
  limits.max_instructions = 100000;
  SUBCASE("while true do end") {
    Harness h = Harness::text("function on_request(req)\n  while true do end\nend\n", limits);
    FakeRequest r(invite());
    Decision d = h.request(r);
    CHECK(d.status == 500);
    CHECK(d.reason == "Script Error");
    CHECK(h.policy.counters().limit_exceeded == 1);
    CHECK(h.policy.counters().errors == 1);
    CHECK(h.policy.last_error().find("instruction limit exceeded") != std::string::npos);
  }
  SUBCASE("pcall cannot hold it off") {
    Harness h = Harness::text(
        "function on_request(req)\n"
        "  while true do pcall(function() while true do end end) end\n"
        "end\n",
        limits);
    FakeRequest r(invite());
    CHECK(h.request(r).status == 500);
    CHECK(h.policy.counters().limit_exceeded == 1);
  }
  SUBCASE("nor a coroutine the script creates") {
    Harness h = Harness::text(
        "function on_request(req)\n"
        "  local ok = coroutine.resume(coroutine.create(function() while true do end end))\n"
        "  return req:reply(200)\n"
        "end\n",
        limits);
    FakeRequest r(invite());
    CHECK(h.request(r).status == 500);
    CHECK(h.policy.counters().limit_exceeded == 1);
  }
  SUBCASE("a well-behaved request after a runaway one is fine") {
    Harness h = Harness::text(
        "function on_request(req)\n"
        "  if req.method == \"INVITE\" then while true do end end\n"
        "  local n = 0\n"
        "  for i = 1, 1000 do n = n + i end\n"
        "  return req:reply(200)\n"
        "end\n",
        limits);
    FakeRequest r(invite());
    CHECK(h.request(r).status == 500);
    for (int i = 0; i < 200; ++i) {  // the budget is per request, not cumulative
      FakeRequest o(sip_request("OPTIONS", "sip:bob@example.com"));
      REQUIRE(h.request(o).status == 200);
    }
  }
  SUBCASE("the top level has the same budget") {
    auto r = compile(write_script("while true do end\nfunction on_request(req) end\n"), limits);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().find("instruction limit exceeded") != std::string::npos);
  }
}

TEST_CASE("no decision answers 500 and names the script") {
  Harness h = Harness::text(
      "function on_request(req)\n"
      "  if req.method == \"INVITE\" then return req:relay({}) end\n"
      "end\n");
  FakeRequest r(invite());
  Decision d = h.request(r);
  CHECK(d.kind == Decision::Kind::Reply);
  CHECK(d.status == 500);
  CHECK(d.origin == h.policy.generation()->path());
  CHECK(h.policy.counters().no_decision == 1);
  CHECK(h.policy.counters().errors == 0);

  FakeRequest o(sip_request("OPTIONS", "sip:bob@example.com"));
  CHECK(h.request(o).status == 500);
  CHECK(h.policy.counters().no_decision == 2);
}

TEST_CASE("a later verb replaces the earlier decision; origin is the verb's line") {
  Harness h = Harness::text(
      "function on_request(req)\n"
      "  req:reply(486)\n"
      "  req:relay(\"sip:bob@192.0.2.7\")\n"
      "end\n");
  FakeRequest r(invite());
  Decision d = h.request(r);
  CHECK(d.kind == Decision::Kind::Relay);
  CHECK(d.origin == h.policy.generation()->path() + ":3");
}

TEST_CASE("globals live across the requests of one generation") {
  Harness h = Harness::text(
      "count = 0\n"
      "function on_request(req)\n"
      "  count = count + 1\n"
      "  return req:reply(200, \"n=\" .. count)\n"
      "end\n");
  for (int i = 1; i <= 3; ++i) {
    FakeRequest r(invite());
    CHECK(h.request(r).reason == "n=" + std::to_string(i));
  }
}

TEST_CASE("coroutines the script creates work inside on_request") {
  Harness h = Harness::text(
      "function on_request(req)\n"
      "  local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)\n"
      "  local s = gen() + gen() + gen()\n"
      "  return req:reply(200, \"sum \" .. s)\n"
      "end\n");
  FakeRequest r(invite());
  CHECK(h.request(r).reason == "sum 6");
}

TEST_CASE("a request waits on an async call and is resumed") {
  g_waits.clear();
  Harness h = Harness::text(
      "function on_request(req)\n"
      "  local answer = test.wait(req.method)\n"
      "  return req:reply(200, answer .. \" for \" .. req.method)\n"
      "end\n",
      {}, with_wait());
  FakeRequest a(invite());
  FakeRequest b(sip_request("OPTIONS", "sip:bob@example.com"));
  Outcome oa, ob;
  h.policy.on_request(a, capture(oa));
  h.policy.on_request(b, capture(ob));
  CHECK(oa.calls == 0);
  CHECK(ob.calls == 0);
  CHECK(h.policy.waiting() == 2);
  CHECK(h.policy.counters().waits == 2);
  REQUIRE(g_waits.size() == 2);
  CHECK(g_waits[0].label == "INVITE");
  CHECK(g_waits[1].label == "OPTIONS");

  // Resumed in the other order; each finishes with its own request.
  CHECK(h.policy.resume(g_waits[1].id, push_string("second")));
  CHECK(ob.calls == 1);
  CHECK(ob.d.reason == "second for OPTIONS");
  CHECK(oa.calls == 0);
  CHECK(h.policy.resume(g_waits[0].id, push_string("first")));
  CHECK(oa.calls == 1);
  CHECK(oa.d.reason == "first for INVITE");
  CHECK(h.policy.waiting() == 0);
  CHECK_FALSE(h.policy.resume(g_waits[0].id, push_string("again")));
}

TEST_CASE("a request can wait more than once, and fail after waiting") {
  g_waits.clear();
  Harness h = Harness::text(
      "function on_request(req)\n"
      "  local x = test.wait(\"one\")\n"
      "  local y = test.wait(\"two\")\n"
      "  if y == \"fail\" then error(\"after waiting\") end\n"
      "  return req:reply(200, x .. y)\n"
      "end\n",
      {}, with_wait());
  FakeRequest a(invite());
  Outcome o;
  h.policy.on_request(a, capture(o));
  REQUIRE(g_waits.size() == 1);
  h.policy.resume(g_waits[0].id, push_string("a"));
  REQUIRE(g_waits.size() == 2);
  CHECK(o.calls == 0);
  h.policy.resume(g_waits[1].id, push_string("b"));
  CHECK(o.calls == 1);
  CHECK(o.d.reason == "ab");

  FakeRequest c(invite());
  Outcome oc;
  h.policy.on_request(c, capture(oc));
  h.policy.resume(g_waits[2].id, push_string("a"));
  h.policy.resume(g_waits[3].id, push_string("fail"));
  CHECK(oc.calls == 1);
  CHECK(oc.d.status == 500);
  CHECK(h.policy.last_error().find("after waiting") != std::string::npos);
}

TEST_CASE("a waiting request's handle stays valid for other requests until it decides") {
  g_waits.clear();
  Harness h = Harness::text(
      "waiting = nil\n"
      "function on_request(req)\n"
      "  if req.method == \"INVITE\" then\n"
      "    waiting = req\n"
      "    test.wait()\n"
      "    collectgarbage()\n"
      "    return req:reply(200, req.method)\n"
      "  end\n"
      "  local ok, m = pcall(function() return waiting.method end)\n"
      "  return req:reply(200, tostring(ok) .. \" \" .. (ok and m or \"stale\"))\n"
      "end\n",
      {}, with_wait());
  FakeRequest a(invite());
  Outcome oa;
  h.policy.on_request(a, capture(oa));
  REQUIRE(g_waits.size() == 1);
  // Another request reads the waiting one's handle: still alive, still that request.
  FakeRequest b(sip_request("OPTIONS", "sip:bob@example.com"));
  CHECK(h.request(b).reason == "true INVITE");
  CHECK(h.policy.resume(g_waits[0].id, push_string("")));
  CHECK(oa.d.reason == "INVITE");
  // Once decided it is dead, whoever reads it.
  FakeRequest c(sip_request("OPTIONS", "sip:bob@example.com"));
  CHECK(h.request(c).reason == "false stale");
}

TEST_CASE("many coroutines reused: no handle outlives its request") {
  // The pooled coroutines keep a request's handle at the bottom of their stack; every run
  // must start on an empty one and see its own request.
  Harness h = Harness::text(
      "function on_request(req, ...)\n"
      "  local n = select('#', ...)\n"
      "  return req:reply(200, req.call_id .. \" \" .. n)\n"
      "end\n");
  for (int i = 0; i < 100; ++i) {
    std::string msg = sip_request("OPTIONS", "sip:bob@example.com");
    size_t at = msg.find("3848276298220188511");
    msg.replace(at, 19, "call-" + std::to_string(i));
    FakeRequest r(msg);
    Decision d = h.request(r);
    CHECK(d.reason == "call-" + std::to_string(i) + "@atlanta.example.com 0");
  }
}

TEST_CASE("a request can wait inside pcall") {
  g_waits.clear();
  Harness h = Harness::text(
      "function on_request(req)\n"
      "  local ok, v = pcall(test.wait, \"in pcall\")\n"
      "  return req:reply(200, tostring(ok) .. \" \" .. v)\n"
      "end\n",
      {}, with_wait());
  FakeRequest a(invite());
  Outcome o;
  h.policy.on_request(a, capture(o));
  REQUIRE(g_waits.size() == 1);
  CHECK(g_waits[0].label == "in pcall");
  h.policy.resume(g_waits[0].id, push_string("resumed"));
  CHECK(o.d.reason == "true resumed");
}

TEST_CASE("many requests leave no garbage behind") {
  Harness h = Harness::text(
      "function on_request(req)\n"
      "  local c = location.lookup(req.uri)\n"
      "  req:set_header(\"X-N\", tostring(#c))\n"
      "  if req.method == \"BYE\" then error(\"bye\") end\n"
      "  return req:relay(c)\n"
      "end\n");
  h.services.bind("sip:bob@example.com", target("sip:bob@192.0.2.50"));
  auto run = [&](int n) {
    for (int i = 0; i < n; ++i) {
      FakeRequest r(sip_request(i % 10 == 0 ? "BYE" : "INVITE", "sip:bob@example.com"));
      h.request(r);
    }
    lua_gc(h.policy.generation()->state().L, LUA_GCCOLLECT);
    return h.policy.generation()->memory_bytes();
  };
  size_t warm = run(200);
  size_t later = run(3000);
  CHECK(later < warm + warm / 4);
  CHECK(h.policy.counters().errors == 320);
}

TEST_CASE("waiting is refused where it cannot work") {
  SUBCASE("at the top level") {
    auto r = compile(write_script("test.wait()\nfunction on_request(req) end\n"), {}, with_wait());
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().find("cannot wait outside a request") != std::string::npos);
  }
  SUBCASE("inside a coroutine the script created") {
    Harness h = Harness::text(
        "function on_request(req)\n"
        "  local ok, err = coroutine.resume(coroutine.create(function() test.wait() end))\n"
        "  return req:reply(200, err)\n"
        "end\n",
        {}, with_wait());
    FakeRequest r(invite());
    Decision d = h.request(r);
    CHECK(d.status == 200);
    CHECK(d.reason.find("cannot wait inside a coroutine") != std::string::npos);
  }
  SUBCASE("a bare coroutine.yield in on_request is an error") {
    Harness h = Harness::text("function on_request(req)\n  coroutine.yield()\nend\n");
    FakeRequest r(invite());
    CHECK(h.request(r).status == 500);
    CHECK(h.policy.waiting() == 0);
    CHECK(h.policy.last_error().find("yielded") != std::string::npos);
  }
}

TEST_CASE("a request keeps its generation across publish(); on_failure runs in it") {
  std::string v1 = write_script(
      "function on_request(req)\n"
      "  if req.method == \"MESSAGE\" then return req:reply(200, \"v1\") end\n"
      "  req:record_route()\n"
      "  return req:relay(\"sip:bob@192.0.2.7\")\n"
      "end\n"
      "function on_failure(req, best)\n"
      "  return req:relay(\"sip:voicemail@192.0.2.9\")\n"
      "end\n");
  std::string v2 = write_script(
      "function on_request(req) return req:reply(200, \"v2\") end\n"
      "function on_failure(req, best) return req:reply(487, \"v2 failure\") end\n");
  FakeServices services;
  auto g1 = must_compile(v1);
  std::weak_ptr<ScriptGeneration> weak1 = g1;
  LuaPolicy policy(std::move(g1), services);

  auto a = std::make_unique<FakeRequest>(invite());
  Outcome o;
  policy.on_request(*a, capture(o));
  REQUIRE(o.calls == 1);
  CHECK(o.d.kind == Decision::Kind::Relay);

  policy.publish(must_compile(v2));
  FakeRequest b(sip_request("MESSAGE", "sip:bob@example.com"));
  Outcome ob;
  policy.on_request(b, capture(ob));
  CHECK(ob.d.reason == "v2");
  CHECK_FALSE(weak1.expired());  // request a still holds it

  // a's branches failed: its on_failure is v1's, and v1's record_route still applies.
  sb::proxy::FailureInfo best{486, "Busy Here", {"sip:bob@192.0.2.7"}};
  Outcome of;
  policy.on_failure(*a, best, capture(of));
  REQUIRE(of.calls == 1);
  REQUIRE(of.d.kind == Decision::Kind::Relay);
  REQUIRE(of.d.targets.size() == 1);
  CHECK(of.d.targets[0].uri == "sip:voicemail@192.0.2.9");
  CHECK(of.d.relay.record_route);

  // The voicemail branch failed too: still v1 (and v1 relays again).
  Outcome of2;
  policy.on_failure(*a, best, capture(of2));
  CHECK(of2.d.kind == Decision::Kind::Relay);

  // A request v1 never relayed gets v2's on_failure.
  FakeRequest d(invite());
  Outcome od;
  policy.on_failure(d, best, capture(od));  // never relayed by v1: runs in v2
  CHECK(od.d.reason == "v2 failure");
}

TEST_CASE("an old generation is closed when its last request finishes") {
  g_waits.clear();
  std::string v1 = write_script(
      "function on_request(req) return req:reply(200, test.wait() .. \" v1\") end\n");
  std::string v2 = write_script("function on_request(req) return req:reply(200, \"v2\") end\n");
  FakeServices services;
  auto g1 = must_compile(v1, {}, with_wait());
  std::weak_ptr<ScriptGeneration> weak1 = g1;
  LuaPolicy policy(std::move(g1), services);
  FakeRequest a(invite());
  Outcome o;
  policy.on_request(a, capture(o));
  policy.publish(must_compile(v2));
  CHECK_FALSE(weak1.expired());
  REQUIRE(g_waits.size() == 1);
  policy.resume(g_waits[0].id, push_string("resumed in"));
  CHECK(o.d.reason == "resumed in v1");
  CHECK(weak1.expired());
}

TEST_CASE("on_failure: no decision sends the best response; absent is the same") {
  Harness h = Harness::text(
      "function on_request(req) return req:relay() end\n"
      "function on_failure(req, best)\n"
      "  if best.status == 486 then return req:reply(600, best.reason .. \" everywhere\") end\n"
      "  if best.status == 404 then error(\"failing in on_failure\") end\n"
      "  assert(best.attempted[1] == \"sip:bob@192.0.2.7\")\n"
      "end\n");
  FakeRequest r(invite());
  h.request(r);
  Decision d = h.failure(r, 408, "Request Timeout", {"sip:bob@192.0.2.7"});
  CHECK(d.kind == Decision::Kind::None);
  CHECK(h.policy.counters().failures == 1);
  d = h.failure(r, 486, "Busy Here", {"sip:bob@192.0.2.7"});
  CHECK(d.kind == Decision::Kind::Reply);
  CHECK(d.status == 600);
  CHECK(d.reason == "Busy Here everywhere");
  d = h.failure(r, 404, "Not Found");
  CHECK(d.status == 500);
  CHECK(h.policy.counters().errors == 1);

  Harness none = Harness::text("function on_request(req) return req:relay() end\n");
  FakeRequest r2(invite());
  none.request(r2);
  CHECK(none.failure(r2, 503).kind == Decision::Kind::None);
}

TEST_CASE("a request handle used after its decision raises an error") {
  Harness h = Harness::text(
      "saved = nil\n"
      "function on_request(req)\n"
      "  if saved then return req:reply(200, saved.method) end\n"
      "  saved = req\n"
      "  return req:reply(200, tostring(req))\n"
      "end\n");
  FakeRequest a(invite());
  CHECK(h.request(a).reason == "request INVITE sip:bob@example.com");
  FakeRequest b(invite());
  Decision d = h.request(b);
  CHECK(d.status == 500);
  CHECK(h.policy.last_error().find("request is no longer valid") != std::string::npos);
  CHECK(h.policy.last_error().find(":3:") != std::string::npos);
}

TEST_CASE("a stale handle's methods fail too, and tostring says so") {
  Harness h = Harness::text(
      "saved = nil\n"
      "function on_request(req)\n"
      "  if saved then\n"
      "    local ok, err = pcall(saved.reply, saved, 200)\n"
      "    return req:reply(200, tostring(saved) .. \"|\" .. tostring(ok) .. \"|\" .. err)\n"
      "  end\n"
      "  saved = req\n"
      "  return req:reply(200)\n"
      "end\n");
  FakeRequest a(invite());
  h.request(a);
  FakeRequest b(invite());
  Decision d = h.request(b);
  CHECK(d.status == 200);
  CHECK(d.reason.find("request (no longer valid)|false|") == 0);
  CHECK(d.reason.find("request is no longer valid") != std::string::npos);
}

TEST_CASE("destroying a policy with waiting requests is clean") {
  g_waits.clear();
  FakeServices services;
  auto gen = must_compile(
      write_script("function on_request(req) test.wait() return req:reply(200) end\n"), {},
      with_wait());
  std::weak_ptr<ScriptGeneration> weak = gen;
  {
    LuaPolicy policy(std::move(gen), services);
    FakeRequest a(invite());
    Outcome o;
    policy.on_request(a, capture(o));
    CHECK(policy.waiting() == 1);
  }
  CHECK(weak.expired());
}
