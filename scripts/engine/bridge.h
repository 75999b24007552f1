// Private to scripts/engine: the state behind a generation and a request, shared by the
// policy (lua_policy.cpp) and the API functions (request_api.cpp, module_api.cpp).
//
// Lua errors and C++: Debian's liblua5.4 is C, so lua_error is a longjmp that would skip the
// destructors of C++ objects in the frames it crosses. Rules kept in every C function here:
//  - the state's allocator aborts instead of failing, so pushing or creating a value never
//    raises a memory error;
//  - a function first checks its arguments (luaL_check*, which may raise), then does its C++
//    work in an inner scope using only API calls that cannot raise (push*, to*, raw table
//    access, lua_next, lua_getinfo), and raises or returns (true | nil, err) only after that
//    scope has closed. Faults found inside the scope are carried out in a Fault (a plain
//    char buffer, no destructor).
// Host code (LuaPolicy) calls into Lua only through lua_resume (a request's coroutine) and
// lua_pcall (the top level); around them it uses only calls that cannot raise.
#pragma once
#include <lua.hpp>

#include <cstdarg>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/address.h"
#include "core/method.h"
#include "core/uri.h"
#include "proxy/resolver.h"
#include "proxy/routing_policy.h"
#include "scripts/engine/lua_policy.h"

namespace sb::scripts::detail {

enum class RunKind : uint8_t { Request, Failure, Resume };

// Field names the API reads and writes on every request, interned once per state: pushing one
// from the registry by index is cheaper than lua_setfield's lookup of a C string.
enum class Key : uint8_t {
  Uri, Q, Path, Source, Target, Transport, Ip, Port, Trusted, Tag, Display, Number, Method,
  Status, Reason, Attempted, Count
};
inline constexpr const char* kKeyNames[] = {
    "uri", "q", "path", "source", "_target", "transport", "ip", "port", "trusted", "tag",
    "display", "number", "method", "status", "reason", "attempted"};
static_assert(std::size(kKeyNames) == static_cast<size_t>(Key::Count));

inline constexpr const char* kRequestMeta = "request";
inline constexpr const char* kUriMeta = "uri";

inline constexpr size_t kMethodNames = static_cast<size_t>(core::Method::Update) + 1;
inline constexpr size_t kProtocolNames = static_cast<size_t>(core::Protocol::Wss) + 1;

// Instructions a request (or the top level) has executed, counted by the count hook.
struct Budget {
  uint64_t used = 0;
  bool exceeded = false;
};

// Small blocks a Lua state freed, kept by 16-byte size class and handed out again before
// malloc is asked: a request allocates and frees dozens of small objects (tables, strings,
// userdata), and a free list costs a fraction of malloc + free. Bounded; what it keeps is
// freed with the state (allocate() in lua_policy.cpp).
struct BlockPool {
  static constexpr size_t kGrain = 16;
  static constexpr size_t kClasses = 32;                    // blocks up to 512 bytes
  static constexpr size_t kMaxBytes = size_t(1) << 20;       // kept, per state
  void* free_list[kClasses] = {};  // a kept block's first word links to the next
  size_t bytes = 0;                // kept
  bool keep = true;                // false while the state closes: free at once
  BlockPool() = default;
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;
  ~BlockPool() {
    for (void*& head : free_list) {
      while (head) {
        void* next = *static_cast<void**>(head);
        ::free(head);
        head = next;
      }
    }
  }
};

struct GenerationState {
  lua_State* L = nullptr;
  std::string path;
  uint64_t number = 0;
  ScriptLimits limits;
  int hook_step = 0;  // instructions between two hook calls; 0 = no limit, no hook
  int on_request_ref = LUA_NOREF;
  int on_failure_ref = LUA_NOREF;
  proxy::PolicyServices* services = nullptr;  // set by the policy that runs the generation
  LuaPolicy* policy = nullptr;                // that policy (dns.resolve resumes through it)
  proxy::Resolver* resolver = nullptr;        // the worker's resolver, for dns.resolve
  RequestContext* running = nullptr;          // the request whose coroutine runs now
  Budget* budget = nullptr;                   // what the count hook charges
  Budget load_budget;                         // the top level's
  std::vector<std::pair<int, lua_State*>> idle_threads;  // finished coroutines kept for reuse
  size_t bytes = 0;                           // allocated by the state
  BlockPool pool;                             // its freed small blocks
  uint64_t next_target_id = 1;
  // The metatables of request handles and uri values, by registry index and by address:
  // every API call checks its object, and comparing an address is much cheaper than
  // luaL_checkudata's lookup of the metatable by name.
  int request_mt_ref = LUA_NOREF;
  int uri_mt_ref = LUA_NOREF;
  const void* request_mt = nullptr;
  const void* uri_mt = nullptr;
  int keys[static_cast<size_t>(Key::Count)] = {};  // registry refs of kKeyNames
  // The names of the known methods (by core::Method) and transports (by core::Protocol),
  // interned once: req.method and req.source.transport push them by registry index.
  int method_names[kMethodNames] = {};
  int protocol_names[kProtocolNames] = {};
  // What a relayed request pins (LuaPolicy::pin): this generation, and whether a relay that
  // on_failure makes is Record-Routed. The request's policy_state points at one of the two
  // through an aliasing shared_ptr that shares the generation's count: pinning allocates
  // nothing.
  struct PinTag {
    ScriptGeneration* gen = nullptr;
    bool record_route = false;
  };
  PinTag pins[2];
};

// The Lua side of a request handle: dies (ctx = nullptr) when the decision is delivered.
struct RequestHandle {
  RequestContext* ctx;
};

// One on_request or on_failure run, from start until its decision is delivered.
struct RequestContext {
  uint64_t id = 0;
  std::shared_ptr<ScriptGeneration> gen;  // the generation this run is pinned to
  GenerationState* g = nullptr;
  proxy::PolicyRequest* req = nullptr;
  proxy::DecisionFn done;
  bool failure = false;  // on_failure rather than on_request
  lua_State* thread = nullptr;
  int thread_ref = LUA_NOREF;
  RequestHandle* handle = nullptr;  // kept alive at the bottom of `thread`'s stack
  Budget budget;
  bool waiting = false;  // suspended in an async call (begin_wait)
  std::string wait_uri;  // the URI a location.lookup that waits looks up once resumed

  bool decided = false;
  proxy::Decision decision;
  bool record_route = false;
  // location.lookup results, so relay() can rebuild a Target exactly (its destination
  // connection included) from the id the contact table carries.
  std::vector<std::pair<uint64_t, proxy::Target>> targets;

  // Outcome of the run, filled by the host.
  int status = LUA_OK;
  std::string error;      // the error message ("FILE:LINE: message")
  std::string traceback;  // luaL_traceback of the coroutine
  std::string origin;     // "FILE:LINE" of the innermost Lua frame at the error
  std::string returned;   // err of a `return nil, err` (for the no-decision log line)
};

inline GenerationState* gen_of(lua_State* L) {
  return *static_cast<GenerationState**>(lua_getextraspace(L));
}

// To set t.k on a table the engine built: push_key, push the value, lua_rawset(L, -3).
inline void push_key(lua_State* L, Key k) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, gen_of(L)->keys[static_cast<size_t>(k)]);
}
// t[k] without metamethods (t an absolute index); pushes the value and returns its type.
inline int get_key(lua_State* L, int t, Key k) {
  push_key(L, k);
  return lua_rawget(L, t);
}

// Push a method name (as received) or a transport name: interned ones by registry index.
void push_method(lua_State* L, core::Method m, std::string_view text);
void push_protocol(lua_State* L, core::Protocol p);

// The userdata at `idx` when its metatable is `mt`, else null (luaL_testudata by address).
inline void* test_object(lua_State* L, int idx, const void* mt) {
  void* p = lua_touserdata(L, idx);
  if (!p || !lua_getmetatable(L, idx)) return nullptr;
  bool same = lua_topointer(L, -1) == mt;
  lua_pop(L, 1);
  return same ? p : nullptr;
}

inline const core::Uri* test_uri(lua_State* L, int idx) {
  return static_cast<const core::Uri*>(test_object(L, idx, gen_of(L)->uri_mt));
}

// A fault found inside a C++ scope, raised or returned once the scope has closed.
struct Fault {
  char text[384] = {0};
  bool raise = false;  // a script bug (wrong argument shape): Lua error; else nil, err
  bool set() const { return text[0] != 0; }
  void fail(bool raise_it, const char* fmt, ...) __attribute__((format(printf, 3, 4))) {
    if (set()) return;  // keep the first fault
    raise = raise_it;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
  }
};

// After the C++ scope: raise, push nil + message, or push true.
int conclude(lua_State* L, const Fault& f);
// The same for a function that pushed its `pushed` results already when no fault is set.
int conclude(lua_State* L, const Fault& f, int pushed);

// "FILE:LINE" of the innermost Lua function on L's stack at or above `level` into buf (n > 0);
// returns its length.
size_t where(lua_State* L, int level, char* buf, size_t n);

// Push a uri userdata holding a copy of `text`; false (nothing pushed, *err set) when it
// does not parse.
bool push_uri(lua_State* L, std::string_view text, const char** err);
// Push a uri userdata for a URI parsed elsewhere (a message's), copying its text.
void push_uri(lua_State* L, const core::Uri& parsed);
// The text of a uri userdata, a URI string, or a table's `uri` field; empty when none.
std::string_view uri_arg(lua_State* L, int idx);

// Push an endpoint's IP as Endpoint::ip() writes it (IPv6 without brackets), without a
// std::string or inet_ntop for IPv4.
void push_ip(lua_State* L, const core::Endpoint& ep);
// Set transport, ip and port of `p` on the table on top of the stack.
void set_peer_fields(lua_State* L, const core::Peer& p);

void push_request(lua_State* L, RequestContext* ctx);
void push_failure(lua_State* L, const proxy::FailureInfo& best);
// Push location.lookup results as contact tables (registering them with ctx when not null).
void push_contacts(lua_State* L, GenerationState* g, RequestContext* ctx,
                   std::vector<proxy::Target>&& targets);

// Record a decision made at the caller's position.
void decide(lua_State* L, RequestContext* ctx, proxy::Decision&& d);
RequestContext* check_request(lua_State* L, int idx);

// Build every global and metatable from the export table (and the natives).
void install_api(lua_State* L, const std::vector<NativeFunction>& natives);

// The export table's C functions.
int req_method(lua_State* L);
int req_uri(lua_State* L);
int req_from(lua_State* L);
int req_to(lua_State* L);
int req_call_id(lua_State* L);
int req_cseq(lua_State* L);
int req_source(lua_State* L);
int req_trusted(lua_State* L);
int req_body(lua_State* L);
int req_header(lua_State* L);
int req_headers(lua_State* L);
int req_set_header(lua_State* L);
int req_add_header(lua_State* L);
int req_remove_header(lua_State* L);
int req_set_uri(lua_State* L);
int req_in_dialog(lua_State* L);
int req_routed_by_us(lua_State* L);
int req_record_route(lua_State* L);
int req_reply(lua_State* L);
int req_relay(lua_State* L);
int req_redirect(lua_State* L);
int req_newindex(lua_State* L);
int req_tostring(lua_State* L);

int uri_scheme(lua_State* L);
int uri_user(lua_State* L);
int uri_host(lua_State* L);
int uri_port(lua_State* L);
int uri_params(lua_State* L);
int uri_aor(lua_State* L);
int uri_tostring(lua_State* L);
int uri_eq(lua_State* L);
int uri_concat(lua_State* L);

int location_lookup(lua_State* L);
int registrar_save(lua_State* L);
int log_debug(lua_State* L);
int log_info(lua_State* L);
int log_warn(lua_State* L);
int log_error(lua_State* L);
int config_domains(lua_State* L);
int config_is_local(lua_State* L);
int dns_resolve(lua_State* L);
int auth_verify(lua_State* L);
int auth_challenge(lua_State* L);
int auth_username(lua_State* L);

}  // namespace sb::scripts::detail
