// The plumbing for API functions that must wait (a Redis lookup, an HTTP hook): such a C
// function calls begin_wait(), starts its operation and returns lua_yield(L, 0). The request's
// coroutine stays suspended in LuaPolicy's waiting table until the operation's completion
// calls LuaPolicy::resume(id, push); the values `push` leaves on the coroutine become the
// function's results, and the script carries on. Every service is synchronous today; the
// unit tests exercise this path with a test-only function.
#pragma once
#include <cstdint>

struct lua_State;

namespace sb::scripts {

// Mark the request running on `L` as waiting and return its id (never 0). Returns 0 and
// sets *err when the caller cannot wait: outside a request (the script's top level) or
// inside a coroutine the script created itself. The caller must then not yield.
uint64_t begin_wait(lua_State* L, const char** err);

}  // namespace sb::scripts
