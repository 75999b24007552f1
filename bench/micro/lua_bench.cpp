// The Lua routing path alone: scripts/default.lua's on_request through the real LuaPolicy and
// the real registrar and location service (memory backend), for the requests of a bench call
// and of a bench registration (bench/sipp/*.xml): an INVITE to a registered user (Record-Route,
// location.lookup, relay by q), the in-dialog ACK and BYE (relay along the route set), and a
// REGISTER refresh (registrar.save). Each on_request is one call of run_request(), so
//
//   LUA_BENCH_ITERATIONS=20000 valgrind --tool=callgrind --toggle-collect='*run_request*'
//       build-h2-rel/bench/micro/lua_bench --benchmark_filter=Invite
//
// counts the instructions of the requests only; the bench prints how many it ran (to stderr),
// so instructions per request = callgrind's total / that count. LUA_BENCH_ITERATIONS=N fixes
// the iterations of every benchmark (repeatable counts under callgrind: wall-clock times on
// a shared machine are not); LUA_BENCH_MAX_INSTRUCTIONS=0 runs without the instruction limit
// (its count hook costs about 7 % of an INVITE). The REGISTER refreshes one binding (the
// bench's register scenario creates a new one each time: more registrar work, same Lua).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "core/address.h"
#include "core/clock.h"
#include "core/message.h"
#include "location/location_service.h"
#include "proxy/local_identity.h"
#include "proxy/policy_services.h"
#include "proxy/registrar.h"
#include "proxy/routing_policy.h"
#include "scripts/engine/lua_policy.h"

namespace {

using namespace sb;

core::Peer udp_peer(const char* ip, uint16_t port) {
  core::Peer p;
  p.protocol = core::Protocol::Udp;
  p.endpoint = *core::Endpoint::parse(ip, port);
  return p;
}

// What the proxy core hands the policy: a parsed request, its source and the edits.
class BenchRequest final : public proxy::PolicyRequest {
 public:
  BenchRequest(std::string bytes, core::Peer from) : bytes_(std::move(bytes)), from_(from) {
    if (!msg_.parse(bytes_)) {
      std::fprintf(stderr, "lua_bench: a request does not parse\n");
      std::abort();
    }
  }
  const core::Message& message() const override { return msg_; }
  const core::Peer& source() const override { return from_; }
  proxy::RequestEdits& edits() override { return edits_; }
  bool routed_by_us() const override { return routed_by_us_; }

  // A fresh request each time, as the proxy core would give (the parse is not measured).
  void reset() {
    edits_ = {};
    auth = {};
  }
  bool routed_by_us_ = false;

 private:
  std::string bytes_;
  core::Message msg_;
  core::Peer from_;
  proxy::RequestEdits edits_;
};

// bench/sipp/call-uac.xml's INVITE, as SIPp sends it (callee "u1", domain 127.0.0.1).
std::string invite_request() {
  const std::string sdp =
      "v=0\r\n"
      "o=caller 1 1 IN IP4 127.0.0.1\r\n"
      "s=-\r\n"
      "c=IN IP4 127.0.0.1\r\n"
      "t=0 0\r\n"
      "m=audio 6000 RTP/AVP 0\r\n"
      "a=rtpmap:0 PCMU/8000\r\n";
  std::string s =
      "INVITE sip:u1@127.0.0.1 SIP/2.0\r\n"
      "Via: SIP/2.0/UDP 127.0.0.1:25061;rport;branch=z9hG4bK-4242-1-0\r\n"
      "From: \"bench\" <sip:caller@127.0.0.1>;tag=4242C1\r\n"
      "To: <sip:u1@127.0.0.1>\r\n"
      "Call-ID: 1-4242@127.0.0.1\r\n"
      "CSeq: 1 INVITE\r\n"
      "Contact: <sip:caller@127.0.0.1:25061>\r\n"
      "Max-Forwards: 70\r\n"
      "Content-Type: application/sdp\r\n";
  s += "Content-Length: " + std::to_string(sdp.size()) + "\r\n\r\n" + sdp;
  return s;
}

// After the proxy core consumed our Route (routed_by_us): Request-URI = the callee's Contact.
std::string in_dialog(const char* method, int cseq) {
  std::string s;
  s.append(method).append(" sip:u1@127.0.0.1:25070;transport=udp SIP/2.0\r\n");
  s += "Via: SIP/2.0/UDP 127.0.0.1:25061;rport;branch=z9hG4bK-4242-1-";
  s += std::to_string(cseq + 4) + "\r\n";
  s += "Route: <sip:127.0.0.1:25060;lr>\r\n";
  s += "From: \"bench\" <sip:caller@127.0.0.1>;tag=4242C1\r\n";
  s += "To: <sip:u1@127.0.0.1>;tag=7777SIPpTag011\r\n";
  s += "Call-ID: 1-4242@127.0.0.1\r\n";
  s.append("CSeq: ").append(std::to_string(cseq)).append(" ").append(method).append("\r\n");
  s += "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
  return s;
}

// bench/sipp/register.xml's REGISTER for `user` with this Call-ID.
std::string register_request(const char* user, const char* call_id) {
  std::string s = "REGISTER sip:127.0.0.1 SIP/2.0\r\n";
  s += "Via: SIP/2.0/UDP 127.0.0.1:25070;rport;branch=z9hG4bK-5151-1-0\r\n";
  s.append("From: <sip:").append(user).append("@127.0.0.1>;tag=5151R1\r\n");
  s.append("To: <sip:").append(user).append("@127.0.0.1>\r\n");
  s.append("Call-ID: ").append(call_id).append("\r\n");
  s += "CSeq: 1 REGISTER\r\n";
  s.append("Contact: <sip:").append(user).append("@127.0.0.1:25070;transport=udp>\r\n");
  s += "Max-Forwards: 70\r\nExpires: 3600\r\nUser-Agent: sipp-test\r\nContent-Length: 0\r\n\r\n";
  return s;
}

// One worker's script side: the shipped script over the real registrar and location table.
struct World {
  core::FakeClock clock;
  location::LocationService location{clock, settings(), nullptr};
  proxy::Registrar registrar{location, clock, registrar_settings()};
  proxy::LocalIdentity identity{{listener()}, {"127.0.0.1", "localhost"}};
  proxy::RegistrarServices services{registrar, location, identity, false};
  std::unique_ptr<scripts::LuaPolicy> policy;
  uint64_t decided = 0;

  World() {
    if (!location.start()) std::abort();
    // LUA_BENCH_MAX_INSTRUCTIONS=0 runs without the instruction limit (and its count hook).
    scripts::ScriptLimits limits;
    if (const char* m = std::getenv("LUA_BENCH_MAX_INSTRUCTIONS"))
      limits.max_instructions = std::strtoull(m, nullptr, 10);
    auto gen = scripts::compile(std::string(SB_SOURCE_DIR) + "/scripts/default.lua", limits);
    if (!gen) {
      std::fprintf(stderr, "lua_bench: %s\n", gen.error().c_str());
      std::abort();
    }
    policy = std::make_unique<scripts::LuaPolicy>(*gen, services);
    // The callee, registered through the script like the bench's UAS.
    BenchRequest reg(register_request("u1", "reg-u1@127.0.0.1"), udp_peer("127.0.0.1", 25070));
    if (request(reg) != proxy::Decision::Kind::Reply || last_status != 200) {
      std::fprintf(stderr, "lua_bench: the callee's REGISTER was not accepted (%d)\n", last_status);
      std::abort();
    }
  }
  static location::Settings settings() {
    location::Settings s;
    s.sweep_interval_ms = 0;
    return s;
  }
  static proxy::RegistrarSettings registrar_settings() {
    proxy::RegistrarSettings s;
    s.domains = {"127.0.0.1", "localhost"};
    return s;
  }
  static proxy::LocalListener listener() {
    proxy::LocalListener l;
    l.address = l.host = "127.0.0.1";
    l.port = 25060;
    l.family = AF_INET;
    return l;
  }

  proxy::Decision::Kind last_kind = proxy::Decision::Kind::None;
  int last_status = 0;
  // The proxy core's callback captures `this` and an id: no allocation in std::function.
  proxy::Decision::Kind request(BenchRequest& r) {
    r.reset();
    policy->on_request(r, [this](proxy::Decision d) {
      ++decided;
      last_kind = d.kind;
      last_status = d.status;
    });
    return last_kind;
  }
};

uint64_t g_requests = 0;  // run_request calls, the divisor for callgrind's total

// The measured unit: one on_request, from the proxy core's call to the decision.
__attribute__((noinline)) proxy::Decision::Kind run_request(World& w, BenchRequest& r) {
  ++g_requests;
  return w.request(r);
}

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "lua_bench: unexpected decision: %s\n", what);
    std::abort();
  }
}

void warm_up(World& w, BenchRequest& r) {
  for (int i = 0; i < 200; ++i) w.request(r);
}

void BM_Invite(benchmark::State& state) {
  World w;
  BenchRequest r(invite_request(), udp_peer("127.0.0.1", 25061));
  warm_up(w, r);
  expect(w.last_kind == proxy::Decision::Kind::Relay, "INVITE not relayed");
  for (auto _ : state) benchmark::DoNotOptimize(run_request(w, r));
  expect(w.last_kind == proxy::Decision::Kind::Relay, "INVITE not relayed");
}

void BM_InDialog(benchmark::State& state, const char* method, int cseq) {
  World w;
  BenchRequest r(in_dialog(method, cseq), udp_peer("127.0.0.1", 25061));
  r.routed_by_us_ = true;
  warm_up(w, r);
  expect(w.last_kind == proxy::Decision::Kind::Relay, "in-dialog request not relayed");
  for (auto _ : state) benchmark::DoNotOptimize(run_request(w, r));
  expect(w.last_kind == proxy::Decision::Kind::Relay, "in-dialog request not relayed");
}

// A refresh of one binding, two Call-IDs taking turns (a new Call-ID replaces the binding,
// RFC 3261 §10.3 step 7; the same one would need a higher CSeq each time).
void BM_Register(benchmark::State& state) {
  World w;
  BenchRequest a(register_request("u2", "reg-a@127.0.0.1"), udp_peer("127.0.0.1", 25070));
  BenchRequest b(register_request("u2", "reg-b@127.0.0.1"), udp_peer("127.0.0.1", 25070));
  for (int i = 0; i < 100; ++i) {
    w.request(a);
    w.request(b);
  }
  expect(w.last_kind == proxy::Decision::Kind::Reply && w.last_status == 200, "REGISTER not 200");
  bool flip = false;
  for (auto _ : state) {
    benchmark::DoNotOptimize(run_request(w, flip ? b : a));
    flip = !flip;
  }
  expect(w.last_kind == proxy::Decision::Kind::Reply && w.last_status == 200, "REGISTER not 200");
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::internal::Benchmark* bs[] = {
      benchmark::RegisterBenchmark("BM_LuaInvite", BM_Invite),
      benchmark::RegisterBenchmark("BM_LuaAck", BM_InDialog, "ACK", 1),
      benchmark::RegisterBenchmark("BM_LuaBye", BM_InDialog, "BYE", 2),
      benchmark::RegisterBenchmark("BM_LuaRegister", BM_Register),
  };
  if (const char* n = std::getenv("LUA_BENCH_ITERATIONS"))
    for (auto* b : bs) b->Iterations(std::strtoll(n, nullptr, 10));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::fprintf(stderr, "lua_bench: %llu measured requests (run_request calls)\n",
               static_cast<unsigned long long>(g_requests));
  return 0;
}
