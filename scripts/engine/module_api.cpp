// The modules scripts see as globals (location, registrar, log, config, dns) and the async
// plumbing (async.h). See bridge.h for the rules that keep Lua errors away from live C++
// objects.
#include <memory>
#include <string>
#include <vector>

#include "core/address.h"
#include "core/log.h"
#include "core/message.h"
#include "core/method.h"
#include "core/text.h"
#include "scripts/engine/async.h"
#include "scripts/engine/bridge.h"

namespace sb::scripts {

uint64_t begin_wait(lua_State* L, const char** err) {
  detail::RequestContext* ctx = detail::gen_of(L)->running;
  if (!ctx) {
    *err = "cannot wait outside a request (at the script's top level)";
    return 0;
  }
  if (ctx->thread != L) {
    *err = "cannot wait inside a coroutine the script created";
    return 0;
  }
  if (!lua_isyieldable(L)) {
    *err = "cannot wait here (inside a metamethod or another C call)";
    return 0;
  }
  ctx->waiting = true;
  return ctx->id;
}

}  // namespace sb::scripts

namespace sb::scripts::detail {

namespace {

void push_sv(lua_State* L, std::string_view s) { lua_pushlstring(L, s.data(), s.size()); }

int log_at(lua_State* L, core::log::Level level) {
  if (!core::log::enabled(level)) return 0;
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; ++i) {
    luaL_tolstring(L, i, nullptr);  // may run __tostring: no C++ object is live here
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  char pos[512];
  where(L, 1, pos, sizeof pos);
  GenerationState* g = gen_of(L);
  std::string_view call_id = g->running ? g->running->req->message().call_id() : std::string_view{};
  size_t len;
  const char* msg = lua_tolstring(L, -1, &len);
  core::log::write(level, call_id, "script %s: %.*s", pos, static_cast<int>(len), msg);
  return 0;
}

}  // namespace

void push_contacts(lua_State* L, GenerationState* g, RequestContext* ctx,
                   std::vector<proxy::Target>&& targets) {
  lua_createtable(L, static_cast<int>(targets.size()), 0);
  for (size_t i = 0; i < targets.size(); ++i) {
    proxy::Target& t = targets[i];
    lua_createtable(L, 0, 5);
    push_key(L, Key::Uri);
    push_sv(L, t.uri);
    lua_rawset(L, -3);
    push_key(L, Key::Q);
    lua_pushnumber(L, t.q1000 / 1000.0);
    lua_rawset(L, -3);
    push_key(L, Key::Path);
    lua_createtable(L, static_cast<int>(t.route.size()), 0);
    for (size_t k = 0; k < t.route.size(); ++k) {
      push_sv(L, t.route[k]);
      lua_rawseti(L, -2, static_cast<lua_Integer>(k + 1));
    }
    lua_rawset(L, -3);
    if (t.destination) {
      push_key(L, Key::Source);
      lua_createtable(L, 0, 3);
      set_peer_fields(L, *t.destination);
      lua_rawset(L, -3);
    }
    if (ctx) {
      uint64_t id = g->next_target_id++;
      push_key(L, Key::Target);
      lua_pushinteger(L, static_cast<lua_Integer>(id));
      lua_rawset(L, -3);
      ctx->targets.emplace_back(id, std::move(t));
    }
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
}

// The sip: or sips: URI argument at `idx` (its text `text`): a uri value's own parse, else
// `buf` parsed from the string. Null with the fault (nil, err) when it is not one.
static const core::Uri* sip_uri_arg(lua_State* L, int idx, std::string_view text, core::Uri& buf,
                                    Fault& f) {
  int len = static_cast<int>(std::min<size_t>(text.size(), 200));
  const core::Uri* u = test_uri(L, idx);
  if (!u) {
    core::Status st = core::parse_uri(text, buf);
    if (!st) {
      f.fail(false, "bad URI '%.*s': %s", len, text.data(), st.error().reason);
      return nullptr;
    }
    u = &buf;
  }
  if (!u->is_sip()) {
    f.fail(false, "not a sip: or sips: URI: '%.*s'", len, text.data());
    return nullptr;
  }
  return u;
}

int location_lookup(lua_State* L) {
  GenerationState* g = gen_of(L);
  std::string_view text = uri_arg(L, 1);
  if (text.empty()) return luaL_typeerror(L, 1, "URI string or uri");
  Fault f;
  bool waits = false;
  {
    core::Uri buf;
    const char* err = nullptr;
    uint64_t id = 0;
    const core::Uri* u = sip_uri_arg(L, 1, text, buf, f);
    if (!u) {
      // f says why
    } else if (!g->services) {
      f.fail(false, "the location service is not available here");
    } else if (g->policy && (id = begin_wait(L, &err)) != 0) {
      // A shared backend (docs/cluster.md) may have to be asked first: the request waits,
      // then carries on with what the table holds, or with nil, err when the store did not
      // answer in time. The completion finds the request by id (the policy drops the wait
      // otherwise, and it then finds nothing to resume); it holds two words, so building it
      // allocates nothing when there is nothing to wait for (a local backend).
      LuaPolicy* policy = g->policy;
      RequestContext* ctx = g->running;
      waits = g->services->lookup_wait(text, [policy, id](bool ok) {
        policy->resume(id, [ok](lua_State* T) -> int {
          GenerationState* tg = gen_of(T);
          RequestContext* rc = tg->running;  // the resumed request
          core::Uri uri;  // checked before the wait; parsed again from the request's copy
          if (ok && tg->services && core::parse_uri(rc->wait_uri, uri).ok()) {
            push_contacts(T, tg, rc, tg->services->lookup(uri));
            return 1;
          }
          lua_pushnil(T);
          lua_pushliteral(T, "location: the shared store did not answer in time");
          return 2;
        });
      });
      if (waits) {
        ctx->wait_uri.assign(text);
      } else {
        ctx->waiting = false;  // nothing to wait for: answer from the table now
        push_contacts(L, g, ctx, g->services->lookup(*u));
      }
    } else {
      push_contacts(L, g, g->running, g->services->lookup(*u));
    }
  }
  if (waits) return lua_yield(L, 0);  // nothing with a destructor is alive in this frame
  return conclude(L, f, 1);
}

int registrar_save(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  Fault f;
  {
    const core::Message& m = ctx->req->message();
    if (m.method() != core::Method::Register)
      f.fail(false, "registrar.save needs a REGISTER, not %.*s",
             static_cast<int>(std::min<size_t>(m.method_text().size(), 32)),
             m.method_text().data());
    else if (!ctx->g->services)
      f.fail(false, "the registrar is not available here");
    else
      decide(L, ctx, ctx->g->services->registrar_save(*ctx->req));
  }
  return conclude(L, f);
}

int log_debug(lua_State* L) { return log_at(L, core::log::Level::Debug); }
int log_info(lua_State* L) { return log_at(L, core::log::Level::Info); }
int log_warn(lua_State* L) { return log_at(L, core::log::Level::Warn); }
int log_error(lua_State* L) { return log_at(L, core::log::Level::Error); }

int config_domains(lua_State* L) {
  GenerationState* g = gen_of(L);
  {
    std::vector<std::string> domains;
    if (g->services) domains = g->services->domains();
    lua_createtable(L, static_cast<int>(domains.size()), 0);
    for (size_t i = 0; i < domains.size(); ++i) {
      push_sv(L, domains[i]);
      lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
    }
  }
  return 1;
}

int config_is_local(lua_State* L) {
  if (lua_isnoneornil(L, 1)) {  // uri.host of a URI without a host
    lua_pushboolean(L, 0);
    return 1;
  }
  size_t len;
  const char* host = luaL_checklstring(L, 1, &len);
  GenerationState* g = gen_of(L);
  lua_pushboolean(L, g->services && g->services->is_local_domain(std::string_view(host, len)));
  return 1;
}

namespace {

// A dns.resolve in progress. The resolver may answer inside resolve() (an IP literal, a
// cached name): then the function returns the servers at once instead of waiting.
struct DnsWait {
  LuaPolicy* policy = nullptr;
  uint64_t id = 0;
  bool inside = true;  // still in the resolve() call
  bool answered = false;
  proxy::ServerList list;
};

// {{transport =, ip =, port =}, ...} or nil, err. Pushes only (bridge.h: cannot raise).
int push_servers(lua_State* L, const proxy::ServerList& list) {
  if (list.servers.empty()) {
    lua_pushnil(L);
    const std::string& err = list.error.empty() ? std::string("no servers found") : list.error;
    lua_pushlstring(L, err.data(), err.size());
    return 2;
  }
  lua_createtable(L, static_cast<int>(list.servers.size()), 0);
  for (size_t i = 0; i < list.servers.size(); ++i) {
    const core::Peer& p = list.servers[i];
    lua_createtable(L, 0, 3);
    set_peer_fields(L, p);
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
  return 1;
}

}  // namespace

int dns_resolve(lua_State* L) {
  std::string_view text = uri_arg(L, 1);
  if (text.empty()) return luaL_typeerror(L, 1, "URI string or uri");
  GenerationState* g = gen_of(L);
  Fault f;
  int pushed = -1;  // results pushed already; -1 = the request waits for the answer
  {
    core::Uri buf;
    const core::Uri* r = sip_uri_arg(L, 1, text, buf, f);
    const char* err = nullptr;
    uint64_t id = 0;
    if (!r) {
      // f says why
    } else if (!g->resolver || !g->policy) {
      f.fail(false, "DNS is not available here");
    } else if ((id = begin_wait(L, &err)) == 0) {
      f.fail(true, "dns.resolve: %s", err);
    } else {
      auto w = std::make_shared<DnsWait>();
      w->policy = g->policy;
      w->id = id;
      g->resolver->resolve(*r, [w](proxy::ServerList list) {
        if (w->inside) {
          w->list = std::move(list);
          w->answered = true;
          return;
        }
        // Later, from the worker's loop: the request's coroutine carries on with the servers.
        w->policy->resume(w->id, [&list](lua_State* T) { return push_servers(T, list); });
      });
      w->inside = false;
      if (w->answered) {
        g->running->waiting = false;  // it never suspended
        pushed = push_servers(L, w->list);
      }
    }
  }
  if (!f.set() && pushed < 0) return lua_yield(L, 0);  // nothing with a destructor is alive here
  return conclude(L, f, pushed);
}

// ---- auth: digest authentication (RFC 3261 §22, RFC 7616/8760) ----

namespace {

// The optional realm argument at `idx` (nil or absent = the configured realm).
std::string_view realm_arg(lua_State* L, int idx) {
  if (lua_isnoneornil(L, idx)) return {};
  size_t len;
  const char* r = luaL_checklstring(L, idx, &len);
  return {r, len};
}

}  // namespace

int auth_verify(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  std::string_view realm = realm_arg(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  Fault f;
  int pushed = 0;
  {
    proxy::Ha1Set ha1;
    bool given = !lua_isnil(L, 3);
    if (given) {
      lua_pushnil(L);
      while (lua_next(L, 3) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
          lua_pop(L, 2);
          f.fail(true, "bad argument #3 to 'verify' (expected {[\"SHA-256\"] = hex, MD5 = hex, ...})");
          break;
        }
        size_t kl, vl;
        const char* k = lua_tolstring(L, -2, &kl);
        const char* v = lua_tolstring(L, -1, &vl);
        ha1.emplace_back(std::string(k, kl), std::string(v, vl));
        lua_pop(L, 1);
      }
    }
    if (f.set()) {
    } else if (!core::quotable(realm)) {
      f.fail(true, "bad argument #2 to 'verify' (a realm without quotes, backslashes or control characters expected)");
    } else if (!ctx->g->services) {
      f.fail(false, "authentication is not available here");
    } else {
      proxy::AuthResult r = ctx->g->services->auth_verify(*ctx->req, realm, given ? &ha1 : nullptr);
      if (r.ok) {
        push_sv(L, r.user);
        pushed = 1;
      } else {
        lua_pushnil(L);
        push_sv(L, r.reason);
        pushed = 2;
      }
    }
  }
  return conclude(L, f, pushed);
}

int auth_challenge(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  std::string_view realm = realm_arg(L, 2);
  Fault f;
  {
    if (!core::quotable(realm)) {
      f.fail(true, "bad argument #2 to 'challenge' (a realm without quotes, backslashes or control characters expected)");
    } else if (!ctx->g->services) {
      f.fail(false, "authentication is not available here");
    } else if (auto d = ctx->g->services->auth_challenge(*ctx->req, realm)) {
      decide(L, ctx, std::move(*d));
    } else {
      f.fail(false, "authentication is not configured (config auth)");
    }
  }
  return conclude(L, f);
}

int auth_username(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  std::string_view realm = realm_arg(L, 2);
  Fault f;
  int pushed = 0;
  {
    if (!core::quotable(realm)) {
      f.fail(true, "bad argument #2 to 'username' (a realm without quotes, backslashes or control characters expected)");
    } else if (!ctx->g->services || !ctx->g->services->auth_enabled()) {
      f.fail(false, "authentication is not configured (config auth)");
    } else if (auto u = ctx->g->services->auth_username(*ctx->req, realm)) {
      push_sv(L, *u);
      pushed = 1;
    } else {
      f.fail(false, "no credentials");
    }
  }
  return conclude(L, f, pushed);
}

}  // namespace sb::scripts::detail
