// Compiling scripts into generations and running requests as coroutines (DESIGN.md "Lua
// routing", "Configuration and live reload"; STYLE.md 6).
#include "scripts/engine/lua_policy.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/log.h"
#include "scripts/engine/bridge.h"

namespace sb::scripts {

using detail::BlockPool;
using detail::Budget;
using detail::GenerationState;
using detail::RequestContext;
using detail::RunKind;

namespace {

std::atomic<uint64_t> g_next_number{1};
constexpr int kHookStepMax = 1000;
constexpr size_t kIdleThreadsMax = 64;

// AddressSanitizer must see every Lua object freed: no pool under it (GCC defines the
// macro, clang answers __has_feature).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kPoolBlocks = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kPoolBlocks = false;
#else
constexpr bool kPoolBlocks = true;
#endif
#else
constexpr bool kPoolBlocks = true;
#endif

// A size's class in the block pool (1..kClasses), 0 when the pool does not keep that size.
size_t pool_class(size_t n) {
  if (!kPoolBlocks || n == 0 || n > BlockPool::kGrain * BlockPool::kClasses) return 0;
  return (n + BlockPool::kGrain - 1) / BlockPool::kGrain;
}

[[noreturn]] void out_of_memory(GenerationState* g) {
  SB_ERROR("script %s: out of memory", g->path.c_str());
  abort();
}

void* take_block(GenerationState* g, size_t cls) {
  BlockPool& pool = g->pool;
  void*& head = pool.free_list[cls - 1];
  if (void* p = head) {
    head = *static_cast<void**>(p);
    pool.bytes -= cls * BlockPool::kGrain;
    return p;
  }
  void* p = malloc(cls * BlockPool::kGrain);
  if (!p) out_of_memory(g);
  return p;
}

void release_block(GenerationState* g, void* p, size_t cls) {
  BlockPool& pool = g->pool;
  size_t size = cls * BlockPool::kGrain;
  if (!cls || !pool.keep || pool.bytes + size > BlockPool::kMaxBytes) {
    free(p);
    return;
  }
  *static_cast<void**>(p) = pool.free_list[cls - 1];
  pool.free_list[cls - 1] = p;
  pool.bytes += size;
}

// Lua never sees a failed allocation (bridge.h): out of memory ends the process, as it would
// for C++ allocations, instead of longjmp-ing out of whatever C++ code was pushing a value.
// Small blocks come from the state's pool; a block keeps its size class for its whole life
// (Lua passes the size it asked for as osize), so it always goes back to the right list.
void* allocate(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* g = static_cast<GenerationState*>(ud);
  if (!ptr) osize = 0;  // osize names the kind of the new object, not a size
  g->bytes = g->bytes - osize + nsize;
  size_t oc = pool_class(osize), nc = pool_class(nsize);
  if (nsize == 0) {
    if (ptr) release_block(g, ptr, oc);
    return nullptr;
  }
  if (ptr && oc == nc) {
    if (oc) return ptr;  // the block's class holds the new size too
    void* p = realloc(ptr, nsize);
    if (!p) out_of_memory(g);
    return p;
  }
  void* p;
  if (nc) {
    p = take_block(g, nc);
  } else if (!(p = malloc(nsize))) {
    out_of_memory(g);
  }
  if (ptr) {
    std::memcpy(p, ptr, std::min(osize, nsize));
    release_block(g, ptr, oc);
  }
  return p;
}

// The instruction limit. Every `hook_step` instructions the running budget is charged; once
// exhausted the hook fires on every instruction of the thread it caught, so a script cannot
// catch the error with pcall and carry on (its next instruction fails again).
void count_hook(lua_State* L, lua_Debug*) {
  GenerationState* g = detail::gen_of(L);
  Budget* b = g->budget;
  if (!b) return;
  if (!b->exceeded) {
    b->used += static_cast<uint64_t>(g->hook_step);
    if (b->used < g->limits.max_instructions) return;
    b->exceeded = true;
  }
  lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
  lua_Debug ar;
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
    lua_pushfstring(L, "%s:%d: instruction limit exceeded", ar.short_src, ar.currentline);
  else
    lua_pushliteral(L, "instruction limit exceeded");
  lua_error(L);
}

void set_hook(GenerationState& g, lua_State* L) {
  if (g.hook_step > 0) lua_sethook(L, count_hook, LUA_MASKCOUNT, g.hook_step);
}

// The message of the error value on top of L (a string or a number; else its type).
std::string error_text(lua_State* L) {
  int t = lua_type(L, -1);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    size_t len;
    const char* s = lua_tolstring(L, -1, &len);
    return std::string(s, len);
  }
  return std::string("(error object is a ") + luaL_typename(L, -1) + " value)";
}

// Traceback lines joined into one log line.
std::string one_line(std::string s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n') {
      out += " | ";
      while (i + 1 < s.size() && s[i + 1] == '\t') ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string directory_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

}  // namespace

// ---- generations ----

ScriptGeneration::ScriptGeneration() : s_(std::make_unique<GenerationState>()) {}

ScriptGeneration::~ScriptGeneration() {
  if (s_->L) {
    s_->budget = nullptr;
    s_->pool.keep = false;
    lua_close(s_->L);
  }
}

uint64_t ScriptGeneration::number() const { return s_->number; }
const std::string& ScriptGeneration::path() const { return s_->path; }
bool ScriptGeneration::has_on_failure() const { return s_->on_failure_ref != LUA_NOREF; }
const ScriptLimits& ScriptGeneration::limits() const { return s_->limits; }
size_t ScriptGeneration::memory_bytes() const { return s_->bytes; }

Result<std::shared_ptr<ScriptGeneration>> compile(const std::string& path,
                                                  const ScriptLimits& limits,
                                                  const CompileOptions& options) {
  std::shared_ptr<ScriptGeneration> gen(new ScriptGeneration());
  GenerationState& g = gen->state();
  g.pins[0] = {gen.get(), false};
  g.pins[1] = {gen.get(), true};
  g.path = path;
  g.limits = limits;
  g.number = options.number ? options.number : g_next_number.fetch_add(1);
  g.hook_step = limits.max_instructions == 0
                    ? 0
                    : static_cast<int>(std::min<uint64_t>(limits.max_instructions, kHookStepMax));
  lua_State* L = lua_newstate(allocate, &g);
  if (!L) return ScriptError{path + ": cannot create a Lua state"};
  g.L = L;
  *static_cast<GenerationState**>(lua_getextraspace(L)) = &g;  // copied into every thread
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  std::string dir = directory_of(path);
  std::string search = dir + "/?.lua;" + dir + "/?/init.lua";
  lua_pushlstring(L, search.data(), search.size());
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  detail::install_api(L, options.natives);

  // The top level: text chunks only, under the same instruction budget as a request.
  if (luaL_loadfilex(L, path.c_str(), "t") != LUA_OK) return ScriptError{error_text(L)};
  set_hook(g, L);
  g.budget = &g.load_budget;
  int st = lua_pcall(L, 0, 0, 0);
  g.budget = nullptr;
  if (st != LUA_OK) return ScriptError{error_text(L)};
  lua_settop(L, 0);

  // Entry points, read from the globals table without metamethods (a strict-mode script
  // may have given _G an __index that raises).
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pushliteral(L, "on_request");
  int t = lua_rawget(L, -2);
  if (t == LUA_TNIL)
    return ScriptError{path + ": no on_request: a script must define function on_request(req)"};
  if (t != LUA_TFUNCTION)
    return ScriptError{path + ": on_request must be a function, not a " + lua_typename(L, t)};
  g.on_request_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushliteral(L, "on_failure");
  t = lua_rawget(L, -2);
  if (t == LUA_TFUNCTION) {
    g.on_failure_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else if (t != LUA_TNIL) {
    return ScriptError{path + ": on_failure must be a function or nil, not a " +
                       lua_typename(L, t)};
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT);
  return gen;
}

// ---- running a request ----

namespace {

lua_State* take_thread(lua_State* M, GenerationState* g, RequestContext* ctx) {
  if (!g->idle_threads.empty()) {
    auto [ref, thread] = g->idle_threads.back();
    g->idle_threads.pop_back();
    ctx->thread_ref = ref;
    ctx->thread = thread;
    return thread;
  }
  ctx->thread = lua_newthread(M);
  ctx->thread_ref = luaL_ref(M, LUA_REGISTRYINDEX);
  return ctx->thread;
}

// Start (or resume) the request's coroutine and record how it stopped; returns the status.
// Called straight from C++, not through lua_pcall: every call here either cannot raise
// (raw access, pushes, lua_resume, which catches the script's errors) or can only fail to
// allocate, which the state's allocator turns into abort (bridge.h).
int host_run(RequestContext* ctx, RunKind kind, const proxy::FailureInfo* best,
             const std::function<int(lua_State*)>* push) {
  GenerationState* g = ctx->g;
  lua_State* M = g->L;
  lua_State* T;
  int nargs;
  RequestContext* prev = g->running;
  Budget* prev_budget = g->budget;
  if (kind == RunKind::Resume) {
    T = ctx->thread;
    ctx->waiting = false;
    g->running = ctx;  // push may read the request it resumes (location.lookup)
    nargs = (*push)(T);
  } else {
    T = take_thread(M, g, ctx);  // an empty stack
    if (!lua_checkstack(T, 4)) {
      ctx->error = "coroutine stack overflow";
      return LUA_ERRRUN;
    }
    // The handle sits at the bottom of the coroutine's stack, below the entry point: that
    // keeps it alive for as long as the request runs or waits, without a registry ref.
    detail::push_request(T, ctx);
    lua_rawgeti(T, LUA_REGISTRYINDEX,
                kind == RunKind::Request ? g->on_request_ref : g->on_failure_ref);
    lua_pushvalue(T, 1);
    nargs = 1;
    if (kind == RunKind::Failure) {
      detail::push_failure(T, *best);
      nargs = 2;
    }
    set_hook(*g, T);
  }
  g->running = ctx;
  g->budget = &ctx->budget;
  int nres = 0;
  int st = lua_resume(T, M, nargs, &nres);
  g->running = prev;
  g->budget = prev_budget;
  if (st == LUA_YIELD) {
    lua_pop(T, nres);
    return st;
  }
  if (st == LUA_OK) {
    // `return nil, err` (a failed verb passed on): remembered for the no-decision log line.
    // The results sit above the handle.
    int results = lua_gettop(T) - 1;
    if (results >= 2 && lua_isnil(T, -results) && lua_type(T, -results + 1) == LUA_TSTRING)
      ctx->returned = lua_tostring(T, -results + 1);
    lua_settop(T, 1);  // the handle stays until the decision is delivered (finish)
    return st;
  }
  ctx->error = error_text(T);
  luaL_traceback(M, T, nullptr, 0);
  ctx->traceback = lua_tostring(M, -1);
  lua_pop(M, 1);
  char origin[512];
  ctx->origin.assign(origin, detail::where(T, 0, origin, sizeof origin));
  return st;
}

}  // namespace

LuaPolicy::LuaPolicy(std::shared_ptr<ScriptGeneration> generation, proxy::PolicyServices& services,
                     proxy::Resolver* resolver)
    : services_(services), resolver_(resolver) {
  publish(std::move(generation));
}

LuaPolicy::~LuaPolicy() {
  // Requests still waiting: their handles die with them; their decisions are never delivered.
  for (auto& [id, ctx] : waiting_) {
    lua_State* M = ctx->g->L;
    if (ctx->handle) ctx->handle->ctx = nullptr;
    luaL_unref(M, LUA_REGISTRYINDEX, ctx->thread_ref);  // the handle goes with the coroutine
  }
}

void LuaPolicy::publish(std::shared_ptr<ScriptGeneration> generation) {
  assert(generation);
  GenerationState& g = generation->state();
  assert(!g.services || g.services == &services_);  // a generation belongs to one worker
  g.services = &services_;
  g.policy = this;
  g.resolver = resolver_;
  current_ = std::move(generation);
}

void LuaPolicy::on_request(proxy::PolicyRequest& req, proxy::DecisionFn done) {
  ++counters_.requests;
  unpin(req);
  auto ctx = std::make_unique<RequestContext>();
  ctx->id = next_request_id_++;
  ctx->gen = current_;
  ctx->g = &current_->state();
  ctx->req = &req;
  ctx->done = std::move(done);
  run(std::move(ctx), RunKind::Request, nullptr, nullptr);
}

void LuaPolicy::on_failure(proxy::PolicyRequest& req, const proxy::FailureInfo& best,
                           proxy::DecisionFn done) {
  ++counters_.failures;
  bool record_route = false;
  std::shared_ptr<ScriptGeneration> gen = pinned(req, record_route);
  if (!gen) gen = current_;
  if (!gen->has_on_failure()) {
    unpin(req);
    done(proxy::Decision{});
    return;
  }
  auto ctx = std::make_unique<RequestContext>();
  ctx->id = next_request_id_++;
  ctx->g = &gen->state();
  ctx->gen = std::move(gen);
  ctx->req = &req;
  ctx->done = std::move(done);
  ctx->failure = true;
  ctx->record_route = record_route;
  run(std::move(ctx), RunKind::Failure, &best, nullptr);
}

bool LuaPolicy::resume(uint64_t request_id, const std::function<int(lua_State*)>& push) {
  auto it = waiting_.find(request_id);
  if (it == waiting_.end()) return false;
  std::unique_ptr<RequestContext> ctx = std::move(it->second);
  waiting_.erase(it);
  run(std::move(ctx), RunKind::Resume, nullptr, &push);
  return true;
}

void LuaPolicy::run(std::unique_ptr<RequestContext> ctx, RunKind kind,
                    const proxy::FailureInfo* best,
                    const std::function<int(lua_State*)>* push) {
  GenerationState& g = *ctx->g;
  int status = host_run(ctx.get(), kind, best, push);

  const char* entry = ctx->failure ? "on_failure" : "on_request";
  std::string_view call_id = ctx->req->message().call_id();
  std::string_view method = ctx->req->message().method_text();
  if (status == LUA_YIELD && ctx->waiting) {
    ++counters_.waits;
    uint64_t id = ctx->id;
    waiting_.emplace(id, std::move(ctx));
    return;
  }
  if (status == LUA_YIELD) {
    status = LUA_ERRRUN;
    ctx->error = g.path + ": " + entry + " yielded outside an API call that waits";
  }
  if (status == LUA_OK && ctx->budget.exceeded) {
    // The limit hit a coroutine the script created, and the script finished anyway.
    status = LUA_ERRRUN;
    ctx->error = g.path + ": instruction limit exceeded";
  }
  ctx->status = status;

  if (status != LUA_OK) {
    ++counters_.errors;
    if (ctx->budget.exceeded) ++counters_.limit_exceeded;
    last_error_ = ctx->error;
    if (ctx->origin.empty()) ctx->origin = g.path;
    SB_LOG_RL(Error, call_id, "script error in %s for %.*s (%s): %s%s%s", entry,
              static_cast<int>(method.size()), method.data(), ctx->origin.c_str(),
              ctx->error.c_str(), ctx->traceback.empty() ? "" : " | ",
              one_line(ctx->traceback).c_str());
    proxy::Decision d = proxy::Decision::reply(500, "Script Error");
    d.origin = ctx->origin;
    finish(std::move(ctx), std::move(d));
    return;
  }
  if (ctx->decided) {
    proxy::Decision d = std::move(ctx->decision);
    if (d.kind == proxy::Decision::Kind::Relay && ctx->record_route) d.relay.record_route = true;
    finish(std::move(ctx), std::move(d));
    return;
  }
  if (ctx->failure) {  // send the best response as it is
    finish(std::move(ctx), proxy::Decision{});
    return;
  }
  ++counters_.no_decision;
  SB_LOG_RL(Error, call_id, "%s: on_request made no decision for %.*s%s%s%s", g.path.c_str(),
            static_cast<int>(method.size()), method.data(),
            ctx->returned.empty() ? "" : " (it returned nil, \"", ctx->returned.c_str(),
            ctx->returned.empty() ? "" : "\")");
  proxy::Decision d = proxy::Decision::reply(500, "No Routing Decision");
  d.origin = g.path;
  finish(std::move(ctx), std::move(d));
}

void LuaPolicy::finish(std::unique_ptr<RequestContext> ctx, proxy::Decision decision) {
  GenerationState& g = *ctx->g;
  lua_State* M = g.L;
  if (ctx->handle) ctx->handle->ctx = nullptr;  // `req` dies here (STYLE.md: Envoy handles)
  if (ctx->thread_ref != LUA_NOREF) {
    if (ctx->status == LUA_OK && g.idle_threads.size() < kIdleThreadsMax) {
      lua_settop(ctx->thread, 0);  // lets the handle go
      g.idle_threads.emplace_back(ctx->thread_ref, ctx->thread);
    } else {
      luaL_unref(M, LUA_REGISTRYINDEX, ctx->thread_ref);  // a dead coroutine is collected
    }
  }
  if (decision.kind == proxy::Decision::Kind::Relay)
    pin(*ctx->req, ctx->gen, ctx->record_route);  // on_failure may follow
  else if (ctx->failure)
    unpin(*ctx->req);
  proxy::DecisionFn done = std::move(ctx->done);
  ctx.reset();  // may close an old generation whose last request this was
  done(std::move(decision));
}

std::shared_ptr<ScriptGeneration> LuaPolicy::pinned(proxy::PolicyRequest& req,
                                                    bool& record_route) {
  // The pin lives in the request's policy_state, so it dies with the request.
  auto* tag = static_cast<const GenerationState::PinTag*>(req.policy_state.get());
  if (!tag) return nullptr;
  record_route = tag->record_route;
  return std::shared_ptr<ScriptGeneration>(req.policy_state, tag->gen);
}

void LuaPolicy::pin(proxy::PolicyRequest& req, const std::shared_ptr<ScriptGeneration>& gen,
                    bool record_route) {
  req.policy_state = std::shared_ptr<void>(gen, &gen->state().pins[record_route ? 1 : 0]);
}

void LuaPolicy::unpin(proxy::PolicyRequest& req) { req.policy_state.reset(); }

}  // namespace sb::scripts
