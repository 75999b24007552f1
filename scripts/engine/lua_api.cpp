// The export table (STYLE.md 7): every name a script can use, with its documentation. The
// engine installs exactly these rows (install_api) and lua_api_markdown() turns the same rows
// into docs/lua-api.md.
#include "scripts/engine/lua_api.h"

#include <cstring>
#include <string>

#include "scripts/engine/bridge.h"

namespace sb::scripts {

namespace {

using detail::kRequestMeta;
using detail::kUriMeta;
constexpr ApiKind F = ApiKind::Function;
constexpr ApiKind V = ApiKind::Field;
constexpr ApiKind M = ApiKind::Method;

const ApiObject kObjects[] = {
    {kRequestMeta, false, "`req`: the request",
     "The request being decided, passed to `on_request(req)` and `on_failure(req, best)`. It is "
     "a handle, valid while that run lasts: a handle kept in a global and used for a later "
     "request raises `request is no longer valid`. Fields are read-only except `req.uri`; "
     "reading a field that does not exist raises an error, so a typo does not pass for `nil`."},
    {kUriMeta, false, "`uri`: URI values",
     "A parsed, immutable URI (`req.uri`, `req.from.uri`, ...). `tostring(u)` and `..` give its "
     "text; `u1 == u2` compares two URIs by the rules of RFC 3261 §19.1.4. A `uri` is accepted "
     "wherever a URI string is."},
    {"location", true, "`location`: registered contacts",
     "The location service filled by REGISTER (RFC 3261 §10)."},
    {"registrar", true, "`registrar`: REGISTER processing", "The registrar (RFC 3261 §10.3)."},
    {"log", true, "`log`: the proxy's log",
     "Lines in the proxy's log, tagged with the script's file:line and the request's Call-ID. "
     "The arguments are converted with `tostring` and concatenated (like `io.write`)."},
    {"config", true, "`config`: the running configuration",
     "A read-only view of the configuration the proxy runs with."},
    {"dns", true, "`dns`: locating SIP servers",
     "The proxy's own RFC 3263 resolver (config `dns`), for scripts that want to see or filter "
     "the servers of a target before relaying. `req:relay()` resolves its targets by itself: "
     "calling `dns.resolve` is never needed to relay."},
    {"auth", true, "`auth`: digest authentication",
     "Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760: SHA-256, MD5, SHA-512-256 "
     "with qop=auth), configured by config `auth` (docs/configuration.md). The proxy only "
     "provides the means: the script decides which requests must authenticate. A REGISTER is "
     "answered by a registrar (401, `Authorization`), any other request by a proxy (407, "
     "`Proxy-Authorization`). Nonces are stateless and expire after `auth.nonce_ttl_s`; a "
     "nonce-count already seen is refused. Credentials come from the users file "
     "(`auth.users_file`), or from the script: `auth.username(req)` names the user, the script "
     "fetches its HA1s (e.g. with an async call) and passes them to `auth.verify`. Without "
     "config `auth`, `auth.verify`, `auth.username` and `auth.challenge` return `nil, err`.\n\n"
     "The usual pattern:\n\n"
     "```lua\n"
     "local user, why = auth.verify(req)\n"
     "if not user then\n"
     "  log.info(\"challenge: \", why)\n"
     "  return auth.challenge(req)\n"
     "end\n"
     "```"},
};

const ApiEntry kApi[] = {
    // ---- the request ----
    {kRequestMeta, "method", V, "req.method -> string",
     "The method as received, e.g. `\"INVITE\"`; extension methods as written.",
     "if req.method == \"OPTIONS\" then return req:reply(200) end", detail::req_method},
    {kRequestMeta, "uri", V, "req.uri -> uri",
     "The Request-URI as a [`uri`](#uri), the one the request will be relayed with (it reflects "
     "an assignment). **Assignable:** `req.uri = \"sip:bob@192.0.2.7\"` (a string or a `uri`) "
     "sets a new Request-URI. It must parse and be a `sip:` or `sips:` URI, otherwise the "
     "assignment raises an error; `req:set_uri()` returns `nil, err` instead.",
     "if req.uri.user == \"echo\" then req.uri = \"sip:echo@192.0.2.20\" end", detail::req_uri},
    {kRequestMeta, "from", V, "req.from -> {uri, tag, display}",
     "The From header: `uri` (a `uri`), `tag` and `display` (without quotes; `nil` when "
     "absent). A copy: changing it changes nothing.",
     "log.info(\"call from \" .. req.from.uri.user)", detail::req_from},
    {kRequestMeta, "to", V, "req.to -> {uri, tag, display}",
     "The To header, like `req.from`. Inside a dialog it has a `tag`.",
     "local callee = req.to.uri.aor", detail::req_to},
    {kRequestMeta, "call_id", V, "req.call_id -> string", "The Call-ID.",
     "log.debug(\"Call-ID \" .. req.call_id)", detail::req_call_id},
    {kRequestMeta, "cseq", V, "req.cseq -> {number, method}",
     "The CSeq header: `number` (an integer) and `method`.",
     "if req.cseq.number > 1000 then log.warn(\"long dialog\") end", detail::req_cseq},
    {kRequestMeta, "source", V, "req.source -> {ip, port, transport, trusted}",
     "Where the request came from: the previous hop's `ip` (IPv6 without brackets), `port` and "
     "`transport` (`\"UDP\"`, `\"TCP\"`, `\"TLS\"`, `\"WS\"` or `\"WSS\"`); `trusted` is "
     "`true` when `ip` is in config `security.trusted` (docs/security.md), e.g. to let trusted "
     "networks call without authenticating.",
     "if req.source.transport ~= \"TLS\" then return req:reply(403, \"TLS Required\") end",
     detail::req_source},
    {kRequestMeta, "trusted", V, "req.trusted -> boolean",
     "`req.source.trusted` without building the `source` table: `true` when the previous hop's "
     "address is in config `security.trusted`. The cheaper way to ask on every request.",
     "if not req.trusted and not auth.verify(req) then return auth.challenge(req) end",
     detail::req_trusted},
    {kRequestMeta, "body", V, "req.body -> string", "The message body; `\"\"` when there is none.",
     "if req.body:find(\"m=video\", 1, true) then log.info(\"video call\") end", detail::req_body},
    {kRequestMeta, "header", M, "req:header(name) -> string | nil",
     "The first value of header `name` (full or compact form, any case), or `nil`. For a list "
     "header (Via, Route, Contact, Supported, ...) the first element of the list. Reflects the "
     "script's own `set_header` / `add_header` / `remove_header`.",
     "local ua = req:header(\"User-Agent\") or \"unknown\"", detail::req_header},
    {kRequestMeta, "headers", M, "req:headers(name) -> {string, ...}",
     "Every value of header `name` in order, list headers split into their elements; `{}` when "
     "there is none.",
     "for _, r in ipairs(req:headers(\"Route\")) do log.debug(\"route \" .. r) end",
     detail::req_headers},
    {kRequestMeta, "set_header", M, "req:set_header(name, value) -> true | nil, err",
     "When the request is relayed, replace every `name` header with one `name: value` line (or "
     "add it). Via, From, To, Call-ID, CSeq, Content-Length, Max-Forwards and Record-Route "
     "belong to the proxy: naming one raises an error. A value with a line break returns "
     "`nil, err`.",
     "req:set_header(\"X-Route-Reason\", \"prefix 49\")", detail::req_set_header},
    {kRequestMeta, "add_header", M, "req:add_header(name, value) -> true | nil, err",
     "When the request is relayed, add a `name: value` line after the existing ones. Same rules "
     "as `set_header`.",
     "req:add_header(\"Route\", \"<sip:sbc.example.com;lr>\")", detail::req_add_header},
    {kRequestMeta, "remove_header", M, "req:remove_header(name) -> true",
     "When the request is relayed, remove every `name` header (and forget this script's "
     "`set_header` / `add_header` for it). Same rules for names as `set_header`.",
     "req:remove_header(\"P-Asserted-Identity\")", detail::req_remove_header},
    {kRequestMeta, "set_uri", M, "req:set_uri(uri) -> true | nil, err",
     "Set the Request-URI like assigning `req.uri`, but return `nil, err` for a URI that does "
     "not parse or is not `sip:` / `sips:`.",
     "local ok, err = req:set_uri(\"sip:\" .. number .. \"@gw.example.net\")\n"
     "if not ok then return req:reply(484, \"Address Incomplete\") end",
     detail::req_set_uri},
    {kRequestMeta, "in_dialog", M, "req:in_dialog() -> boolean",
     "True when the To header has a tag (RFC 3261 §12.2): the request belongs to a dialog and "
     "should follow its Route set with `req:relay()`.",
     "if req:in_dialog() then return req:relay() end", detail::req_in_dialog},
    {kRequestMeta, "routed_by_us", M, "req:routed_by_us() -> boolean",
     "True when the request carried a Route naming this proxy (which the proxy consumed): it "
     "follows a route set we Record-Routed. An \"in-dialog\" request (To tag) without one never "
     "passed through us, so relaying it for an untrusted source would make us an open relay.",
     "if req:in_dialog() and (req.trusted or req:routed_by_us()) then\n"
     "  return req:relay()\n"
     "end",
     detail::req_routed_by_us},
    {kRequestMeta, "record_route", M, "req:record_route() -> true",
     "Insert a Record-Route when the request is relayed (RFC 3261 §16.6 step 4), so the "
     "dialog's later requests pass through this proxy. Applies to the relay decision whether it "
     "was made before or after the call, and to a relay that `on_failure` makes for the same "
     "request.",
     "if req.method == \"INVITE\" then req:record_route() end", detail::req_record_route},
    {kRequestMeta, "reply", M, "req:reply(code, reason?, headers?, body?) -> true | nil, err",
     "Decide to answer with a final response: `code` is 200-699 (anything else raises), "
     "`reason` defaults to the standard phrase. `headers` is a table of `Name = \"value\"` or "
     "`Name = {\"value\", ...}` entries and/or `\"Name: value\"` lines; Via, From, To, Call-ID, "
     "CSeq and Content-Length come from the request (naming one raises). A value or reason with "
     "a line break returns `nil, err`. `body` is sent as the response body (give its "
     "Content-Type in `headers`).",
     "return req:reply(480, \"Temporarily Unavailable\", {[\"Retry-After\"] = 60})",
     detail::req_reply},
    {kRequestMeta, "relay", M, "req:relay(targets?, opts?) -> true | nil, err",
     "Decide to forward the request (RFC 3261 §16.6). `targets` is:\n\n"
     "- `nil`: relay as it stands, to the Request-URI or the Route set (in-dialog requests);\n"
     "- a URI string or a `uri`;\n"
     "- a contact table `{uri = ..., q = 0..1, path = {...}, source = {transport, ip, port}}`, "
     "as `location.lookup` returns them (a contact from `location.lookup` is relayed to the "
     "exact flow its binding came from; in a table you build, `source` fixes the next hop);\n"
     "- a list of any of these: one branch each.\n\n"
     "`opts` is `{mode = \"parallel\" | \"serial\" | \"q\", timeout = ms, failover_codes = "
     "{503, 408, ...}}`: `parallel` (the default) tries every target at once; `serial` tries one "
     "target at a time, highest q first and in the given order for equal q (a trunk and its "
     "backups); `q` forks as RFC 3261 §16.6 says: one q-group after another, highest q first, "
     "the targets of a group in parallel (registered contacts); `recurse = true` tries the "
     "Contacts of a 3xx answer as new branches instead of returning the 3xx (RFC 3261 §16.7 "
     "step 4, at most 8 per request); `timeout` bounds each branch "
     "(default: the configured one); `failover_codes` lists the responses that move a branch to "
     "the target's next server (default: the configured ones). A target URI that does not "
     "parse, or an empty list, returns `nil, err`; a wrong option raises.",
     "return req:relay({\"sip:a@192.0.2.1\", {uri = \"sip:b@192.0.2.2\", q = 0.5}},\n"
     "                 {mode = \"serial\", timeout = 20000, failover_codes = {503, 408}})",
     detail::req_relay},
    {kRequestMeta, "redirect", M, "req:redirect(contacts, code?) -> true | nil, err",
     "Decide to answer with a 3xx (`code`, default 302) listing `contacts` in Contact headers. "
     "`contacts` takes the same forms as relay targets; a contact table's `q` is kept.",
     "return req:redirect(\"sip:alice@backup.example.com\")", detail::req_redirect},

    // ---- uri values ----
    {kUriMeta, "scheme", V, "uri.scheme -> string",
     "The scheme in lower case: `\"sip\"`, `\"sips\"`, `\"tel\"`, ...",
     "if req.uri.scheme == \"sips\" then req:record_route() end", detail::uri_scheme},
    {kUriMeta, "user", V, "uri.user -> string | nil",
     "The user part as written (still %-escaped); for a `tel:` URI the number. `nil` when there "
     "is none.",
     "local number = req.uri.user or \"\"", detail::uri_user},
    {kUriMeta, "host", V, "uri.host -> string | nil",
     "The host (a name, an IPv4 address, or an IPv6 address without brackets); `nil` when there "
     "is none.",
     "if not config.is_local(req.uri.host) then return req:reply(403) end", detail::uri_host},
    {kUriMeta, "port", V, "uri.port -> integer | nil", "The port, `nil` when not written.",
     "local port = req.uri.port or 5060", detail::uri_port},
    {kUriMeta, "params", V, "uri.params -> {name = value}",
     "The URI parameters by lower-case name; a parameter without a value (such as `lr`) is "
     "`true`.",
     "if req.uri.params.transport == \"tcp\" then req:record_route() end", detail::uri_params},
    {kUriMeta, "aor", V, "uri.aor -> string | nil",
     "The address-of-record (RFC 3261 §10.3 step 5): `\"sip:user@host\"` with the scheme and "
     "host in lower case, the user unescaped, no port or parameters. `nil` for a non-SIP URI.",
     "if req.from.uri.aor == req.to.uri.aor then log.info(\"calling self\") end", detail::uri_aor},

    // ---- modules ----
    {"location", "lookup", F, "location.lookup(uri) -> {contact, ...} | nil, err",
     "The contacts registered for the address-of-record of `uri` (a string or a `uri`), best "
     "first; `{}` when none. Each contact is a table `{uri = string, q = number (0..1), "
     "path = {string, ...}, source = {transport, ip, port}}` (`source`: where the binding came "
     "from, when the proxy must reach the UA through it) and can be passed to `req:relay()` or "
     "`req:redirect()` as it is (its `_target` field lets the proxy reuse the binding's exact "
     "target: keep it when copying a contact). `nil, err` when `uri` is not a SIP URI. With the "
     "cluster backend (`location.backend = \"redis\"`, docs/cluster.md) an address-of-record of "
     "our domains that this node's table does not hold is read from Redis first: the request "
     "**waits** without blocking the worker, then carries on with what Redis had; `nil, err` "
     "when Redis did not answer within `location.redis.command_timeout_ms`. At the script's top "
     "level it answers from the table alone.",
     "local contacts, err = location.lookup(req.uri)\n"
     "if not contacts then return req:reply(500, \"Location Service Unavailable\") end\n"
     "if #contacts == 0 then return req:reply(404) end\n"
     "return req:relay(contacts)",
     detail::location_lookup},
    {"registrar", "save", F, "registrar.save(req) -> true | nil, err",
     "Process a REGISTER as registrar (RFC 3261 §10.3: bindings, expiry, Path, outbound) and "
     "decide the response it builds (200 with the bindings, or 400/423/...). After a successful "
     "`auth.verify(req)`, an address-of-record the authenticated user does not own is refused "
     "with 403. `nil, err` when `req` is not a REGISTER.",
     "if req.method == \"REGISTER\" then return registrar.save(req) end", detail::registrar_save},
    {"log", "debug", F, "log.debug(...)", "Log at debug level.",
     "log.debug(\"lookup of \", req.uri, \" found \", #contacts)", detail::log_debug},
    {"log", "info", F, "log.info(...)", "Log at info level.",
     "log.info(\"routing \" .. req.method .. \" to the trunk\")", detail::log_info},
    {"log", "warn", F, "log.warn(...)", "Log at warning level.",
     "log.warn(\"blocked source \", req.source.ip)", detail::log_warn},
    {"log", "error", F, "log.error(...)", "Log at error level.",
     "log.error(\"no gateway for \", req.uri)", detail::log_error},
    {"config", "domains", V, "config.domains -> {string, ...}",
     "The domains this proxy is responsible for (config `domains`), lower case.",
     "for _, d in ipairs(config.domains) do log.debug(\"serving \" .. d) end",
     detail::config_domains},
    {"config", "is_local", F, "config.is_local(host) -> boolean",
     "Whether `host` is one of our domains (case-insensitive; IPv6 with or without brackets); "
     "`false` for `nil`, so `config.is_local(uri.host)` works for a URI without a host.",
     "if not config.is_local(req.uri.host) then return req:reply(403) end",
     detail::config_is_local},
    {"dns", "resolve", F, "dns.resolve(uri) -> {server, ...} | nil, err",
     "The servers of `uri` (a string or a `uri`) in the order the proxy would try them (RFC 3263: "
     "NAPTR, SRV by priority and weight, A/AAAA; `maddr`, `transport` and the port honoured; "
     "servers recently found dead left out). Each server is a table `{transport = \"UDP\" | "
     "\"TCP\" | ..., ip = string (IPv6 without brackets), port = integer}`; to send a request "
     "to one, relay to `\"sip:user@\" .. ip .. \":\" .. port .. \";transport=\" .. transport`. "
     "The request **waits** for the answer without blocking the worker (an IP address or a cached "
     "name answers at once). `nil, err` when `uri` is not a SIP URI or nothing was found (the "
     "error names the cause: no such domain, no records, a DNS timeout, a `sips:` URI with no "
     "`tls` listener). Use it in `on_request` / `on_failure`: at the top level (while the "
     "script loads) it returns `nil, err`, and inside a coroutine the script created it raises "
     "(the request cannot wait there).",
     "local servers, err = dns.resolve(\"sip:trunk.example.com\")\n"
     "if not servers then return req:reply(503, \"No Route\") end\n"
     "for _, s in ipairs(servers) do log.debug(s.transport, \" \", s.ip, \":\", s.port) end",
     detail::dns_resolve},
    {"auth", "verify", F, "auth.verify(req, realm?, ha1?) -> user | nil, reason",
     "Check the request's Digest credentials for `realm` (default: config `auth.realm`, else "
     "the users file's realm). On success returns the user name, marks the request as "
     "authenticated by that user (`registrar.save` then binds only an address-of-record the "
     "user owns: its `aors` in the users file, else `sip:<user>@<a domain of ours>`; any other "
     "gets 403) and removes the credentials for this realm from the request when it is "
     "relayed (credentials for other realms stay). Otherwise `nil` and a reason: `\"no "
     "credentials for realm ...\"`, `\"malformed credentials: ...\"`, `\"qop=auth required\"`, "
     "`\"algorithm ... is not enabled\"`, `\"not a nonce of ours\"`, `\"unknown user\"`, "
     "`\"wrong password\"`, `\"nonce expired\"` (the next `auth.challenge` says stale=true), "
     "`\"replayed nonce-count\"`. A wrong password or unknown user is meant to be answered "
     "with a new challenge (RFC 3261 §22.2/§22.3: the UA may ask its user again), not 403. "
     "`ha1` replaces the users file for this call: `{[\"SHA-256\"] = hex, MD5 = hex, ...}` "
     "(H(user:realm:password) per algorithm), for credentials the script fetched itself.",
     "if req.method == \"REGISTER\" then\n"
     "  if not auth.verify(req) then return auth.challenge(req) end\n"
     "  return registrar.save(req)\n"
     "end",
     detail::auth_verify},
    {"auth", "challenge", F, "auth.challenge(req, realm?) -> true | nil, err",
     "Decide to answer with a challenge: `401` with one `WWW-Authenticate` per configured "
     "algorithm for a REGISTER, `407` with `Proxy-Authenticate` otherwise (RFC 8760 §2.4: "
     "preferred algorithm first), each with a fresh nonce, `qop=\"auth\"`, and `stale=true` "
     "when `auth.verify` found the right password with an expired nonce. A routing verb like "
     "`req:reply()`.",
     "if not auth.verify(req) then return auth.challenge(req) end", detail::auth_challenge},
    {"auth", "username", F, "auth.username(req, realm?) -> user | nil, err",
     "The user name the request's Digest credentials for `realm` claim, not verified: for a "
     "script that fetches the user's HA1 itself before `auth.verify(req, realm, ha1)`. `nil, "
     "\"no credentials\"` when there are none.",
     "local name = auth.username(req)\n"
     "local ha1 = name and my_users[name]  -- {[\"SHA-256\"] = ..., MD5 = ...}\n"
     "if not (ha1 and auth.verify(req, nil, ha1)) then return auth.challenge(req) end",
     detail::auth_username},
};

// __index of API objects and modules. Upvalues: the members table, the name. A member is a
// method or module function (a function, returned) or a field (a light userdata pointing at
// its export-table row, whose getter runs in this frame, so its errors point at the script
// line that read the field). One table, one lookup: this runs for every field and method a
// script touches.
int dispatch_index(lua_State* L) {
  lua_pushvalue(L, 2);
  int t = lua_rawget(L, lua_upvalueindex(1));
  if (t == LUA_TFUNCTION) return 1;
  if (t == LUA_TLIGHTUSERDATA) {
    const auto* e = static_cast<const ApiEntry*>(lua_touserdata(L, -1));
    lua_settop(L, 1);
    return e->fn(L);
  }
  const char* name = lua_tostring(L, lua_upvalueindex(2));
  if (lua_type(L, 2) == LUA_TSTRING)
    return luaL_error(L, "%s has no field '%s'", name, lua_tostring(L, 2));
  return luaL_error(L, "%s has no field of type %s", name, luaL_typename(L, 2));
}

void append_md_section(std::string& out, const ApiObject& o) {
  out.append("\n<a id=\"").append(o.name).append("\"></a>\n\n## ").append(o.title).append("\n\n");
  out.append(o.description).append("\n");
  for (const ApiEntry& e : kApi) {
    if (std::strcmp(e.object, o.name) != 0) continue;
    const char* kind = e.kind == ApiKind::Field ? "field" : e.kind == ApiKind::Method ? "method"
                                                                                      : "function";
    out.append("\n### `").append(e.signature).append("`\n\n");
    out.append("*").append(kind).append("* — ").append(e.description).append("\n\n");
    out.append("```lua\n").append(e.example).append("\n```\n");
  }
}

const char* const kIntro = R"md(# Switchboard Lua API

<!-- Generated by sb::scripts::lua_api_markdown() from the export table in
scripts/engine/lua_api.cpp; a unit test checks that this file matches it. Do not edit by
hand: change the table, then run `SB_UPDATE_DOCS=1 test_scripts -tc="docs*"`. -->

The operator's routing policy is a Lua 5.4 script (config `script.path`). The proxy core
handles the SIP mechanics (transactions, retransmissions, CANCEL, Via, Max-Forwards, loop
detection, Route preprocessing); the script decides, for each new request, where it goes.
`scripts/default.lua` is the shipped policy and `scripts/examples/` has more.

## The contract

```lua
function on_request(req)        -- required: called once for every new request
  ...                           -- (never for a retransmission, an ACK to a non-2xx or a CANCEL
end                             --  the proxy matched)

function on_failure(req, best)  -- optional: every branch of a relayed request failed
  ...
end
```

**Top level.** The file's top level runs once when the script is loaded: define functions
and tables there (a routing table, a block list). Each worker thread has its own Lua state,
so globals are per worker: a global that one request writes is not seen by requests on other
workers. `require` finds modules next to the script (`<script dir>/?.lua`).

**Decisions.** `on_request` decides by calling one routing verb: `req:reply()`,
`req:relay()`, `req:redirect()`, `registrar.save(req)` or `auth.challenge(req)`. A verb *records*
the decision on the request and returns `true`; it does not end the script, so the usual form is
`return req:relay(...)`. A later verb replaces an earlier decision. Edits (`req.uri = ...`,
`req:set_header()`, `req:record_route()`) apply when the request is relayed.

**No decision.** When `on_request` returns without a decision the proxy answers
`500 No Routing Decision` and logs a line naming the script and the method (with `err` when
the script returned `nil, err`, as a failed verb does).

**`on_failure(req, best)`** runs when every branch failed (after failover to further
servers of each target). `best` is the response the proxy would send (RFC 3261 §16.7):
`{status = 486, reason = "Busy Here", attempted = {"sip:bob@192.0.2.7", ...}}`. It may
`req:relay()` to new targets (e.g. voicemail), `req:reply()` or `req:redirect()`; returning
without a decision sends `best`. It runs in the same script generation as the request's
`on_request`, even when the script was reloaded in between.

**Coroutines.** Each run of `on_request` or `on_failure` is a coroutine of its own. An API
function that has to wait for the network suspends it and the proxy resumes it when the
answer arrives, without blocking the worker; the script just calls the function. Calling
`coroutine.yield()` in the request's own coroutine is an error; coroutines the script
creates itself work as usual. Blocking library calls (`io.read`, `os.execute`) block the
whole worker: keep them at the top level.

**Limits.** One run may execute at most `script.max_instructions` Lua VM instructions
(counted in steps of up to 1000); beyond that it is stopped with the error
`instruction limit exceeded`, which `pcall` cannot hold off. The top level has the same
budget.

**Errors.** A Lua error in `on_request` or `on_failure` (a bug, `error()`, the instruction
limit) answers the request `500 Script Error`, logs the error with the script's file:line
and a traceback, counts it, and the worker goes on with the next request. Misuse of the API
(a wrong argument type, an unknown field, a header the proxy owns) raises an error. A fault
in a value that may come from data (a URI that does not parse, a header value with a line
break) makes the function return `nil, err` instead, so the script can handle it.

**Handles.** `req` is valid while its run lasts; a handle kept and used later raises
`request is no longer valid`.

**Reload.** A reload compiles the new file in a fresh Lua state, runs its top level and
checks that `on_request` is a function and `on_failure` a function or absent. Only when all
of that succeeds is it used, for requests that start from then on; otherwise nothing changes
and the error names the file and line. Requests in flight finish with the script they
started with.

## Contents
)md";

}  // namespace

std::span<const ApiEntry> lua_api() { return kApi; }
std::span<const ApiObject> lua_api_objects() { return kObjects; }

std::string lua_api_markdown() {
  std::string out = kIntro;
  out.append("\n");
  for (const ApiObject& o : kObjects)
    out.append("- [").append(o.title).append("](#").append(o.name).append(")\n");
  for (const ApiObject& o : kObjects) append_md_section(out, o);
  return out;
}

namespace detail {

void install_api(lua_State* L, const std::vector<NativeFunction>& natives) {
  GenerationState* gs = gen_of(L);
  for (size_t k = 0; k < static_cast<size_t>(Key::Count); ++k) {
    lua_pushstring(L, kKeyNames[k]);
    gs->keys[k] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  for (size_t m = 1; m < kMethodNames; ++m) {
    std::string_view name = core::method_name(static_cast<core::Method>(m));
    lua_pushlstring(L, name.data(), name.size());
    gs->method_names[m] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  for (size_t p = 0; p < kProtocolNames; ++p) {
    std::string_view name = core::protocol_name(static_cast<core::Protocol>(p));
    lua_pushlstring(L, name.data(), name.size());
    gs->protocol_names[p] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  for (const ApiObject& o : kObjects) {
    lua_newtable(L);  // a module: its functions; an object: nothing (see members)
    lua_newtable(L);  // members, for __index: fields, and an object's methods
    for (const ApiEntry& e : kApi) {
      if (std::strcmp(e.object, o.name) != 0) continue;
      if (e.kind == ApiKind::Field)
        lua_pushlightuserdata(L, const_cast<ApiEntry*>(&e));
      else
        lua_pushcfunction(L, e.fn);
      // A module's functions are the module's own fields, found before __index runs.
      lua_setfield(L, e.kind == ApiKind::Field || !o.module ? -2 : -3, e.name);
    }
    int methods = lua_gettop(L) - 1, members = lua_gettop(L);
    if (o.module) {
      lua_newtable(L);  // the module's metatable
    } else {
      luaL_newmetatable(L, o.name);
      GenerationState* g = gen_of(L);
      bool request = std::strcmp(o.name, kRequestMeta) == 0;
      (request ? g->request_mt : g->uri_mt) = lua_topointer(L, -1);
      lua_pushvalue(L, -1);
      (request ? g->request_mt_ref : g->uri_mt_ref) = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pushvalue(L, members);
    lua_pushstring(L, o.name);
    lua_pushcclosure(L, dispatch_index, 2);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, o.name);
    lua_setfield(L, -2, "__metatable");  // getmetatable() returns the name, not the table
    if (std::strcmp(o.name, kRequestMeta) == 0) {
      lua_pushcfunction(L, req_newindex);
      lua_setfield(L, -2, "__newindex");
      lua_pushcfunction(L, req_tostring);
      lua_setfield(L, -2, "__tostring");
    } else if (std::strcmp(o.name, kUriMeta) == 0) {
      lua_pushcfunction(L, uri_tostring);
      lua_setfield(L, -2, "__tostring");
      lua_pushcfunction(L, uri_eq);
      lua_setfield(L, -2, "__eq");
      lua_pushcfunction(L, uri_concat);
      lua_setfield(L, -2, "__concat");
    }
    if (o.module) {
      lua_setmetatable(L, methods);  // the functions table is the module
      lua_settop(L, methods);
      lua_setglobal(L, o.name);
    } else {
      lua_settop(L, methods - 1);
    }
  }
  for (const NativeFunction& n : natives) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_pushstring(L, n.module);
    if (lua_rawget(L, -2) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushstring(L, n.module);
      lua_pushvalue(L, -2);
      lua_rawset(L, -4);
    }
    lua_pushcfunction(L, n.fn);
    lua_pushstring(L, n.name);
    lua_insert(L, -2);
    lua_rawset(L, -3);
    lua_pop(L, 2);
  }
}

}  // namespace detail

}  // namespace sb::scripts
