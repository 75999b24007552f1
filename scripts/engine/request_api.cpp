// The request object (`req`) and URI values: the C functions behind their rows of the export
// table. See bridge.h for the rules that keep Lua errors away from live C++ objects.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>

#include "core/address.h"
#include "core/header_id.h"
#include "core/message.h"
#include "core/response.h"
#include "core/sip_headers.h"
#include "core/text.h"
#include "scripts/engine/bridge.h"

namespace sb::scripts::detail {

static_assert(std::is_trivially_destructible_v<core::Uri>,
              "a uri userdata has no __gc: core::Uri must stay a plain view");
static_assert(std::is_trivially_destructible_v<RequestHandle>);

namespace {

int sv_len(std::string_view s) { return static_cast<int>(std::min<size_t>(s.size(), 200)); }

void push_sv(lua_State* L, std::string_view s) { lua_pushlstring(L, s.data(), s.size()); }

bool same_header(std::string_view a, std::string_view b) {
  core::HeaderId ia = core::header_id(a), ib = core::header_id(b);
  if (ia != core::HeaderId::Other || ib != core::HeaderId::Other) return ia == ib;
  return core::iequals(a, b);
}

std::string_view line_name(std::string_view line) {
  return core::trim(line.substr(0, line.find(':')));
}
std::string_view line_value(std::string_view line) {
  size_t c = line.find(':');
  return c == std::string_view::npos ? std::string_view{} : core::trim(line.substr(c + 1));
}

// A header value may not smuggle in a line break (header injection).
bool clean_value(std::string_view v) {
  return v.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// Every current value of header `name`, the policy's edits included, in order; list headers
// (§7.3.1) split into elements. f(value) returns false to stop.
template <class F>
void for_each_header_value(proxy::PolicyRequest& req, std::string_view name, F&& f) {
  const proxy::RequestEdits& e = req.edits();
  core::HeaderId id = core::header_id(name);
  bool list = id != core::HeaderId::Other && core::header_is_list(id);
  auto emit = [&](std::string_view v) {
    if (!list) return f(v);
    bool go = true;
    core::for_each_list_element(v, [&](std::string_view el) {
      if (!el.empty()) go = f(el);
      return go;
    });
    return go;
  };
  const std::string* set = nullptr;
  for (const auto& [n, v] : e.set_headers)
    if (same_header(n, name)) set = &v;
  bool removed = std::any_of(e.remove_headers.begin(), e.remove_headers.end(),
                             [&](const std::string& n) { return same_header(n, name); });
  if (set) {
    if (!emit(*set)) return;
  } else if (!removed) {
    for (const core::Header& h : req.message().headers()) {
      bool match = id != core::HeaderId::Other
                        ? h.id == id
                        : h.id == core::HeaderId::Other && core::iequals(h.name, name);
      if (match && !emit(h.value)) return;
    }
  }
  for (const std::string& line : e.add_headers)
    if (same_header(line_name(line), name) && !emit(line_value(line))) return;
}

// Headers the proxy core owns in a forwarded request: a script changing them would break
// transactions (Via, CSeq), dialogs (From, To, Call-ID) or framing.
bool proxy_owned(core::HeaderId id) {
  switch (id) {
    case core::HeaderId::Via: case core::HeaderId::From: case core::HeaderId::To:
    case core::HeaderId::CallId: case core::HeaderId::CSeq: case core::HeaderId::ContentLength:
    case core::HeaderId::MaxForwards: case core::HeaderId::RecordRoute:
      return true;
    default:
      return false;
  }
}

// Headers a response built by the proxy gets from the request (§8.2.6) or from its framing.
bool response_owned(core::HeaderId id) {
  switch (id) {
    case core::HeaderId::Via: case core::HeaderId::From: case core::HeaderId::To:
    case core::HeaderId::CallId: case core::HeaderId::CSeq: case core::HeaderId::ContentLength:
      return true;
    default:
      return false;
  }
}

bool check_edit(std::string_view name, Fault& f) {
  if (!core::is_token(name)) {
    f.fail(true, "bad header name '%.*s'", sv_len(name), name.data());
    return false;
  }
  if (proxy_owned(core::header_id(name))) {
    f.fail(true, "%.*s is maintained by the proxy and cannot be changed by a script",
           sv_len(name), name.data());
    return false;
  }
  return true;
}

bool check_value(std::string_view name, std::string_view value, Fault& f) {
  if (clean_value(value)) return true;
  f.fail(false, "bad value for %.*s: line breaks are not allowed", sv_len(name), name.data());
  return false;
}

void erase_header(proxy::RequestEdits& e, std::string_view name) {
  std::erase_if(e.set_headers, [&](const auto& p) { return same_header(p.first, name); });
  std::erase_if(e.remove_headers, [&](const std::string& n) { return same_header(n, name); });
  std::erase_if(e.add_headers,
                [&](const std::string& l) { return same_header(line_name(l), name); });
}

bool check_target_uri(std::string_view text, const char* what, Fault& f) {
  auto r = core::parse_uri(text);
  if (!r) {
    f.fail(false, "bad %s '%.*s': %s", what, sv_len(text), text.data(), r.error().reason);
    return false;
  }
  if (!r->is_sip()) {
    f.fail(false, "bad %s '%.*s': not a sip: or sips: URI", what, sv_len(text), text.data());
    return false;
  }
  return true;
}

bool set_uri(RequestContext* ctx, std::string_view text, bool raise, Fault& f) {
  auto r = core::parse_uri(text);
  if (!r) {
    f.fail(raise, "bad Request-URI '%.*s': %s", sv_len(text), text.data(), r.error().reason);
    return false;
  }
  if (!r->is_sip()) {
    f.fail(raise, "bad Request-URI '%.*s': not a sip: or sips: URI", sv_len(text), text.data());
    return false;
  }
  ctx->req->edits().ruri = std::string(text);
  return true;
}

// A contact's destination from its `source` table ({transport, ip, port}).
bool read_source(lua_State* L, int t, proxy::Target& target, Fault& f) {
  get_key(L, t, Key::Transport);
  get_key(L, t, Key::Ip);
  get_key(L, t, Key::Port);
  size_t tl = 3, il = 0;
  const char* tr = lua_type(L, -3) == LUA_TSTRING ? lua_tolstring(L, -3, &tl) : "UDP";
  const char* ip = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &il) : nullptr;
  int isnum = 0;
  lua_Integer port = lua_tointegerx(L, -1, &isnum);
  lua_pop(L, 3);
  auto proto = core::protocol_from_name(std::string_view(tr, tl));
  if (!proto || !ip || !isnum || port <= 0 || port > 65535) {
    f.fail(false, "bad contact source: {transport=, ip=, port=} expected");
    return false;
  }
  auto ep = core::Endpoint::parse(std::string_view(ip, il), static_cast<uint16_t>(port));
  if (!ep) {
    f.fail(false, "bad contact source ip '%.*s'", sv_len(std::string_view(ip, il)), ip);
    return false;
  }
  core::Peer peer;
  peer.protocol = *proto;
  peer.endpoint = *ep;
  target.destination = peer;
  return true;
}

// One target: a URI string, a uri, or a contact table ({uri=, q=, path=, source=} as
// location.lookup returns them; the `_target` id finds the binding's exact Target).
bool read_target(lua_State* L, int idx, RequestContext* ctx, proxy::Target& t, Fault& f) {
  idx = lua_absindex(L, idx);
  int type = lua_type(L, idx);
  const core::Uri* parsed = type == LUA_TUSERDATA ? test_uri(L, idx) : nullptr;  // a uri value
  if (type != LUA_TSTRING && type != LUA_TTABLE && !parsed) {
    f.fail(true, "bad target: a URI string, a uri or a contact table expected, got %s",
           luaL_typename(L, idx));
    return false;
  }
  std::string_view uri = uri_arg(L, idx);
  if (uri.empty()) {
    f.fail(true, "bad target: a contact table needs a uri field");
    return false;
  }
  // The binding a contact table of location.lookup stands for.
  const proxy::Target* binding = nullptr;
  if (type == LUA_TTABLE && ctx) {
    if (get_key(L, idx, Key::Target) == LUA_TNUMBER && lua_isinteger(L, -1)) {
      auto id = static_cast<uint64_t>(lua_tointeger(L, -1));
      for (const auto& [tid, target] : ctx->targets)
        if (tid == id) binding = &target;
    }
    lua_pop(L, 1);
  }
  // A uri value, or a binding's own contact unchanged, was parsed when it was made;
  // any other text is checked here.
  const bool checked = (parsed && parsed->is_sip()) || (binding && binding->uri == uri);
  if (!checked && !check_target_uri(uri, "target URI", f)) return false;
  if (type != LUA_TTABLE) {
    t.uri = uri;
    return true;
  }
  if (binding) t = *binding;
  t.uri = uri;
  int qt = get_key(L, idx, Key::Q);
  if (qt == LUA_TNUMBER) {
    double q = lua_tonumber(L, -1);
    if (!(q >= 0.0 && q <= 1.0)) f.fail(true, "bad contact q %g: between 0 and 1 expected", q);
    else t.q1000 = static_cast<uint16_t>(std::lround(q * 1000.0));
  } else if (qt != LUA_TNIL) {
    f.fail(true, "bad contact q: a number expected, got %s", luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  int pt = get_key(L, idx, Key::Path);
  if (pt == LUA_TTABLE) {
    t.route.clear();
    int top = lua_gettop(L);
    lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, top));
    for (lua_Integer i = 1; i <= n && !f.set(); ++i) {
      if (lua_rawgeti(L, top, i) != LUA_TSTRING) {
        f.fail(true, "bad contact path: a list of strings expected");
      } else {
        size_t len;
        const char* s = lua_tolstring(L, -1, &len);
        if (!clean_value(std::string_view(s, len))) f.fail(false, "bad contact path value");
        else t.route.emplace_back(s, len);
      }
      lua_pop(L, 1);
    }
  } else if (pt != LUA_TNIL) {
    f.fail(true, "bad contact path: a list of strings expected, got %s", luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  if (!t.destination) {
    if (get_key(L, idx, Key::Source) == LUA_TTABLE) read_source(L, lua_gettop(L), t, f);
    lua_pop(L, 1);
  }
  return !f.set();
}

// Targets for relay/redirect: nil (none), one target, or a list of them.
bool read_targets(lua_State* L, int idx, RequestContext* ctx, std::vector<proxy::Target>& out,
                  Fault& f) {
  idx = lua_absindex(L, idx);
  int type = lua_type(L, idx);
  if (type == LUA_TNONE || type == LUA_TNIL) return true;
  bool list = false;
  if (type == LUA_TTABLE) {
    list = get_key(L, idx, Key::Uri) == LUA_TNIL;
    lua_pop(L, 1);
  }
  if (!list) {
    int top = lua_gettop(L);
    proxy::Target t;
    bool ok = read_target(L, idx, ctx, t, f);
    lua_settop(L, top);
    if (ok) out.push_back(std::move(t));
    return ok;
  }
  lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, idx));
  if (n == 0) {
    f.fail(false, "no targets (an empty list)");
    return false;
  }
  for (lua_Integer i = 1; i <= n; ++i) {
    int top = lua_gettop(L);
    lua_rawgeti(L, idx, i);
    proxy::Target t;
    bool ok = read_target(L, -1, ctx, t, f);
    lua_settop(L, top);
    if (!ok) return false;
    out.push_back(std::move(t));
  }
  return true;
}

bool read_relay_options(lua_State* L, int idx, proxy::RelayOptions& o, Fault& f) {
  if (lua_isnoneornil(L, idx)) return true;
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t kl = 0;
    const char* k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : nullptr;
    std::string_view key = k ? std::string_view(k, kl) : std::string_view{};
    int vt = lua_type(L, -1);
    if (key == "mode") {
      size_t vl = 0;
      const char* v = vt == LUA_TSTRING ? lua_tolstring(L, -1, &vl) : "";
      std::string_view mode(v, vl);
      if (mode == "parallel") o.mode = proxy::RelayOptions::Mode::Parallel;
      else if (mode == "serial") o.mode = proxy::RelayOptions::Mode::Serial;
      else if (mode == "q") o.mode = proxy::RelayOptions::Mode::ByQ;
      else f.fail(true, "bad relay mode: \"parallel\", \"serial\" or \"q\" expected");
    } else if (key == "recurse") {
      if (vt != LUA_TBOOLEAN) f.fail(true, "bad relay recurse: true or false expected");
      else o.recurse_3xx = lua_toboolean(L, -1) != 0;
    } else if (key == "timeout") {
      int isnum = 0;
      lua_Integer ms = lua_tointegerx(L, -1, &isnum);
      if (vt != LUA_TNUMBER || !isnum || ms < 0) f.fail(true, "bad relay timeout: milliseconds expected");
      else o.timeout_ms = ms;
    } else if (key == "failover_codes") {
      if (vt != LUA_TTABLE) {
        f.fail(true, "bad failover_codes: a list of status codes expected");
      } else {
        int t = lua_gettop(L);
        lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, t));
        o.failover_codes.clear();
        for (lua_Integer i = 1; i <= n && !f.set(); ++i) {
          lua_rawgeti(L, t, i);
          int isnum = 0;
          lua_Integer code = lua_tointegerx(L, -1, &isnum);
          if (lua_type(L, -1) != LUA_TNUMBER || !isnum || code < 300 || code > 699)
            f.fail(true, "bad failover_codes: status codes 300-699 expected");
          else o.failover_codes.push_back(static_cast<int>(code));
          lua_pop(L, 1);
        }
      }
    } else {
      f.fail(true, "unknown relay option '%.*s' (mode, timeout, failover_codes)",
             sv_len(key), k ? k : "?");
    }
    if (f.set()) {
      lua_pop(L, 2);
      return false;
    }
    lua_pop(L, 1);
  }
  return true;
}

bool check_header_line(std::string_view name, std::string_view value, Fault& f) {
  if (!core::is_token(name)) {
    f.fail(true, "bad header name '%.*s'", sv_len(name), name.data());
    return false;
  }
  if (response_owned(core::header_id(name))) {
    f.fail(true, "%.*s of a response is set by the proxy", sv_len(name), name.data());
    return false;
  }
  return check_value(name, value, f);
}

void add_line(std::vector<std::string>& out, std::string_view name, std::string_view value) {
  std::string line;
  line.reserve(name.size() + 2 + value.size());
  line.append(name).append(": ").append(value);
  out.push_back(std::move(line));
}

// Response headers: {"Name: value", ...} and/or {Name = value | {value, ...}}. Named entries
// come after the listed lines, sorted by name so the output does not depend on hashing.
bool read_header_lines(lua_State* L, int idx, std::vector<std::string>& out, Fault& f) {
  idx = lua_absindex(L, idx);
  lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, idx));
  for (lua_Integer i = 1; i <= n && !f.set(); ++i) {
    if (lua_rawgeti(L, idx, i) != LUA_TSTRING) {
      f.fail(true, "bad header line: \"Name: value\" expected");
    } else {
      size_t len;
      const char* s = lua_tolstring(L, -1, &len);
      std::string_view line(s, len);
      if (line.find(':') == std::string_view::npos)
        f.fail(true, "bad header line '%.*s': \"Name: value\" expected", sv_len(line), s);
      else if (check_header_line(line_name(line), line_value(line), f))
        add_line(out, line_name(line), line_value(line));
    }
    lua_pop(L, 1);
  }
  std::vector<std::string> named;
  lua_pushnil(L);
  while (!f.set() && lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TNUMBER && lua_isinteger(L, -2)) {
      lua_Integer k = lua_tointeger(L, -2);
      if (k >= 1 && k <= n) {
        lua_pop(L, 1);
        continue;
      }
    }
    if (lua_type(L, -2) != LUA_TSTRING) {
      f.fail(true, "bad headers table: names must be strings");
      lua_pop(L, 2);
      break;
    }
    size_t nl;
    const char* np = lua_tolstring(L, -2, &nl);
    std::string_view name(np, nl);
    int vt = lua_type(L, -1);
    if (vt == LUA_TSTRING) {
      size_t vl;
      const char* v = lua_tolstring(L, -1, &vl);
      if (check_header_line(name, std::string_view(v, vl), f)) add_line(named, name, {v, vl});
    } else if (vt == LUA_TNUMBER && lua_isinteger(L, -1)) {
      std::string v = std::to_string(lua_tointeger(L, -1));
      if (check_header_line(name, v, f)) add_line(named, name, v);
    } else if (vt == LUA_TTABLE) {
      int t = lua_gettop(L);
      lua_Integer m = static_cast<lua_Integer>(lua_rawlen(L, t));
      for (lua_Integer i = 1; i <= m && !f.set(); ++i) {
        if (lua_rawgeti(L, t, i) != LUA_TSTRING) {
          f.fail(true, "bad value for %.*s: strings expected", sv_len(name), np);
        } else {
          size_t vl;
          const char* v = lua_tolstring(L, -1, &vl);
          if (check_header_line(name, std::string_view(v, vl), f)) add_line(named, name, {v, vl});
        }
        lua_pop(L, 1);
      }
    } else {
      f.fail(true, "bad value for %.*s: a string or a list of strings expected", sv_len(name), np);
    }
    if (f.set()) {
      lua_pop(L, 2);
      break;
    }
    lua_pop(L, 1);
  }
  std::stable_sort(named.begin(), named.end(), [](const std::string& a, const std::string& b) {
    std::string_view na = line_name(a), nb = line_name(b);
    return std::lexicographical_compare(na.begin(), na.end(), nb.begin(), nb.end(),
                                        [](char x, char y) {
                                          return core::ascii_lower(x) < core::ascii_lower(y);
                                        });
  });
  for (auto& l : named) out.push_back(std::move(l));
  return !f.set();
}

std::string contact_value(const proxy::Target& t) {
  std::string c = "<" + t.uri + ">";
  if (t.q1000 < 1000) {
    char q[16];
    snprintf(q, sizeof q, "%d.%03d", t.q1000 / 1000, t.q1000 % 1000);
    std::string_view qs(q);
    while (qs.back() == '0') qs.remove_suffix(1);  // "0.500" -> "0.5", "0.000" -> "0."
    if (qs.back() == '.') qs.remove_suffix(1);
    c.append(";q=").append(qs);
  }
  return c;
}

void push_name_addr(lua_State* L, const core::NameAddr& na) {
  lua_createtable(L, 0, 3);
  push_key(L, Key::Uri);
  push_uri(L, na.uri);  // From and To parsed with the message (has_from / has_to)
  lua_rawset(L, -3);
  std::string_view tag = na.tag();
  if (!tag.empty()) {
    push_key(L, Key::Tag);
    push_sv(L, tag);
    lua_rawset(L, -3);
  }
  if (!na.display.empty()) {
    push_key(L, Key::Display);
    push_sv(L, na.display);
    lua_rawset(L, -3);
  }
}

const core::Uri* check_uri(lua_State* L, int idx) {
  const core::Uri* u = test_uri(L, idx);
  if (!u) luaL_typeerror(L, idx, kUriMeta);
  return u;
}

}  // namespace

// ---- shared helpers (bridge.h) ----

int conclude(lua_State* L, const Fault& f) {
  if (!f.set()) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return conclude(L, f, 0);
}

int conclude(lua_State* L, const Fault& f, int pushed) {
  if (!f.set()) return pushed;
  if (f.raise) return luaL_error(L, "%s", f.text);
  lua_pushnil(L);
  lua_pushstring(L, f.text);
  return 2;
}

size_t where(lua_State* L, int level, char* buf, size_t n) {
  lua_Debug ar;
  for (int l = level; lua_getstack(L, l, &ar); ++l) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) continue;
    // Every decision records this: formatted by hand (snprintf was most of its cost), cut
    // at n - 1 characters as snprintf would.
    const char* src = ar.source && ar.source[0] == '@' ? ar.source + 1 : ar.short_src;
    char num[16];
    size_t nl = sizeof num;
    for (unsigned v = static_cast<unsigned>(ar.currentline); v; v /= 10) num[--nl] = char('0' + v % 10);
    size_t len = 0;
    auto put = [&](const char* p, size_t k) {
      k = std::min(k, n - 1 - len);
      std::memcpy(buf + len, p, k);
      len += k;
    };
    put(src, std::strlen(src));
    put(":", 1);
    put(num + nl, sizeof num - nl);
    buf[len] = 0;
    return len;
  }
  int len = snprintf(buf, n, "%s", gen_of(L)->path.c_str());
  return std::min(static_cast<size_t>(len < 0 ? 0 : len), n - 1);
}

bool push_uri(lua_State* L, std::string_view text, const char** err) {
  auto* mem = static_cast<char*>(lua_newuserdatauv(L, sizeof(core::Uri) + text.size(), 0));
  char* chars = mem + sizeof(core::Uri);
  if (!text.empty()) std::memcpy(chars, text.data(), text.size());
  auto r = core::parse_uri(std::string_view(chars, text.size()));
  if (!r) {
    lua_pop(L, 1);
    *err = r.error().reason;
    return false;
  }
  new (mem) core::Uri(*r);  // views into the userdata's own bytes, which Lua never moves
  lua_rawgeti(L, LUA_REGISTRYINDEX, gen_of(L)->uri_mt_ref);
  lua_setmetatable(L, -2);
  return true;
}

void push_uri(lua_State* L, const core::Uri& parsed) {
  const std::string_view raw = parsed.raw;
  auto* mem = static_cast<char*>(lua_newuserdatauv(L, sizeof(core::Uri) + raw.size(), 0));
  char* chars = mem + sizeof(core::Uri);
  if (!raw.empty()) std::memcpy(chars, raw.data(), raw.size());
  // The message parsed this URI already: move its views onto the copy instead of parsing the
  // copy again. A view outside the text (none today) would make the copy parse after all.
  core::Uri u = parsed;
  bool moved = true;
  auto rebase = [&](std::string_view& v) {
    if (v.data() == nullptr) return;
    if (v.data() < raw.data() || v.data() + v.size() > raw.data() + raw.size()) {
      moved = false;
      return;
    }
    v = std::string_view(chars + (v.data() - raw.data()), v.size());
  };
  for (std::string_view* v : {&u.raw, &u.scheme_raw, &u.user, &u.password, &u.host, &u.params,
                              &u.headers, &u.opaque})
    rebase(*v);
  if (!moved) {
    auto r = core::parse_uri(std::string_view(chars, raw.size()));
    u = r ? *r : core::Uri{};  // it parsed once: it parses again
  }
  new (mem) core::Uri(u);
  lua_rawgeti(L, LUA_REGISTRYINDEX, gen_of(L)->uri_mt_ref);
  lua_setmetatable(L, -2);
}

std::string_view uri_arg(lua_State* L, int idx) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n;
      const char* s = lua_tolstring(L, idx, &n);
      return {s, n};
    }
    case LUA_TUSERDATA:
      if (const core::Uri* u = test_uri(L, idx)) return u->raw;
      return {};
    case LUA_TTABLE: {
      std::string_view v;
      if (get_key(L, idx, Key::Uri) != LUA_TNIL) v = uri_arg(L, -1);  // the table keeps it alive
      lua_pop(L, 1);
      return v;
    }
    default:
      return {};
  }
}

void push_method(lua_State* L, core::Method m, std::string_view text) {
  auto i = static_cast<size_t>(m);
  if (m != core::Method::Other && i < kMethodNames && text == core::method_name(m))
    lua_rawgeti(L, LUA_REGISTRYINDEX, gen_of(L)->method_names[i]);
  else
    push_sv(L, text);
}

void push_protocol(lua_State* L, core::Protocol p) {
  auto i = static_cast<size_t>(p);
  if (i < kProtocolNames)
    lua_rawgeti(L, LUA_REGISTRYINDEX, gen_of(L)->protocol_names[i]);
  else
    push_sv(L, core::protocol_name(p));
}

void set_peer_fields(lua_State* L, const core::Peer& p) {
  push_key(L, Key::Transport);
  push_protocol(L, p.protocol);
  lua_rawset(L, -3);
  push_key(L, Key::Ip);
  push_ip(L, p.endpoint);
  lua_rawset(L, -3);
  push_key(L, Key::Port);
  lua_pushinteger(L, p.endpoint.port());
  lua_rawset(L, -3);
}

void push_ip(lua_State* L, const core::Endpoint& ep) {
  char buf[INET6_ADDRSTRLEN];
  const size_t len = ep.ip_into(buf);
  lua_pushlstring(L, buf, len);
}

RequestContext* check_request(lua_State* L, int idx) {
  GenerationState* g = gen_of(L);
  auto* h = static_cast<RequestHandle*>(lua_touserdata(L, idx));
  // Nearly always the running request's own handle: the same address is that live object
  // (it sits on the coroutine's stack), so its metatable need not be looked at.
  if (!h || !g->running || h != g->running->handle)
    h = static_cast<RequestHandle*>(test_object(L, idx, g->request_mt));
  if (!h) luaL_typeerror(L, idx, kRequestMeta);
  if (!h->ctx) luaL_error(L, "request is no longer valid (its decision was already made)");
  return h->ctx;
}

void decide(lua_State* L, RequestContext* ctx, proxy::Decision&& d) {
  char origin[512];
  d.origin.assign(origin, where(L, 1, origin, sizeof origin));
  ctx->decision = std::move(d);
  ctx->decided = true;
}

void push_request(lua_State* L, RequestContext* ctx) {
  auto* h = static_cast<RequestHandle*>(lua_newuserdatauv(L, sizeof(RequestHandle), 1));
  h->ctx = ctx;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->g->request_mt_ref);
  lua_setmetatable(L, -2);
  ctx->handle = h;
}

void push_failure(lua_State* L, const proxy::FailureInfo& best) {
  lua_createtable(L, 0, 3);
  push_key(L, Key::Status);
  lua_pushinteger(L, best.status);
  lua_rawset(L, -3);
  push_key(L, Key::Reason);
  push_sv(L, best.reason);
  lua_rawset(L, -3);
  push_key(L, Key::Attempted);
  lua_createtable(L, static_cast<int>(best.attempted.size()), 0);
  for (size_t i = 0; i < best.attempted.size(); ++i) {
    push_sv(L, best.attempted[i]);
    lua_rawseti(L, -2, static_cast<lua_Integer>(i + 1));
  }
  lua_rawset(L, -3);
}

// ---- request fields ----

int req_method(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  const core::Message& m = ctx->req->message();
  push_method(L, m.method(), m.method_text());
  return 1;
}

int req_uri(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  if (lua_getiuservalue(L, 1, 1) == LUA_TUSERDATA) return 1;  // cached
  lua_pop(L, 1);
  const auto& ruri = ctx->req->edits().ruri;
  const char* err = nullptr;
  if (!ruri) {
    push_uri(L, ctx->req->message().ruri());
  } else if (!push_uri(L, *ruri, &err)) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, 1);
  return 1;
}

int req_from(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  const core::Message& m = ctx->req->message();
  if (m.has_from()) push_name_addr(L, m.from());
  else lua_pushnil(L);
  return 1;
}

int req_to(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  const core::Message& m = ctx->req->message();
  if (m.has_to()) push_name_addr(L, m.to());
  else lua_pushnil(L);
  return 1;
}

int req_call_id(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  push_sv(L, ctx->req->message().call_id());
  return 1;
}

int req_cseq(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  const core::CSeq& c = ctx->req->message().cseq();
  lua_createtable(L, 0, 2);
  push_key(L, Key::Number);
  lua_pushinteger(L, c.number);
  lua_rawset(L, -3);
  push_key(L, Key::Method);
  push_sv(L, c.method_text);
  lua_rawset(L, -3);
  return 1;
}

namespace {
bool source_trusted(const RequestContext* ctx) {
  return ctx->g->services && ctx->g->services->is_trusted(ctx->req->source().endpoint);
}
}  // namespace

int req_source(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  lua_createtable(L, 0, 4);
  push_key(L, Key::Trusted);
  lua_pushboolean(L, source_trusted(ctx));
  lua_rawset(L, -3);
  set_peer_fields(L, ctx->req->source());
  return 1;
}

int req_trusted(lua_State* L) {
  lua_pushboolean(L, source_trusted(check_request(L, 1)));
  return 1;
}

int req_body(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  push_sv(L, ctx->req->message().body());
  return 1;
}

// ---- request methods ----

int req_header(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  size_t nl;
  const char* n = luaL_checklstring(L, 2, &nl);
  bool found = false;
  for_each_header_value(*ctx->req, std::string_view(n, nl), [&](std::string_view v) {
    push_sv(L, v);
    found = true;
    return false;
  });
  if (!found) lua_pushnil(L);
  return 1;
}

int req_headers(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  size_t nl;
  const char* n = luaL_checklstring(L, 2, &nl);
  lua_newtable(L);
  lua_Integer i = 0;
  for_each_header_value(*ctx->req, std::string_view(n, nl), [&](std::string_view v) {
    push_sv(L, v);
    lua_rawseti(L, -2, ++i);
    return true;
  });
  return 1;
}

int req_set_header(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  size_t nl, vl;
  const char* n = luaL_checklstring(L, 2, &nl);
  const char* v = luaL_checklstring(L, 3, &vl);
  Fault f;
  {
    std::string_view name(n, nl), value(v, vl);
    if (check_edit(name, f) && check_value(name, value, f)) {
      proxy::RequestEdits& e = ctx->req->edits();
      erase_header(e, name);
      e.set_headers.emplace_back(std::string(name), std::string(value));
    }
  }
  return conclude(L, f);
}

int req_add_header(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  size_t nl, vl;
  const char* n = luaL_checklstring(L, 2, &nl);
  const char* v = luaL_checklstring(L, 3, &vl);
  Fault f;
  {
    std::string_view name(n, nl), value(v, vl);
    if (check_edit(name, f) && check_value(name, value, f))
      add_line(ctx->req->edits().add_headers, name, value);
  }
  return conclude(L, f);
}

int req_remove_header(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  size_t nl;
  const char* n = luaL_checklstring(L, 2, &nl);
  Fault f;
  {
    std::string_view name(n, nl);
    if (check_edit(name, f)) {
      proxy::RequestEdits& e = ctx->req->edits();
      erase_header(e, name);
      e.remove_headers.emplace_back(name);
    }
  }
  return conclude(L, f);
}

int req_set_uri(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  std::string_view text = uri_arg(L, 2);
  if (text.empty()) return luaL_typeerror(L, 2, "URI string or uri");
  Fault f;
  { set_uri(ctx, text, false, f); }
  if (!f.set()) {
    lua_pushnil(L);
    lua_setiuservalue(L, 1, 1);  // drop the cached req.uri
  }
  return conclude(L, f);
}

int req_newindex(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  const char* key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
  if (std::strcmp(key, "uri") != 0)
    return luaL_error(L, "request field '%s' cannot be assigned (only req.uri can)", key);
  std::string_view text = uri_arg(L, 3);
  if (text.empty()) return luaL_error(L, "req.uri must be assigned a URI string or a uri");
  Fault f;
  { set_uri(ctx, text, true, f); }
  if (f.set()) return luaL_error(L, "%s", f.text);
  lua_pushnil(L);
  lua_setiuservalue(L, 1, 1);
  return 0;
}

int req_tostring(lua_State* L) {
  auto* h = static_cast<RequestHandle*>(luaL_checkudata(L, 1, kRequestMeta));
  if (!h->ctx) {
    lua_pushliteral(L, "request (no longer valid)");
    return 1;
  }
  const core::Message& m = h->ctx->req->message();
  lua_pushliteral(L, "request ");
  push_sv(L, m.method_text());
  lua_pushliteral(L, " ");
  push_sv(L, m.ruri_text());
  lua_concat(L, 4);
  return 1;
}

int req_in_dialog(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  lua_pushboolean(L, ctx->req->in_dialog());
  return 1;
}

int req_routed_by_us(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  lua_pushboolean(L, ctx->req->routed_by_us());
  return 1;
}

int req_record_route(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  ctx->record_route = true;
  if (ctx->decided && ctx->decision.kind == proxy::Decision::Kind::Relay)
    ctx->decision.relay.record_route = true;
  lua_pushboolean(L, 1);
  return 1;
}

int req_reply(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  lua_Integer code = luaL_checkinteger(L, 2);
  luaL_argcheck(L, code >= 200 && code <= 699, 2, "a final status code (200-699) expected");
  size_t rl = 0, bl = 0;
  const char* reason = luaL_optlstring(L, 3, nullptr, &rl);
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  const char* body = luaL_optlstring(L, 5, nullptr, &bl);
  Fault f;
  {
    proxy::Decision d = proxy::Decision::reply(static_cast<int>(code));
    std::string_view r = reason ? std::string_view(reason, rl)
                                : core::default_reason(static_cast<int>(code));
    if (!clean_value(r)) f.fail(false, "bad reason phrase: line breaks are not allowed");
    d.reason = r;
    if (!f.set() && lua_istable(L, 4)) read_header_lines(L, 4, d.headers, f);
    if (body) d.body.assign(body, bl);
    if (!f.set()) decide(L, ctx, std::move(d));
  }
  return conclude(L, f);
}

int req_relay(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  Fault f;
  {
    proxy::Decision d;
    d.kind = proxy::Decision::Kind::Relay;
    if (read_targets(L, 2, ctx, d.targets, f) && read_relay_options(L, 3, d.relay, f)) {
      d.relay.record_route = ctx->record_route;
      decide(L, ctx, std::move(d));
    }
  }
  return conclude(L, f);
}

int req_redirect(lua_State* L) {
  RequestContext* ctx = check_request(L, 1);
  if (lua_isnoneornil(L, 2)) return luaL_argerror(L, 2, "contacts expected");
  lua_Integer code = luaL_optinteger(L, 3, 302);
  luaL_argcheck(L, code >= 300 && code <= 399, 3, "a 3xx status code expected");
  lua_settop(L, 3);
  Fault f;
  {
    std::vector<proxy::Target> targets;
    if (read_targets(L, 2, ctx, targets, f)) {
      proxy::Decision d;
      d.kind = proxy::Decision::Kind::Redirect;
      d.status = static_cast<int>(code);
      d.reason = core::default_reason(d.status);
      for (const auto& t : targets) d.contacts.push_back(contact_value(t));
      decide(L, ctx, std::move(d));
    }
  }
  return conclude(L, f);
}

// ---- uri values ----

int uri_scheme(lua_State* L) {
  const core::Uri* u = check_uri(L, 1);
  luaL_Buffer b;
  char* p = luaL_buffinitsize(L, &b, u->scheme_raw.size());
  for (size_t i = 0; i < u->scheme_raw.size(); ++i) p[i] = core::ascii_lower(u->scheme_raw[i]);
  luaL_pushresultsize(&b, u->scheme_raw.size());
  return 1;
}

int uri_user(lua_State* L) {
  const core::Uri* u = check_uri(L, 1);
  if (u->user.empty()) lua_pushnil(L);
  else push_sv(L, u->user);
  return 1;
}

int uri_host(lua_State* L) {
  const core::Uri* u = check_uri(L, 1);
  if (u->host.empty()) lua_pushnil(L);
  else push_sv(L, u->host);
  return 1;
}

int uri_port(lua_State* L) {
  const core::Uri* u = check_uri(L, 1);
  if (u->port == 0) lua_pushnil(L);
  else lua_pushinteger(L, u->port);
  return 1;
}

int uri_params(lua_State* L) {
  const core::Uri* u = check_uri(L, 1);
  lua_newtable(L);
  std::string_view p = u->params;
  size_t i = 0;
  while (i < p.size()) {
    size_t e = core::find_unquoted(p, ';', i);
    if (e == std::string_view::npos) e = p.size();
    std::string_view seg = core::trim(p.substr(i, e - i));
    i = e + 1;
    if (seg.empty()) continue;
    size_t eq = seg.find('=');
    std::string_view name = core::trim(seg.substr(0, eq));
    luaL_Buffer b;
    char* out = luaL_buffinitsize(L, &b, name.size());
    for (size_t k = 0; k < name.size(); ++k) out[k] = core::ascii_lower(name[k]);
    luaL_pushresultsize(&b, name.size());
    if (eq == std::string_view::npos) lua_pushboolean(L, 1);
    else push_sv(L, core::trim(seg.substr(eq + 1)));
    lua_rawset(L, -3);
  }
  return 1;
}

int uri_aor(lua_State* L) {
  const core::Uri* u = check_uri(L, 1);
  {
    std::string aor = core::canonical_aor(*u);
    if (aor.empty()) lua_pushnil(L);
    else push_sv(L, aor);
  }
  return 1;
}

int uri_tostring(lua_State* L) {
  push_sv(L, check_uri(L, 1)->raw);
  return 1;
}

int uri_eq(lua_State* L) {
  const core::Uri* a = test_uri(L, 1);
  const core::Uri* b = test_uri(L, 2);
  lua_pushboolean(L, a && b && core::uri_equal(*a, *b));
  return 1;
}

int uri_concat(lua_State* L) {
  luaL_tolstring(L, 1, nullptr);
  luaL_tolstring(L, 2, nullptr);
  lua_concat(L, 2);
  return 1;
}

}  // namespace sb::scripts::detail
