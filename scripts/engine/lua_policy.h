// The Lua routing engine (DESIGN.md "Lua routing", STYLE.md 6-7): a RoutingPolicy that runs
// the operator's script. A script is compiled into an immutable, numbered ScriptGeneration
// (its own lua_State, entry points checked); a worker's LuaPolicy runs the generation it was
// given and adopts a new one with publish(). Each request runs as a coroutine that pins the
// generation it started in, so a reload never changes the script under a request in flight.
#pragma once
#include <cassert>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "proxy/resolver.h"
#include "proxy/routing_policy.h"

struct lua_State;

namespace sb::scripts {

// A compile error, "FILE:LINE: message" when the fault has a position.
struct ScriptError {
  std::string message;
};

// Errors as values with a message built at run time (core::Error holds static reasons only).
template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(ScriptError e) : v_(std::move(e)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { assert(ok()); return std::get<0>(v_); }
  const T& value() const { assert(ok()); return std::get<0>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  const std::string& error() const { assert(!ok()); return std::get<1>(v_).message; }

 private:
  std::variant<T, ScriptError> v_;
};

struct ScriptLimits {
  // Config script.max_instructions: Lua VM instructions one on_request / on_failure run may
  // execute (counted in steps of at most 1000), also the budget of the script's top level.
  // 0 = no limit.
  uint64_t max_instructions = 1000000;
};

using NativeFn = int (*)(lua_State*);

// A C function installed as module.name before the script's top level runs. Not part of the
// documented API: for tests (a fake async service) and services still being built.
struct NativeFunction {
  const char* module;
  const char* name;
  NativeFn fn;
};

struct CompileOptions {
  uint64_t number = 0;                  // generation number; 0 = next of a process-wide counter
  std::vector<NativeFunction> natives;
};

namespace detail {
struct GenerationState;
struct RequestContext;
enum class RunKind : uint8_t;
}  // namespace detail

// One compiled script: a lua_State with the API installed, the file's top level run and its
// entry points found. Immutable from the outside; used by one worker thread at a time. The
// state is closed when the last holder (the policy, or a request pinned to it) lets go.
class ScriptGeneration {
 public:
  ~ScriptGeneration();
  ScriptGeneration(const ScriptGeneration&) = delete;
  ScriptGeneration& operator=(const ScriptGeneration&) = delete;

  uint64_t number() const;
  const std::string& path() const;
  bool has_on_failure() const;
  const ScriptLimits& limits() const;
  // Bytes the Lua state has allocated.
  size_t memory_bytes() const;

  // The engine's view (scripts/engine/bridge.h).
  detail::GenerationState& state() { return *s_; }

 private:
  friend Result<std::shared_ptr<ScriptGeneration>> compile(const std::string&, const ScriptLimits&,
                                                           const CompileOptions&);
  ScriptGeneration();
  std::unique_ptr<detail::GenerationState> s_;
};

// Build a fresh generation from the script at `path`: new lua_State, the API installed, the
// file loaded and its top level run (under the instruction limit), then `on_request` must be
// a function and `on_failure` a function or nil. Nothing is shared with other generations, so
// a failed compile changes nothing. `switchboard check` and reload run this same function.
Result<std::shared_ptr<ScriptGeneration>> compile(const std::string& path,
                                                  const ScriptLimits& limits,
                                                  const CompileOptions& options = {});

// Per-worker counters (summed by the reader across workers).
struct ScriptCounters {
  uint64_t requests = 0;        // on_request runs started
  uint64_t failures = 0;        // on_failure runs started
  uint64_t errors = 0;          // script errors (answered 500 "Script Error"), limit included
  uint64_t limit_exceeded = 0;  // of those: the instruction limit
  uint64_t no_decision = 0;     // on_request returned without a decision (answered 500)
  uint64_t waits = 0;           // times a request's coroutine waited on an async call
};

// The RoutingPolicy of one worker. Every member is called on that worker's thread.
class LuaPolicy final : public proxy::RoutingPolicy {
 public:
  // `resolver` (the worker's, RFC 3263) serves dns.resolve; null: dns.resolve says DNS is
  // not available. It must outlive the policy's waiting requests (the worker stops it first).
  LuaPolicy(std::shared_ptr<ScriptGeneration> generation, proxy::PolicyServices& services,
            proxy::Resolver* resolver = nullptr);
  ~LuaPolicy() override;
  LuaPolicy(const LuaPolicy&) = delete;
  LuaPolicy& operator=(const LuaPolicy&) = delete;

  // Adopt a new generation for requests that start from now on. Requests in flight finish
  // (on_failure included) in the generation they started with; an old generation is closed
  // when its last request lets go of it.
  void publish(std::shared_ptr<ScriptGeneration> generation);
  const std::shared_ptr<ScriptGeneration>& generation() const { return current_; }

  void on_request(proxy::PolicyRequest& req, proxy::DecisionFn done) override;
  void on_failure(proxy::PolicyRequest& req, const proxy::FailureInfo& best,
                  proxy::DecisionFn done) override;

  // Resume a request whose coroutine waits on an async call (see scripts/engine/async.h).
  // `push` pushes the call's results onto the coroutine and returns how many it pushed.
  // False when no request with this id is waiting.
  bool resume(uint64_t request_id, const std::function<int(lua_State*)>& push);
  // Requests whose coroutine is waiting.
  size_t waiting() const { return waiting_.size(); }

  const ScriptCounters& counters() const { return counters_; }
  // The last script error ("FILE:LINE: message"), for diagnostics; "" when none yet.
  const std::string& last_error() const { return last_error_; }

 private:
  void run(std::unique_ptr<detail::RequestContext> ctx, detail::RunKind kind,
           const proxy::FailureInfo* best, const std::function<int(lua_State*)>* push);
  void finish(std::unique_ptr<detail::RequestContext> ctx, proxy::Decision decision);
  std::shared_ptr<ScriptGeneration> pinned(proxy::PolicyRequest& req, bool& record_route);
  void pin(proxy::PolicyRequest& req, const std::shared_ptr<ScriptGeneration>& gen,
           bool record_route);
  void unpin(proxy::PolicyRequest& req);

  std::shared_ptr<ScriptGeneration> current_;
  proxy::PolicyServices& services_;
  proxy::Resolver* resolver_ = nullptr;
  std::unordered_map<uint64_t, std::unique_ptr<detail::RequestContext>> waiting_;
  uint64_t next_request_id_ = 1;
  ScriptCounters counters_;
  std::string last_error_;
};

}  // namespace sb::scripts
