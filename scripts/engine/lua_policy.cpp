// Compiling scripts into generations and running requests as coroutines (DESIGN.md "Lua
// routing", "Configuration and live reload"; STYLE.md 6).
#include "scripts/engine/lua_policy.h"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstdlib>
#include <string>

#include "core/log.h"
#include "scripts/engine/bridge.h"

namespace sb::scripts {

using detail::Budget;
using detail::GenerationState;
using detail::RequestContext;
using detail::RunKind;

namespace {

std::atomic<uint64_t> g_next_number{1};
constexpr int kHookStepMax = 1000;
constexpr size_t kIdleThreadsMax = 64;

// Lua never sees a failed allocation (bridge.h): out of memory ends the process, as it would
// for C++ allocations, instead of longjmp-ing out of whatever C++ code was pushing a value.
void* allocate(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* g = static_cast<GenerationState*>(ud);
  if (ptr) g->bytes -= osize;
  if (nsize == 0) {
    free(ptr);
    return nullptr;
  }
  void* p = realloc(ptr, nsize);
  if (!p) {
    SB_ERROR("script %s: out of memory", g->path.c_str());
    abort();
  }
  g->bytes += nsize;
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

struct LuaPolicy::Pin {
  std::shared_ptr<ScriptGeneration> gen;
  bool record_route = false;
};

namespace {

struct RunFrame {
  RequestContext* ctx;
  RunKind kind;
  const proxy::FailureInfo* best;
  const std::function<int(lua_State*)>* push;
  int status = LUA_OK;
};

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

// Runs inside lua_pcall on the generation's main state, so nothing here can escape into the
// host's C++ frames: start (or resume) the request's coroutine and record how it stopped.
int host_run(lua_State* M) {
  auto* f = static_cast<RunFrame*>(lua_touserdata(M, 1));
  RequestContext* ctx = f->ctx;
  GenerationState* g = ctx->g;
  lua_State* T;
  int nargs;
  if (f->kind == RunKind::Resume) {
    T = ctx->thread;
    ctx->waiting = false;
    nargs = (*f->push)(T);
  } else {
    T = take_thread(M, g, ctx);
    lua_rawgeti(M, LUA_REGISTRYINDEX,
                f->kind == RunKind::Request ? g->on_request_ref : g->on_failure_ref);
    detail::push_request(M, ctx);
    nargs = 1;
    if (f->kind == RunKind::Failure) {
      detail::push_failure(M, *f->best);
      nargs = 2;
    }
    if (!lua_checkstack(T, nargs + 1)) return luaL_error(M, "coroutine stack overflow");
    lua_xmove(M, T, nargs + 1);
    set_hook(*g, T);
  }
  RequestContext* prev = g->running;
  Budget* prev_budget = g->budget;
  g->running = ctx;
  g->budget = &ctx->budget;
  int nres = 0;
  int st = lua_resume(T, M, nargs, &nres);
  g->running = prev;
  g->budget = prev_budget;
  f->status = st;
  if (st == LUA_YIELD) {
    lua_pop(T, nres);
    return 0;
  }
  if (st == LUA_OK) {
    // `return nil, err` (a failed verb passed on): remembered for the no-decision log line.
    if (nres >= 2 && lua_isnil(T, -nres) && lua_type(T, -nres + 1) == LUA_TSTRING)
      ctx->returned = lua_tostring(T, -nres + 1);
    lua_settop(T, 0);
    return 0;
  }
  ctx->error = error_text(T);
  luaL_traceback(M, T, nullptr, 0);
  ctx->traceback = lua_tostring(M, -1);
  lua_pop(M, 1);
  char origin[512];
  detail::where(T, 0, origin, sizeof origin);
  ctx->origin = origin;
  return 0;
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
    luaL_unref(M, LUA_REGISTRYINDEX, ctx->handle_ref);
    luaL_unref(M, LUA_REGISTRYINDEX, ctx->thread_ref);
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
  lua_State* M = g.L;
  RunFrame frame{ctx.get(), kind, best, push};
  lua_pushcfunction(M, host_run);
  lua_pushlightuserdata(M, &frame);
  if (lua_pcall(M, 1, 0, 0) != LUA_OK) {
    frame.status = LUA_ERRRUN;
    ctx->error = error_text(M);
  }
  lua_settop(M, 0);

  const char* entry = ctx->failure ? "on_failure" : "on_request";
  std::string_view call_id = ctx->req->message().call_id();
  std::string_view method = ctx->req->message().method_text();
  if (frame.status == LUA_YIELD && ctx->waiting) {
    ++counters_.waits;
    uint64_t id = ctx->id;
    waiting_.emplace(id, std::move(ctx));
    return;
  }
  if (frame.status == LUA_YIELD) {
    frame.status = LUA_ERRRUN;
    ctx->error = g.path + ": " + entry + " yielded outside an API call that waits";
  }
  if (frame.status == LUA_OK && ctx->budget.exceeded) {
    // The limit hit a coroutine the script created, and the script finished anyway.
    frame.status = LUA_ERRRUN;
    ctx->error = g.path + ": instruction limit exceeded";
  }
  ctx->status = frame.status;

  if (frame.status != LUA_OK) {
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
  luaL_unref(M, LUA_REGISTRYINDEX, ctx->handle_ref);
  if (ctx->thread_ref != LUA_NOREF) {
    if (ctx->status == LUA_OK && g.idle_threads.size() < kIdleThreadsMax)
      g.idle_threads.emplace_back(ctx->thread_ref, ctx->thread);
    else
      luaL_unref(M, LUA_REGISTRYINDEX, ctx->thread_ref);  // a dead coroutine is collected
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
  auto p = std::static_pointer_cast<Pin>(req.policy_state);
  if (!p) return nullptr;
  record_route = p->record_route;
  return p->gen;
}

void LuaPolicy::pin(proxy::PolicyRequest& req, const std::shared_ptr<ScriptGeneration>& gen,
                    bool record_route) {
  req.policy_state = std::make_shared<Pin>(Pin{gen, record_route});
}

void LuaPolicy::unpin(proxy::PolicyRequest& req) { req.policy_state.reset(); }

}  // namespace sb::scripts
