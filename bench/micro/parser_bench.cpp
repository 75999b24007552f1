// Parse a typical ~900-byte INVITE and forward it with the splice (issue: parse + splice
// under 1.5 us). Run: build/bench/micro/bench_parser
#include <benchmark/benchmark.h>

#include <string>

#include "core/message.h"
#include "core/splice.h"

namespace {

const std::string kInvite =
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bK74bf9.1;rport\r\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;received=192.0.2.1\r\n"
    "Max-Forwards: 70\r\n"
    "Route: <sip:proxy.example.com;lr>\r\n"
    "From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    "CSeq: 31862 INVITE\r\n"
    "Contact: <sip:alice@client.atlanta.example.com;transport=udp>\r\n"
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n"
    "Supported: replaces, timer\r\n"
    "User-Agent: Example UA 1.0\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 301\r\n"
    "\r\n"
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\r\n"
    "s=-\r\n"
    "c=IN IP4 192.0.2.101\r\n"
    "t=0 0\r\n"
    "m=audio 49172 RTP/AVP 0 8 18 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:18 G729/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
    "a=x-padding:0123456789\r\n";

void BM_Parse(benchmark::State& state) {
  sb::core::Message m;
  for (auto _ : state) {
    auto st = m.parse(kInvite);
    benchmark::DoNotOptimize(st);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(kInvite.size()));
}
BENCHMARK(BM_Parse);

void BM_Splice(benchmark::State& state) {
  sb::core::Message m;
  (void)m.parse(kInvite);
  std::string out;
  std::string_view rr[] = {"<sip:192.0.2.10:5060;lr>"};
  sb::core::SpliceEdits e;
  e.request_uri = "sip:bob@192.0.2.200:5062";
  e.add_via = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK0.1a2b3c4d5e6f;rport";
  e.max_forwards = 69;
  e.remove_routes = 1;
  e.add_record_route = rr;
  for (auto _ : state) {
    std::string o;  // a fresh output buffer each time: the one allocation we count
    sb::core::splice(m, e, o);
    benchmark::DoNotOptimize(o.data());
  }
}
BENCHMARK(BM_Splice);

void BM_ParseAndSplice(benchmark::State& state) {
  sb::core::Message m;
  std::string_view rr[] = {"<sip:192.0.2.10:5060;lr>"};
  sb::core::SpliceEdits e;
  e.request_uri = "sip:bob@192.0.2.200:5062";
  e.add_via = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK0.1a2b3c4d5e6f;rport";
  e.max_forwards = 69;
  e.remove_routes = 1;
  e.add_record_route = rr;
  for (auto _ : state) {
    (void)m.parse(kInvite);
    std::string o;
    sb::core::splice(m, e, o);
    benchmark::DoNotOptimize(o.data());
  }
}
BENCHMARK(BM_ParseAndSplice);

}  // namespace

BENCHMARK_MAIN();
