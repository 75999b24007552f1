// bench_memory: what the location table and the transaction layer cost in memory.
//
//   bench_memory [--bindings N] [--transactions M] [--json]
//
// Phase 1 registers N unique addresses-of-record, one Contact each, by handing parsed
// REGISTER requests to proxy::Registrar::handle (the code path a REGISTER takes in the
// proxy, memory backend), and prints the process RSS.
// Phase 2 sends M INVITEs for the first M of those users through a ProxyCore and its
// TransactionLayer (the C++ BuiltinPolicy: the decisions scripts/default.lua makes), with an
// env that discards every send and a clock that never moves, so each INVITE stays an open
// server transaction (Proceeding, 100 sent) plus an open client transaction (Calling) toward
// the callee, and prints the RSS again.
// It measures and prints; it asserts nothing (DESIGN.md "Speed is measured by bench/").
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "core/address.h"
#include "core/clock.h"
#include "core/message.h"
#include "location/location_service.h"
#include "proxy/builtin_policy.h"
#include "proxy/local_identity.h"
#include "proxy/policy_services.h"
#include "proxy/proxy_core.h"
#include "proxy/registrar.h"
#include "proxy/resolver.h"
#include "proxy/transaction.h"

using namespace sb;

namespace {

struct Memory {
  long rss_kb = 0;
  long hwm_kb = 0;
  size_t heap_bytes = 0;  // malloc'ed and in use
};

Memory memory_now() {
  Memory m;
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f)) {
      if (std::strncmp(line, "VmRSS:", 6) == 0) m.rss_kb = std::atol(line + 6);
      if (std::strncmp(line, "VmHWM:", 6) == 0) m.hwm_kb = std::atol(line + 6);
    }
    std::fclose(f);
  }
  m.heap_bytes = mallinfo2().uordblks;
  return m;
}

double mib(double kb) { return kb / 1024.0; }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

core::Peer udp_peer(const char* ip, uint16_t port) {
  core::Peer p;
  p.protocol = core::Protocol::Udp;
  p.endpoint = *core::Endpoint::parse(ip, port);
  return p;
}

// The callees' phones: 256 x 250 addresses in 10.0.0.0/8, so contacts differ like real ones.
void phone_address(uint32_t i, char* ip, size_t n) {
  std::snprintf(ip, n, "10.%u.%u.%u", (i >> 16) & 0xff, (i >> 8) & 0xff, 1 + i % 250);
}

// A REGISTER as a desk phone sends it: one Contact with +sip.instance, a User-Agent, no body
// (~520 bytes). `plain`: a Contact with nothing but the URI.
size_t write_register(char* buf, size_t n, uint32_t i, bool plain) {
  char ip[32];
  phone_address(i, ip, sizeof ip);
  if (plain) {
    int len = std::snprintf(
        buf, n,
        "REGISTER sip:example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP %s:5060;rport;branch=z9hG4bK-reg-%08x\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:user%07u@example.com>;tag=%08x\r\n"
        "To: <sip:user%07u@example.com>\r\n"
        "Call-ID: %08x-%04x@%s\r\n"
        "CSeq: 1 REGISTER\r\n"
        "Contact: <sip:user%07u@%s:5060>\r\n"
        "Expires: 3600\r\n"
        "Content-Length: 0\r\n\r\n",
        ip, i, i, i * 2654435761u, i, i, (i * 40503u) & 0xffff, ip, i, ip);
    return len > 0 ? static_cast<size_t>(len) : 0;
  }
  int len = std::snprintf(
      buf, n,
      "REGISTER sip:example.com SIP/2.0\r\n"
      "Via: SIP/2.0/UDP %s:5060;rport;branch=z9hG4bK-reg-%08x\r\n"
      "Max-Forwards: 70\r\n"
      "From: <sip:user%07u@example.com>;tag=%08x\r\n"
      "To: <sip:user%07u@example.com>\r\n"
      "Call-ID: %08x-%04x@%s\r\n"
      "CSeq: 1 REGISTER\r\n"
      "Contact: <sip:user%07u@%s:5060;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-%012x>\"\r\n"
      "Expires: 3600\r\n"
      "User-Agent: Yealink SIP-T46S 66.86.0.15\r\n"
      "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER\r\n"
      "Content-Length: 0\r\n\r\n",
      ip, i, i, i * 2654435761u, i, i, (i * 40503u) & 0xffff, ip, i, ip, i);
  return len > 0 ? static_cast<size_t>(len) : 0;
}

// An initial INVITE with a small SDP offer (~900 bytes), as a softphone sends it.
size_t write_invite(char* buf, size_t n, uint32_t i) {
  static constexpr char kSdp[] =
      "v=0\r\n"
      "o=caller 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
      "s=-\r\n"
      "c=IN IP4 192.0.2.10\r\n"
      "t=0 0\r\n"
      "m=audio 49170 RTP/AVP 0 8 101\r\n"
      "a=rtpmap:0 PCMU/8000\r\n"
      "a=rtpmap:8 PCMA/8000\r\n"
      "a=rtpmap:101 telephone-event/8000\r\n"
      "a=sendrecv\r\n";
  int len = std::snprintf(
      buf, n,
      "INVITE sip:user%07u@example.com SIP/2.0\r\n"
      "Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK-inv-%08x\r\n"
      "Max-Forwards: 70\r\n"
      "From: \"Caller %u\" <sip:caller%07u@example.com>;tag=%08x\r\n"
      "To: <sip:user%07u@example.com>\r\n"
      "Call-ID: %08x-%08x@192.0.2.10\r\n"
      "CSeq: 1 INVITE\r\n"
      "Contact: <sip:caller%07u@192.0.2.10:5060>\r\n"
      "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER\r\n"
      "Supported: replaces, timer\r\n"
      "User-Agent: Linphone/5.2.0\r\n"
      "Content-Type: application/sdp\r\n"
      "Content-Length: %zu\r\n\r\n%s",
      i, i, i, i, i * 2246822519u, i, i, i * 3266489917u, i, sizeof kSdp - 1, kSdp);
  return len > 0 ? static_cast<size_t>(len) : 0;
}

// Takes every send and drops it: the transactions wait for answers that never come.
class DiscardEnv final : public proxy::TransactionEnv {
 public:
  core::FakeClock clock_;
  uint64_t sends = 0;
  uint64_t bytes = 0;
  const core::Clock& clock() const override { return clock_; }
  bool send(const core::Peer&, std::string_view b, uint64_t) override {
    ++sends;
    bytes += b.size();
    return true;
  }
};

void usage() {
  std::fprintf(stderr,
               "usage: bench_memory [--bindings N] [--transactions M] [--plain-contact] [--json]\n"
               "  --bindings N      unique AORs registered through the registrar (default 1000000)\n"
               "  --transactions M  concurrent INVITEs held through the proxy core (default 100000;\n"
               "                    at most N: each one calls a registered user)\n"
               "  --plain-contact   REGISTERs whose Contact is a bare URI (no +sip.instance, no\n"
               "                    User-Agent): the smallest binding\n"
               "  --json            also print one JSON object with every figure\n");
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t n_bindings = 1'000'000;
  uint32_t n_invites = 100'000;
  bool json = false;
  bool plain = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--bindings" && i + 1 < argc) {
      n_bindings = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else if (a == "--transactions" && i + 1 < argc) {
      n_invites = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else if (a == "--plain-contact") {
      plain = true;
    } else if (a == "--json") {
      json = true;
    } else {
      usage();
      return 2;
    }
  }
  if (n_invites > n_bindings) n_invites = n_bindings;

  const Memory m0 = memory_now();
  std::printf("start: RSS %.1f MiB\n", mib(m0.rss_kb));

  // ---- phase 1: bindings, through the registrar (memory backend: no Store)
  core::FakeClock clock;
  location::Settings loc_settings;
  loc_settings.sweep_interval_ms = 0;  // nothing expires while we measure
  loc_settings.limits.max_aors = n_bindings;
  location::LocationService location(clock, loc_settings, nullptr);
  if (auto st = location.start(); !st) {
    std::fprintf(stderr, "location: %s\n", core::describe(st.error()).c_str());
    return 1;
  }
  proxy::RegistrarSettings reg_settings;
  reg_settings.max_aors = n_bindings;
  reg_settings.domains = {"example.com"};
  proxy::Registrar registrar(location, clock, reg_settings);

  char buf[2048];
  core::Message msg;
  uint64_t reg_ok = 0, reg_bad = 0, reg_bytes = 0;
  int first_bad_status = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (uint32_t i = 0; i < n_bindings; ++i) {
    size_t len = write_register(buf, sizeof buf, i, plain);
    reg_bytes += len;
    core::Peer from = udp_peer("10.0.0.1", 5060);
    char ip[32];
    phone_address(i, ip, sizeof ip);
    from.endpoint = *core::Endpoint::parse(ip, 5060);
    if (!msg.parse(std::string_view(buf, len))) {
      ++reg_bad;
      continue;
    }
    proxy::RegistrarReply r = registrar.handle(msg, from);
    if (r.status == 200) {
      ++reg_ok;
    } else {
      if (reg_bad++ == 0) first_bad_status = r.status;
    }
  }
  const double reg_s = seconds_since(t0);
  const Memory m1 = memory_now();
  const double per_binding = n_bindings ? (m1.rss_kb - m0.rss_kb) * 1024.0 / n_bindings : 0;
  std::printf("bindings: %u AORs registered through Registrar::handle (%llu ok, %llu refused%s%s), "
              "%zu in the table, %.1f s (%.1f us each)\n",
              n_bindings, static_cast<unsigned long long>(reg_ok), static_cast<unsigned long long>(reg_bad),
              first_bad_status ? ", first refusal " : "",
              first_bad_status ? std::to_string(first_bad_status).c_str() : "", location.size(), reg_s,
              n_bindings ? reg_s * 1e6 / n_bindings : 0.0);
  std::printf("bindings: RSS %.1f MiB (+%.1f MiB, %.0f bytes per binding), heap in use %.1f MiB\n",
              mib(m1.rss_kb), mib(m1.rss_kb - m0.rss_kb), per_binding, m1.heap_bytes / 1048576.0);

  // ---- phase 2: concurrent INVITE transactions through the proxy core
  proxy::LocalListener udp;
  udp.protocol = core::Protocol::Udp;
  udp.address = udp.host = "192.0.2.1";
  udp.port = 5060;
  udp.family = AF_INET;
  proxy::LocalIdentity identity({udp}, {"example.com"});
  proxy::RegistrarServices services(registrar, location, identity, false);
  proxy::BuiltinPolicy policy(services);
  proxy::NumericResolver resolver;
  DiscardEnv env;
  proxy::ProxySettings proxy_settings;
  proxy::LayerOptions layer_options;
  layer_options.max_transactions = static_cast<size_t>(n_invites) * 4 + 16;
  auto core = std::make_unique<proxy::ProxyCore>(env, identity, resolver, policy, proxy_settings);
  auto layer = std::make_unique<proxy::TransactionLayer>(env, *core, proxy::Timers{}, layer_options);
  core->attach(*layer);

  const core::Peer caller = udp_peer("192.0.2.10", 5060);
  uint64_t inv_bytes = 0;
  t0 = std::chrono::steady_clock::now();
  for (uint32_t i = 0; i < n_invites; ++i) {
    size_t len = write_invite(buf, sizeof buf, i);
    inv_bytes += len;
    if (!msg.parse(std::string_view(buf, len))) continue;
    layer->on_message(msg, caller);
  }
  const double inv_s = seconds_since(t0);
  const Memory m2 = memory_now();
  const auto& tc = layer->counters();
  const auto& pc = core->counters();
  const double per_invite = n_invites ? (m2.rss_kb - m1.rss_kb) * 1024.0 / n_invites : 0;
  std::printf("invites: %u INVITEs held: %llu server + %llu client INVITE transactions alive, %zu "
              "response contexts (%zu holding a parsed request), %llu relayed, %llu sends discarded, "
              "%.1f s (%.1f us each)\n",
              n_invites, static_cast<unsigned long long>(tc.active_server_invite),
              static_cast<unsigned long long>(tc.active_client_invite), core->contexts(), core->parsed_contexts(),
              static_cast<unsigned long long>(pc.relayed), static_cast<unsigned long long>(env.sends), inv_s,
              n_invites ? inv_s * 1e6 / n_invites : 0.0);
  std::printf("invites: RSS %.1f MiB (+%.1f MiB over the bindings, %.0f bytes per INVITE), heap in use %.1f MiB\n",
              mib(m2.rss_kb), mib(m2.rss_kb - m1.rss_kb), per_invite, m2.heap_bytes / 1048576.0);
  if (json) {
    std::printf(
        "{\"bindings\": %u, \"bindings_ok\": %llu, \"rss_start_kb\": %ld, \"rss_bindings_kb\": %ld, "
        "\"bytes_per_binding\": %.0f, \"register_us\": %.2f, \"invites\": %u, "
        "\"server_invite_transactions\": %llu, \"client_invite_transactions\": %llu, "
        "\"rss_invites_kb\": %ld, \"rss_invites_delta_kb\": %ld, \"bytes_per_invite\": %.0f, "
        "\"invite_us\": %.2f, \"hwm_kb\": %ld, \"avg_register_bytes\": %.0f, \"avg_invite_bytes\": %.0f}\n",
        n_bindings, static_cast<unsigned long long>(reg_ok), m0.rss_kb, m1.rss_kb, per_binding,
        n_bindings ? reg_s * 1e6 / n_bindings : 0.0, n_invites,
        static_cast<unsigned long long>(tc.active_server_invite),
        static_cast<unsigned long long>(tc.active_client_invite), m2.rss_kb, m2.rss_kb - m1.rss_kb, per_invite,
        n_invites ? inv_s * 1e6 / n_invites : 0.0, m2.hwm_kb,
        n_bindings ? double(reg_bytes) / n_bindings : 0.0, n_invites ? double(inv_bytes) / n_invites : 0.0);
  }
  std::fflush(stdout);

  // Tear down quickly: the layer calls the core back while it goes, so it goes first.
  layer.reset();
  core.reset();
  location.stop();
  return 0;
}
