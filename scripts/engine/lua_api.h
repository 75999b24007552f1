// The Lua API as one declarative export table (STYLE.md 7): each row names an object or
// module, a member, its kind, signature, description, example and C function. The engine
// builds the script's globals and metatables from these rows, and lua_api_markdown()
// generates docs/lua-api.md from the same rows, so the documentation cannot drift from what
// scripts can call (a unit test compares the file with the generated text).
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "scripts/engine/lua_policy.h"

namespace sb::scripts {

enum class ApiKind : uint8_t {
  Function,  // module.name(...)
  Field,     // object.name, read through a getter (fn receives the object at index 1)
  Method,    // object:name(...)
};

struct ApiEntry {
  const char* object;       // "req", "uri", "location", "registrar", "log", "config"
  const char* name;
  ApiKind kind;
  const char* signature;    // e.g. "req:relay(targets?, opts?) -> true | nil, err"
  const char* description;  // Markdown
  const char* example;      // Lua
  NativeFn fn;
};

// A section of the API: an object type (request, URI) or a module (a global table).
struct ApiObject {
  const char* name;
  bool module;              // a global table (location, log...) rather than a value type
  const char* title;
  const char* description;  // Markdown
};

std::span<const ApiEntry> lua_api();
std::span<const ApiObject> lua_api_objects();

// The whole of docs/lua-api.md: the contract (entry points, decisions, coroutines, limits,
// errors) followed by every row of the export table.
std::string lua_api_markdown();

}  // namespace sb::scripts
