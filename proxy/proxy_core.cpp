#include "proxy/proxy_core.h"

#include <algorithm>
#include <charconv>
#include <functional>
#include <memory_resource>

#include "core/branch.h"
#include "core/hash.h"
#include "core/log.h"
#include "core/response.h"
#include "core/scratch.h"
#include "core/splice.h"
#include "core/text.h"
#include "proxy/response_context.h"
#include "proxy/validation.h"
#include "transport/response_route.h"

namespace sb::proxy {

namespace {

// `v` in lower-case hex, written into `buf`: the loop hash in a branch, tags.
std::string_view hex_into(char (&buf)[16], uint64_t v) {
  auto r = std::to_chars(buf, buf + sizeof buf, v, 16);
  return {buf, static_cast<size_t>(r.ptr - buf)};
}

std::string hex(uint64_t v) {
  char buf[16];
  return std::string(hex_into(buf, v));
}

// RFC 3261 §16.7 step 6: 6xx first, else the lowest class; within 4xx prefer responses that
// tell the caller how to retry (401, 407, 415, 420, 484).
int rank(int status) {
  if (status >= 600) return 0;
  int cls = status / 100;
  int pref = (status == 401 || status == 407 || status == 415 || status == 420 || status == 484) ? 0 : 1;
  return cls * 10 + pref;
}

// The proxy's own timers (TimerEntry::kind): Timer C of a branch, and the wait for a final
// response after our CANCEL (§9.1: 64*T1).
constexpr uint8_t kTimerC = 0;
constexpr uint8_t kCancelWait = 1;

// Where a response goes according to a Via (§18.2.2, RFC 3581): received/rport when present.
std::optional<core::Peer> via_destination(const core::Via& via) {
  core::Peer p;
  auto proto = core::protocol_from_name(via.transport);
  if (!proto) return std::nullopt;
  p.protocol = *proto;
  std::string_view host = !via.maddr.empty() ? via.maddr : (!via.received.empty() ? via.received : via.host);
  uint16_t port = via.port ? via.port : core::default_port(p.protocol);
  if (via.has_rport && !via.rport.empty()) {
    if (auto v = core::parse_uint(via.rport, 65535)) port = static_cast<uint16_t>(*v);
  }
  auto ep = core::Endpoint::parse(host, port);
  if (!ep) return std::nullopt;
  p.endpoint = *ep;
  return p;
}

// A forwarded request's Via value, appended to `out` in one allocation: ours for a request
// leaving from `l`, its branch written by `write_branch(out)`, then the request's top Via as
// received from `from` and stamped (§16.6 step 8, §18.2.1). `reply`: the request starts a
// client transaction, so our Via names this worker's reply port when the listener has one
// (LocalListener). Returns the branch, a view into `out` (valid until `out` changes).
template <class WriteBranch>
std::string_view append_forwarded_via(std::string& out, const LocalListener& l, bool reply,
                                      const core::Via& top, const core::Peer& from,
                                      WriteBranch&& write_branch) {
  // Ours takes under 128 characters (an IPv6 host:port and a branch included); stamping
  // the received one adds under 64 (";received=" and an address, a filled rport).
  out.reserve(out.size() + 192 + top.raw.size());
  out += "SIP/2.0/";
  out += core::protocol_name(l.protocol);
  out += ' ';
  l.append_hostport(out, reply);
  out += ";branch=";
  const size_t at = out.size();
  write_branch(out);
  const size_t len = out.size() - at;
  out += ", ";
  transport::append_stamped_via(out, top, from);
  return std::string_view(out).substr(at, len);
}

// A new branch of the target set, in `group`, owned by the context (STYLE.md 8).
void add_branch(ResponseContext& ctx, Target target, uint32_t group) {
  auto b = std::make_unique<Branch>();
  b->ctx = &ctx;
  b->index = static_cast<uint32_t>(ctx.branches.size());
  b->group = group;
  b->target = std::move(target);
  ctx.branches.push_back(std::move(b));
}

// The first Route value a branch carries: its own (a Path), else the request's first one
// not naming us (§16.4); "" when there is none. A view into the target or the request.
std::string_view first_route(const ResponseContext& ctx, const Branch& b) {
  if (!b.target.route.empty()) return b.target.route.front();
  std::string_view first;
  int skip = ctx.route_skip;
  ctx.request().for_each_value(core::HeaderId::Route, [&](std::string_view v) {
    if (skip-- > 0) return true;
    first = v;
    return false;
  });
  return first;
}

}  // namespace

ProxyCore::ProxyCore(TransactionEnv& env, const LocalIdentity& identity, Resolver& resolver,
                     RoutingPolicy& policy, ProxySettings settings)
    : env_(env), identity_(identity), resolver_(resolver), policy_(&policy),
      settings_(std::move(settings)) {}

ProxyCore::~ProxyCore() = default;

size_t ProxyCore::parsed_contexts() const {
  size_t n = 0;
  for (const auto& [id, ctx] : contexts_) n += ctx->request_parsed() ? 1 : 0;
  return n;
}

ResponseContext* ProxyCore::find_context(uint64_t id) {
  auto it = contexts_.find(id);
  return it == contexts_.end() ? nullptr : it->second.get();
}

void ProxyCore::append_new_branch(std::string& out, uint64_t loop) {
  core::append_branch(out, settings_.worker_id, next_branch_++);
  out += '.';
  char buf[16];
  out += hex_into(buf, loop & 0xffffffffull);
}

std::string ProxyCore::local_tag(uint64_t unique) const {
  return "sb" + hex(settings_.worker_id) + "." + hex(unique);
}

std::string ProxyCore::record_route_value(size_t listener) const {
  const LocalListener& l = identity_.listeners()[listener];
  std::string v = "<sip:";
  l.append_hostport(v);
  if (l.protocol != core::Protocol::Udp) {
    v += ";transport=";
    std::string_view p = core::protocol_name(l.protocol);
    for (char c : p) v += core::ascii_lower(c);
  }
  v += ";lr>";
  return v;
}

// §16.6 step 8: a hash of what identifies the request as we received it. A request that comes
// back with the same values in one of our Vias has looped; a spiral has a new Request-URI.
uint64_t ProxyCore::loop_hash(const core::Message& req) const {
  namespace hash = core::hash;  // no seed: a looped request hashes as it did the first time
  uint64_t h = hash::field(0, req.ruri_text());
  h = hash::field(h, req.call_id());
  h = hash::field(h, req.from().tag());
  h = hash::field(h, req.to().tag());
  h = hash::number(h, req.cseq().number);
  return hash::finish(h) & 0xffffffffull;
}

bool ProxyCore::is_loop(const core::Message& req, uint64_t hash) const {
  char buf[16];
  const std::string_view want = hex_into(buf, hash);
  auto ours_with_hash = [&](const core::Via& via) {
    if (!identity_.via_is_us(via) || !core::branch_worker(via.branch)) return false;
    size_t dot = via.branch.rfind('.');
    return dot != std::string_view::npos && via.branch.substr(dot + 1) == want;
  };
  // The top Via is parsed already (the message's own view); only the others are parsed here.
  bool top = true, loop = false;
  req.for_each_value(core::HeaderId::Via, [&](std::string_view v) {
    if (top) {
      top = false;
      loop = ours_with_hash(req.top_via());
    } else if (auto via = core::parse_via(v)) {
      loop = ours_with_hash(*via);
    }
    return !loop;
  });
  return loop;
}

void ProxyCore::reply(ServerTransaction& txn, const core::Message& req, int status,
                      std::string_view reason, std::span<const std::string> headers,
                      std::string_view body, std::string_view to_tag) {
  core::Scratch<512> scratch;  // room for 32 lines: the views need no heap
  std::pmr::vector<std::string_view> lines(headers.begin(), headers.end(), scratch.resource());
  std::string_view tag = to_tag;
  std::string own_tag;
  if (tag.empty()) {
    // A proxied request's responses share its context's tag; others get their own.
    auto* ctx = static_cast<ResponseContext*>(txn.user_data());
    tag = own_tag = local_tag(ctx ? ctx->id : txn.id());
  }
  core::ResponseSpec spec;
  spec.status = status;
  spec.reason = reason;
  spec.to_tag = tag;
  spec.headers = lines;
  spec.body = body;
  ++counters_.local_replies;
  txn.respond(status, core::build_response(req, spec));
}

void ProxyCore::answer_options_to_self(ServerTransaction& txn, const core::Message& req) {
  static const std::string kHeaders[] = {
      "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, PRACK, SUBSCRIBE, NOTIFY, PUBLISH, INFO, REFER, MESSAGE, UPDATE",
      "Supported: path, outbound",
      "Accept: application/sdp",
      "Accept-Encoding: identity",
      "Accept-Language: en"};
  reply(txn, req, 200, "OK", kHeaders);
}

void ProxyCore::on_request(ServerTransaction* txn, const core::Message& req, const core::Peer& from) {
  ++counters_.requests;
  if (!txn) {  // an ACK to a 2xx: its own transaction, forwarded statelessly (§16.11, §17.1.1.3)
    forward_stateless_request(req, from);
    return;
  }
  if (req.method() == core::Method::Cancel) {
    handle_cancel(*txn, req);
    return;
  }
  if (auto rej = validate_request(req)) {
    reply(*txn, req, rej->status, rej->reason, rej->headers);
    return;
  }
  const uint64_t hash = loop_hash(req);  // §16.6 step 8: of the request as received
  if (is_loop(req, hash)) {
    ++counters_.loops;
    reply(*txn, req, 482, "Loop Detected");
    return;
  }
  // Health checks: OPTIONS to this proxy itself, no user part.
  if (req.method() == core::Method::Options && !req.ruri().has_user &&
      (identity_.uri_is_us(req.ruri()) || identity_.is_local_domain(req.ruri().host))) {
    answer_options_to_self(*txn, req);
    return;
  }

  uint64_t id = next_context_++;
  // The context's own copy, without parsing it again.
  auto owned = std::make_unique<ResponseContext>(id, req, from, std::move(spare_request_));
  ResponseContext& ctx = *owned;
  ctx.server_txn_id = txn->id();
  ctx.policy = policy_;
  ctx.invite = req.method() == core::Method::Invite;
  ctx.loop_hash = static_cast<uint32_t>(hash);
  undo_strict_routing(ctx);
  // §16.4: Route values naming us are consumed (two in a row after a double Record-Route).
  ctx.request().for_each_value(core::HeaderId::Route, [&](std::string_view v) {
    auto na = core::parse_name_addr(v);
    if (!na || !identity_.uri_is_us(na->uri)) return false;
    ++ctx.route_skip;
    return true;
  });
  txn->set_user_data(&ctx);
  contexts_.emplace(id, std::move(owned));
  ctx.deciding = true;
  ++in_policy_;
  ctx.policy->on_request(ctx, [this, id](Decision d) { apply_decision(id, std::move(d), false); });
  --in_policy_;
  if (ResponseContext* c = find_context(id)) trim(*c);
}

// §16.4: a strict router before us (RFC 2543) put our Record-Route URI into the
// Request-URI and the remote target last in Route. Restore the request a loose router would
// have sent: the last Route value becomes the Request-URI.
void ProxyCore::undo_strict_routing(ResponseContext& ctx) {
  const core::Message& req = ctx.request();
  if (req.count(core::HeaderId::Route) == 0 || !req.ruri().has_param("lr") ||
      !identity_.uri_is_listener(req.ruri()))
    return;
  const core::Header* last = nullptr;
  req.for_each(core::HeaderId::Route, [&](const core::Header& h) {
    last = &h;
    return true;
  });
  std::vector<std::string_view> vals;
  core::for_each_list_element(last->value, [&](std::string_view v) {
    vals.push_back(v);
    return true;
  });
  if (vals.empty()) return;
  auto target = core::parse_name_addr(vals.back());
  if (!target) return;
  // The last Route line goes; the values before the last one on it are put back, after
  // every other Route line, so the order of the route set is kept.
  std::string rest;
  for (size_t i = 0; i + 1 < vals.size(); ++i) {
    rest += rest.empty() ? "Route: " : ", ";
    rest += vals[i];
  }
  std::string new_ruri(target->uri_text);
  const uint16_t index = static_cast<uint16_t>(last - req.headers().data());
  std::string_view added[] = {rest};
  core::SpliceEdits e;
  e.request_uri = new_ruri;
  e.remove_headers = std::span<const uint16_t>(&index, 1);
  if (!rest.empty()) e.add_headers = added;
  std::string out;
  core::splice(req, e, out);
  core::Message m;
  if (!m.parse(out)) return;  // keep the request as it came
  ctx.replace_bytes(out);
}

void ProxyCore::apply_decision(uint64_t id, Decision d, bool from_failure) {
  ResponseContext* ctx = find_context(id);
  // The policy calls `done` once per question; a second call answers nothing.
  if (!ctx || !ctx->deciding) return;
  ctx->deciding = false;
  ServerTransaction* txn = ctx->server_alive ? layer_->find_server(ctx->server_txn_id) : nullptr;
  if (!txn || ctx->final_sent || ctx->cancelled) {
    if (from_failure && txn && !ctx->final_sent) send_best(*ctx);
    maybe_destroy(*ctx);
    return;
  }
  switch (d.kind) {
    case Decision::Kind::None:
      if (from_failure) {
        send_best(*ctx);
      } else {
        ++counters_.no_decision;
        SB_LOG(Error, ctx->request().call_id(), "policy made no decision for %.*s%s%s",
               int(ctx->request().method_text().size()), ctx->request().method_text().data(),
               d.origin.empty() ? "" : " in ", d.origin.c_str());
        reply(*txn, ctx->request(), 500, "No Routing Decision");
        ctx->final_sent = true;
      }
      break;
    case Decision::Kind::Reply: {
      // A decision is the last word on the request: a provisional alone would leave the
      // transaction waiting forever for a final.
      const bool valid = d.status >= 200 && d.status <= 699;
      if (!valid)
        SB_LOG(Error, ctx->request().call_id(), "policy replied %d%s%s: not a final status", d.status,
               d.origin.empty() ? "" : " in ", d.origin.c_str());
      if (d.status == 401 || d.status == 407) ++counters_.policy_challenged;
      if (d.status == 403) ++counters_.policy_forbidden;
      if (valid)
        reply(*txn, ctx->request(), d.status, d.reason, d.headers, d.body);
      else
        reply(*txn, ctx->request(), 500, "Invalid Routing Decision");
      ctx->final_sent = true;
      break;
    }
    case Decision::Kind::Redirect: {
      int status = d.status >= 300 && d.status < 400 ? d.status : 302;
      std::vector<std::string> headers = std::move(d.headers);
      for (auto& c : d.contacts) headers.push_back("Contact: " + c);
      reply(*txn, ctx->request(), status, d.reason, headers);
      ctx->final_sent = true;
      break;
    }
    case Decision::Kind::Relay: {
      if (ctx->got_6xx) {  // §16.7 step 5: no new branches after a 6xx
        send_best(*ctx);
        break;
      }
      ++counters_.relayed;
      ctx->options = d.relay;
      std::vector<Target> targets = std::move(d.targets);
      if (targets.empty()) {
        Target t;
        t.uri = ctx->edits_.ruri ? *ctx->edits_.ruri : std::string(ctx->request().ruri_text());
        targets.push_back(std::move(t));
      }
      // Forking (§16.6): groups run one after another; a group's branches run in parallel.
      uint32_t base = 0;
      for (auto& b : ctx->branches) base = std::max(base, b->group + 1);
      const auto mode = d.relay.mode;
      if (mode != RelayOptions::Mode::Parallel)
        std::stable_sort(targets.begin(), targets.end(),
                         [](const Target& a, const Target& b) { return a.q1000 > b.q1000; });
      uint32_t group = base;
      for (size_t i = 0; i < targets.size(); ++i) {
        if (i > 0 && (mode == RelayOptions::Mode::Serial ||
                      (mode == RelayOptions::Mode::ByQ && targets[i].q1000 != targets[i - 1].q1000)))
          ++group;
        add_branch(*ctx, std::move(targets[i]), group);
      }
      ctx->current_group = base;
      start_branches(*ctx);
      break;
    }
  }
  maybe_destroy(*ctx);
}

void ProxyCore::start_branches(ResponseContext& ctx) {
  // Collect first: starting a branch may complete it synchronously (resolution failure).
  std::vector<Branch*> todo;
  for (auto& b : ctx.branches)
    if (b->group == ctx.current_group && b->state == Branch::State::Waiting) todo.push_back(b.get());
  for (Branch* b : todo) start_branch(ctx, *b);
  check_complete(ctx);
}

void ProxyCore::start_branch(ResponseContext& ctx, Branch& b) {
  b.state = Branch::State::Resolving;
  if (b.target.destination) {
    send_branch(ctx, b);  // its one server (Branch::server_at)
    return;
  }
  // The next hop: the first Route this branch will carry, else its Request-URI (§16.6
  // step 7).
  // (The URI is parsed once, from the Route's name-addr or from the target.)
  std::string_view route = first_route(ctx, b);
  core::NameAddr na;
  const core::Status st = route.empty() ? core::parse_uri(b.target.uri, na.uri)
                                        : core::parse_name_addr(route, na);
  if (!st) {
    branch_failed(ctx, b, 400, false);
    return;
  }
  uint64_t id = ctx.id;
  uint32_t index = b.index;
  ++ctx.live;
  resolver_.resolve(na.uri, [this, id, index](ServerList list) {
    ResponseContext* c = find_context(id);
    if (!c) return;
    --c->live;
    Branch& br = *c->branches[index];
    if (br.state != Branch::State::Resolving) {  // cancelled meanwhile
      maybe_destroy(*c);
      return;
    }
    br.servers = std::move(list);
    if (br.servers.servers.empty()) {
      SB_LOG(Info, c->request().call_id(), "branch %s: %s", br.target.uri.c_str(),
             br.servers.error.c_str());
      // A name that does not exist is a definitive answer (404); anything else may pass.
      branch_failed(*c, br, br.servers.no_such_name ? 404 : 503, false);
    } else {
      send_branch(*c, br);
    }
    // Looked up again: defensive, nothing above may destroy a context (see maybe_destroy).
    if (ResponseContext* again = find_context(id)) maybe_destroy(*again);
  });
}

void ProxyCore::send_branch(ResponseContext& ctx, Branch& b) {
  // RFC 3261 §26.2.2, RFC 5630 §3.1.3: a sips request travels over TLS on every hop; with
  // no TLS server left for this target it fails with 480 rather than leaving over plain text.
  const bool sips = ctx.request().ruri().scheme == core::Scheme::Sips ||
                    (b.target.uri.size() >= 5 && core::iequals(std::string_view(b.target.uri).substr(0, 5), "sips:"));
  bool refused_plain = false;
  while (b.server < b.server_count()) {
    const core::Peer& peer = b.server_at(b.server);
    if (sips && !core::is_secure(peer.protocol)) {
      SB_LOG(Info, ctx.request().call_id(), "branch %s: sips request not sent over %s to %s (TLS only)",
             b.target.uri.c_str(), std::string(core::protocol_name(peer.protocol)).c_str(),
             peer.endpoint.to_string().c_str());
      refused_plain = true;
      ++b.server;
      continue;
    }
    auto out = identity_.outgoing(peer.protocol, peer.endpoint.family());
    if (!out) {
      ++b.server;  // no listener for that transport: next server
      continue;
    }
    const core::Message& req = ctx.request();
    std::string via;
    const std::string_view branch =
        append_forwarded_via(via, identity_.listeners()[*out], true, req.top_via(), ctx.source_,
                             [&](std::string& v) { append_new_branch(v, ctx.loop_hash); });

    core::SpliceEdits e;
    e.request_uri = b.target.uri;
    e.add_via = via;
    e.remove_top_via = true;
    e.max_forwards = req.max_forwards() >= 0 ? req.max_forwards() - 1 : 70;
    e.remove_routes = ctx.route_skip;
    std::string rr[2];
    std::string_view rr_views[2];
    size_t rr_count = 0;
    if (ctx.options.record_route && req.method() != core::Method::Register) {
      // §16.6 step 4; a second Record-Route when the branch leaves on another transport or
      // address family than the request came in on, so each side reaches us.
      rr[rr_count++] = record_route_value(*out);
      auto in = identity_.outgoing(ctx.source_.protocol, ctx.source_.endpoint.family());
      if (in && *in != *out &&
          (identity_.listeners()[*in].protocol != identity_.listeners()[*out].protocol ||
           identity_.listeners()[*in].family != identity_.listeners()[*out].family))
        rr[rr_count++] = record_route_value(*in);
    }
    for (size_t i = 0; i < rr_count; ++i) rr_views[i] = rr[i];
    e.add_record_route = std::span<const std::string_view>(rr_views, rr_count);
    std::vector<std::string_view> route_views(b.target.route.begin(), b.target.route.end());
    // §16.6 step 6: a first Route without ;lr names a strict router (RFC 2543). It routes on
    // the Request-URI: give it its own URI there and put the target last in Route.
    std::string_view next = first_route(ctx, b);
    std::string strict_ruri, strict_tail;
    if (!next.empty()) {
      auto na = core::parse_name_addr(next);
      if (na && !na->uri.has_param("lr")) {
        strict_ruri = std::string(na->uri_text);
        strict_tail = "Route: <" + b.target.uri + ">";
        if (!route_views.empty())
          route_views.erase(route_views.begin());
        else
          ++e.remove_routes;
        e.request_uri = strict_ruri;
      }
    }
    e.add_route = route_views;
    // The policy's header edits.
    std::vector<uint16_t> removed;
    std::vector<std::string> added;
    auto remove_named = [&](std::string_view name) {
      const auto& hs = req.headers();
      core::HeaderId id = core::header_id(name);
      for (size_t i = 0; i < hs.size(); ++i)
        if (id != core::HeaderId::Other ? hs[i].id == id : core::iequals(hs[i].name, name))
          removed.push_back(static_cast<uint16_t>(i));
    };
    for (const auto& n : ctx.edits_.remove_headers) remove_named(n);
    for (const auto& [n, v] : ctx.edits_.set_headers) {
      remove_named(n);
      added.push_back(n + ": " + v);
    }
    for (const auto& l : ctx.edits_.add_headers) added.push_back(l);
    // After every other header: the target is the last Route value.
    if (!strict_tail.empty()) added.push_back(strict_tail);
    std::vector<std::string_view> added_views(added.begin(), added.end());
    e.remove_headers = removed;
    e.add_headers = added_views;

    std::string bytes;
    core::splice(req, e, bytes);
    // Keyed by what we wrote: our branch and the request's CSeq method (the splice keeps
    // CSeq), so the bytes are not parsed again.
    ClientTransaction& ct = layer_->start_client(std::move(bytes), branch, req.cseq().method_text, peer);
    ct.set_user_data(&b);
    b.txn_id = ct.id();
    b.state = Branch::State::Calling;
    ++ctx.live;
    ++counters_.branches;
    if (ctx.invite) arm_timer_c(ctx, b);
    return;
  }
  branch_failed(ctx, b, refused_plain ? 480 : 503, false);
}

// RFC 3263 §4.3: tell the resolver which server of its list failed, so later lists may
// leave it out for a while. A fixed destination (a registered flow) is not from a list.
void ProxyCore::report_fault(const Branch& b, ServerFault fault, int64_t retry_after) {
  if (b.target.destination || b.server >= b.server_count()) return;
  resolver_.report(b.server_at(b.server), fault, retry_after);
}

// §16.6 step 11: Timer C of an INVITE branch, armed anew in a new generation (the older
// one goes stale, STYLE.md 4). The relay's timeout overrides the setting.
void ProxyCore::arm_timer_c(const ResponseContext& ctx, Branch& b) {
  int64_t after = ctx.options.timeout_ms > 0 ? ctx.options.timeout_ms : settings_.timer_c_ms;
  ++b.timer_gen;
  timers_.schedule(ctx.id, (b.index << 16) | b.timer_gen, kTimerC, env_.clock().now_ms() + after);
}

// STYLE.md 8: the codes that move a branch on are data: the relay's, else the setting's.
bool ProxyCore::is_failover_code(const ResponseContext& ctx, int status) const {
  const auto& codes = ctx.options.failover_codes.empty() ? settings_.failover_codes
                                                         : ctx.options.failover_codes;
  return std::find(codes.begin(), codes.end(), status) != codes.end();
}

// RFC 3263 failover moves a branch to its target's next server, unless the request is over
// for that branch: cancelled by the caller, answered by a 2xx or a 6xx elsewhere (§16.7
// steps 5 and 10: no new requests then), or cancelled by us (Timer C).
bool ProxyCore::may_fail_over(const ResponseContext& ctx, const Branch& b) const {
  return !ctx.cancelled && !ctx.got_2xx && !ctx.got_6xx && !b.cancel_wanted && !b.cancel_sent &&
         ctx.server_alive && b.server + 1 < b.server_count();
}

void ProxyCore::branch_failed(ResponseContext& ctx, Branch& b, int status, bool failover_allowed) {
  if (b.state == Branch::State::Done) return;
  b.txn_id = 0;
  if (failover_allowed && may_fail_over(ctx, b)) {
    ++counters_.failovers;
    ++b.server;
    SB_LOG(Info, ctx.request().call_id(), "branch %s: %d, failing over to server %zu",
           b.target.uri.c_str(), status, b.server + 1);
    send_branch(ctx, b);
    return;
  }
  // A next hop that failed the branch without reaching the UA (cluster: a flow's owner node
  // gone) counts as the target says; Timer C after a provisional means the UA was reached.
  if (b.target.hop_failure_status && (status == 408 || status == 503 || status == 430) &&
      !(b.timed_out && b.state == Branch::State::Proceeding))
    status = b.target.hop_failure_status;
  b.state = Branch::State::Done;
  b.status = status;
  b.response.clear();
  check_complete(ctx);
}

// Called whenever a branch ends. Never destroys the context: only maybe_destroy() at the end
// of a top-level event does, so callers up the stack keep a valid reference.
void ProxyCore::check_complete(ResponseContext& ctx) {
  if (ctx.final_sent || ctx.deciding) return;
  for (auto& b : ctx.branches)
    if (b->group <= ctx.current_group && b->state != Branch::State::Done) return;
  // Nobody to answer (the caller cancelled, or its transaction is gone): no new branches,
  // no policy call.
  const bool answerable = !ctx.cancelled && ctx.server_alive;
  if (!ctx.got_6xx && answerable) {
    // Serial forking: the next q group.
    for (auto& b : ctx.branches)
      if (b->group > ctx.current_group && b->state == Branch::State::Waiting) {
        ctx.current_group = b->group;
        start_branches(ctx);
        return;
      }
    // Every branch failed: the policy may add targets (bounded, against loops in scripts).
    if (ctx.failure_rounds < 4) {
      ++ctx.failure_rounds;
      FailureInfo info;
      int best = 0;
      for (auto& b : ctx.branches) {
        info.attempted.push_back(b->target.uri);
        if (b->status && (!best || rank(b->status) < rank(best))) best = b->status;
      }
      info.status = best ? best : 408;
      info.reason = std::string(core::default_reason(info.status));
      ctx.deciding = true;
      uint64_t id = ctx.id;
      ++in_policy_;
      ctx.policy->on_failure(ctx, info, [this, id](Decision d) { apply_decision(id, std::move(d), true); });
      --in_policy_;
      return;
    }
  }
  send_best(ctx);
}

void ProxyCore::send_best(ResponseContext& ctx) {
  if (ctx.final_sent) return;
  ServerTransaction* txn = ctx.server_alive ? layer_->find_server(ctx.server_txn_id) : nullptr;
  ctx.final_sent = true;
  if (!txn) return;
  Branch* best = nullptr;
  for (auto& b : ctx.branches)
    if (b->state == Branch::State::Done && b->status >= 300 && (!best || rank(b->status) < rank(best->status)))
      best = b.get();
  int status = best ? best->status : 408;
  // §16.7 step 6: a 503 is not forwarded (the caller would think *we* are unavailable).
  if (status == 503 || !best || best->response.empty()) {
    int out = status == 503 ? 500 : status;
    reply(*txn, ctx.request(), out, core::default_reason(out));
    return;
  }
  core::Message resp;
  if (!resp.parse(best->response)) {
    reply(*txn, ctx.request(), 500, "Server Internal Error");
    return;
  }
  // §16.7 step 7: a 401/407 carries every challenge from every 401/407 branch.
  std::vector<std::string> challenges;
  if (status == 401 || status == 407) {
    for (auto& b : ctx.branches) {
      if (b.get() == best || (b->status != 401 && b->status != 407) || b->response.empty()) continue;
      core::Message other;
      if (!other.parse(b->response)) continue;
      for (const auto& h : other.headers())
        if (h.id == core::HeaderId::WWWAuthenticate || h.id == core::HeaderId::ProxyAuthenticate)
          challenges.push_back(std::string(core::header_name(h.id)) + ": " + std::string(h.value));
    }
  }
  std::vector<std::string_view> views(challenges.begin(), challenges.end());
  core::SpliceEdits e;
  e.remove_top_via = true;
  e.add_headers = views;
  std::string bytes;
  core::splice(resp, e, bytes);
  txn->respond(status, std::move(bytes));
}

void ProxyCore::forward_response(ResponseContext& ctx, const core::Message& resp) {
  core::SpliceEdits e;
  e.remove_top_via = true;
  std::string bytes;
  core::splice(resp, e, bytes);
  ServerTransaction* txn = ctx.server_alive ? layer_->find_server(ctx.server_txn_id) : nullptr;
  // A 2xx to an INVITE the server transaction can no longer take (it ended, or it sent a
  // 487 after a CANCEL) is forwarded by Via so the caller still gets its dialog (§16.7
  // step 10). A non-INVITE has one final response: later ones stop here.
  const bool invite_2xx = ctx.invite && resp.status() >= 200 && resp.status() < 300;
  if (!invite_2xx) {
    if (txn) txn->respond(resp.status(), std::move(bytes));
    return;
  }
  if (txn && txn->respond(resp.status(), bytes)) return;
  ++counters_.stateless_responses;
  env_.send(response_destination(ctx.request(), ctx.source_), bytes, 0);
}

void ProxyCore::on_response(ClientTransaction& ct, const core::Message& resp) {
  auto* b = static_cast<Branch*>(ct.user_data());
  if (!b) {
    // A response to one of our CANCELs (hop by hop: it stops here), or to an INVITE branch
    // given up on (give_up): a 2xx of it still goes to the caller, by Via (§16.7 step 10).
    const int st = resp.status();
    if (ct.is_invite() && st >= 200 && st < 300) forward_stateless_response(resp);
    return;
  }
  ResponseContext& ctx = *b->ctx;
  int status = resp.status();
  if (status < 200) {
    if (b->state == Branch::State::Calling) b->state = Branch::State::Proceeding;
    if (b->cancel_wanted && !b->cancel_sent) {
      // §9.1: the CANCEL we held back until the branch had a provisional.
      send_cancel(ctx, *b, ct);
    } else if (ctx.invite && b->state == Branch::State::Proceeding && !b->cancel_sent) {
      arm_timer_c(ctx, *b);  // §16.7 step 2: a provisional resets Timer C
    }
    // §16.7 step 5: provisionals other than 100 are forwarded.
    if (status > 100 && !ctx.final_sent && !ctx.cancelled) forward_response(ctx, resp);
    return;
  }
  if (status < 300) {
    bool first = !ctx.got_2xx;
    b->state = Branch::State::Done;
    b->status = status;
    ctx.got_2xx = true;
    if (first && ctx.invite) cancel_pending(ctx, b);  // §16.7 step 10
    forward_response(ctx, resp);                      // every 2xx is forwarded
    ctx.final_sent = true;
    return;
  }
  if (b->state == Branch::State::Done) return;
  if (status == 503 && b->txn_id == ct.id()) {
    const core::Header* ra = resp.find(core::HeaderId::RetryAfter);
    report_fault(*b, ServerFault::Unavailable, ra ? retry_after_ms(ra->value) : -1);
  }
  if (b->timed_out && status == 487) {
    // §16.8: we cancelled it because Timer C fired; for the caller it is a timeout.
    branch_failed(ctx, *b, 408, false);
    return;
  }
  if (is_failover_code(ctx, status) && may_fail_over(ctx, *b)) {
    branch_failed(ctx, *b, status, true);
    return;
  }
  if (status == 430 && b->target.hop_failure_status) {
    // RFC 5626 §5.3: the edge proxy's 430 Flow Failed is for us, never for the caller.
    branch_failed(ctx, *b, status, false);
    return;
  }
  b->state = Branch::State::Done;
  b->status = status;
  b->response.assign(resp.raw());
  b->txn_id = 0;
  if (status < 400 && ctx.options.recurse_3xx && !ctx.cancelled && !ctx.got_6xx) {
    // §16.7 step 4: recurse on the redirect's Contacts: each becomes a branch of the group
    // running now. The 3xx stays a candidate for the best response if they all fail.
    std::vector<Target> more;
    resp.for_each_value(core::HeaderId::Contact, [&](std::string_view v) {
      auto c = core::parse_contact(v);
      if (!c || c->star || !c->addr.uri.is_sip()) return true;
      std::string uri(c->addr.uri_text);
      bool seen = std::any_of(ctx.branches.begin(), ctx.branches.end(),
                              [&](const auto& x) { return x->target.uri == uri; });
      if (!seen && ctx.redirect_branches + static_cast<int>(more.size()) < kMaxRedirectBranches) {
        Target t;
        t.uri = std::move(uri);
        t.q1000 = c->q1000;
        more.push_back(std::move(t));
      }
      return true;
    });
    for (auto& t : more) {
      add_branch(ctx, std::move(t), ctx.current_group);
      ++ctx.redirect_branches;
    }
    if (!more.empty()) {
      start_branches(ctx);
      return;
    }
  }
  if (status >= 600) {
    ctx.got_6xx = true;
    if (ctx.invite) cancel_pending(ctx, b);  // §16.7 step 5
  }
  check_complete(ctx);
}

void ProxyCore::cancel_branch(ResponseContext& ctx, Branch& b) {
  switch (b.state) {
    case Branch::State::Waiting:
    case Branch::State::Resolving:
      b.state = Branch::State::Done;  // never sent: nothing to cancel
      b.status = 487;
      return;
    case Branch::State::Calling:
      b.cancel_wanted = true;  // §9.1: wait for a provisional before sending CANCEL
      return;
    case Branch::State::Proceeding: {
      if (b.cancel_sent) return;
      if (ClientTransaction* ct = b.txn_id ? layer_->find_client(b.txn_id) : nullptr)
        send_cancel(ctx, b, *ct);
      return;
    }
    case Branch::State::Done:
      return;
  }
}

// §9.1: the CANCEL is its own client transaction, built from the request as we sent it.
// If the INVITE gets no final response within 64*T1 after it, the branch is given up.
void ProxyCore::send_cancel(ResponseContext& ctx, Branch& b, ClientTransaction& ct) {
  if (b.cancel_sent || !ct.is_invite()) return;
  core::Message sent;
  if (!sent.parse(ct.request())) return;
  std::string cancel = build_cancel(sent);
  // §9.1: the CANCEL carries the INVITE's top Via, so its branch.
  layer_->start_client(std::move(cancel), ct.branch(), "CANCEL", ct.peer());
  b.cancel_sent = true;
  b.cancelled_txn = ct.id();
  ++counters_.cancels_sent;
  timers_.schedule(ctx.id, b.index << 16, kCancelWait,
                   env_.clock().now_ms() + 64 * layer_->timers().t1_ms);
}

// §9.1: "If there is no final response for the original request in 64*T1 seconds ... the
// client SHOULD then consider the original transaction cancelled". The branch ends as a
// timeout, and its transaction no longer reports to (or keeps alive) the context.
void ProxyCore::give_up(ResponseContext& ctx, Branch& b) {
  if (ClientTransaction* ct = b.cancelled_txn ? layer_->find_client(b.cancelled_txn) : nullptr) {
    // Still waiting for its final (a final would have ended the branch through on_response).
    if (ct->user_data() == &b && ct->state() == TransactionState::Proceeding) {
      SB_LOG(Info, ctx.request().call_id(), "branch %s: no final response to our CANCEL, given up",
             b.target.uri.c_str());
      ct->set_user_data(nullptr);
      --ctx.live;
    }
  }
  branch_failed(ctx, b, 408, false);
}

void ProxyCore::cancel_pending(ResponseContext& ctx, const Branch* except) {
  for (auto& b : ctx.branches)
    if (b.get() != except) cancel_branch(ctx, *b);
}

void ProxyCore::handle_cancel(ServerTransaction& txn, const core::Message& cancel) {
  ServerTransaction* inv = layer_->find_server_invite(cancel);
  if (!inv) {
    reply(txn, cancel, 481, "Call/Transaction Does Not Exist");
    return;
  }
  auto* ctx = static_cast<ResponseContext*>(inv->user_data());
  // §16.10: 200 to the CANCEL (with the To tag of our responses to the INVITE, §9.2),
  // CANCEL every pending branch, 487 to the INVITE.
  const std::string tag = ctx ? local_tag(ctx->id) : std::string();
  reply(txn, cancel, 200, "OK", {}, {}, tag);
  if (!ctx) return;
  ctx->cancelled = true;
  cancel_pending(*ctx, nullptr);
  if (!ctx->final_sent) {
    reply(*inv, ctx->request(), 487, "Request Terminated");
    ctx->final_sent = true;
  }
  trim(*ctx);  // parsed again for the 487
}

void ProxyCore::on_stray_response(const core::Message& resp, const core::Peer&) {
  forward_stateless_response(resp);
}

void ProxyCore::forward_stateless_response(const core::Message& resp) {
  // §16.11 / §18.1.2: only a response whose top Via is ours goes on, to the next Via.
  if (!identity_.via_is_us(resp.top_via())) return;
  std::optional<core::Via> next;
  int n = 0;
  resp.for_each_value(core::HeaderId::Via, [&](std::string_view v) {
    if (n++ == 1) {
      if (auto via = core::parse_via(v)) next = *via;
      return false;
    }
    return true;
  });
  if (!next) return;
  auto dest = via_destination(*next);
  if (!dest) return;
  core::SpliceEdits e;
  e.remove_top_via = true;
  std::string bytes;
  core::splice(resp, e, bytes);
  ++counters_.stateless_responses;
  env_.send(*dest, bytes, 0);
}

void ProxyCore::forward_stateless_request(const core::Message& req, const core::Peer& from) {
  if (req.max_forwards() == 0) return;
  int skip = 0;
  // The next hop: the first Route that is not us, else the Request-URI. Its URI views into
  // `req`, which stays as it is until resolve() returns.
  core::NameAddr route;
  bool routed = false;
  bool strict = false;  // §16.6 step 6: the next hop is a strict router (no ;lr)
  req.for_each_value(core::HeaderId::Route, [&](std::string_view v) {
    if (!core::parse_name_addr(v, route)) return false;  // unreadable: the Request-URI decides
    if (identity_.uri_is_us(route.uri)) {
      ++skip;
      return true;
    }
    routed = true;
    strict = !route.uri.has_param("lr");
    return false;
  });
  if (!routed && identity_.uri_is_us(req.ruri())) return;  // nowhere further to go
  const core::Uri& next = routed ? route.uri : req.ruri();
  // The branch of a stateless forward is derived from the incoming request, so a
  // retransmitted ACK leaves with the same branch and two ACKs never share one (§16.11;
  // an RFC 2543 ACK has no branch).
  namespace hash = core::hash;
  uint64_t h = hash::field(0, req.top_via().branch);
  h = hash::field(h, req.top_via().sent_by);
  h = hash::field(h, req.call_id());
  h = hash::field(h, req.from().tag());
  h = hash::finish(hash::number(h, req.cseq().number));
  std::string strict_ruri = strict ? std::string(next.raw) : std::string();
  // A numeric next hop (the usual in-dialog case) is answered inside resolve(): the request
  // is forwarded from `req` as it is. Only an answer that comes later (DNS) needs a copy,
  // made when resolve() returns without one, and parsed then.
  struct Later {
    const core::Message* now;  // valid while resolve() runs
    std::string bytes;         // the copy for a later answer
  };
  auto later = std::make_shared<Later>(Later{&req, {}});
  resolver_.resolve(next, [this, later, skip, h, src = from, strict_ruri = std::move(strict_ruri)](ServerList list) {
    if (list.servers.empty()) return;
    core::Message copy;
    const core::Message* m = later->now;
    if (!m) {
      if (!copy.parse(later->bytes)) return;
      m = &copy;
    }
    send_stateless(*m, list.servers.front(), src, skip, h, strict_ruri);
  });
  if (later.use_count() > 1) later->bytes.assign(req.raw());
  later->now = nullptr;
}

void ProxyCore::send_stateless(const core::Message& m, const core::Peer& peer, const core::Peer& src,
                               int skip, uint64_t branch_hash, const std::string& strict_ruri) {
  auto out = identity_.outgoing(peer.protocol, peer.endpoint.family());
  if (!out) return;
  std::string via;
  const uint32_t worker = settings_.worker_id;
  append_forwarded_via(via, identity_.listeners()[*out], false, m.top_via(), src,
                       [&](std::string& v) { core::append_branch(v, worker, branch_hash); });
  core::SpliceEdits e;
  e.add_via = via;
  e.remove_top_via = true;
  e.max_forwards = m.max_forwards() >= 0 ? m.max_forwards() - 1 : 70;
  e.remove_routes = skip;
  std::string tail;
  std::string_view tail_view[] = {std::string_view()};
  if (!strict_ruri.empty()) {
    // §16.6 step 6: the strict router's URI becomes the Request-URI, the Request-URI the
    // last Route value.
    tail = "Route: <" + std::string(m.ruri_text()) + ">";
    tail_view[0] = tail;
    e.request_uri = strict_ruri;
    e.remove_routes = skip + 1;
    e.add_headers = tail_view;
  }
  std::string bytes;
  core::splice(m, e, bytes);
  ++counters_.stateless_requests;
  env_.send(peer, bytes, 0);
}

void ProxyCore::on_client_timeout(ClientTransaction& ct) {
  auto* b = static_cast<Branch*>(ct.user_data());
  if (!b || b->txn_id != ct.id()) return;
  report_fault(*b, ServerFault::Timeout, -1);
  branch_failed(*b->ctx, *b, 408, is_failover_code(*b->ctx, 408));
}

void ProxyCore::on_client_transport_error(ClientTransaction& ct) {
  auto* b = static_cast<Branch*>(ct.user_data());
  if (!b || b->txn_id != ct.id()) return;
  report_fault(*b, ServerFault::TransportError, -1);
  // §16.9: a transport error counts as a 503 from that branch.
  branch_failed(*b->ctx, *b, 503, settings_.failover_on_transport_error);
}

void ProxyCore::on_server_timeout(ServerTransaction&) {}

void ProxyCore::on_server_transport_error(ServerTransaction& txn) {
  // The caller cannot be reached: pending INVITE branches have no one to answer to, and
  // no branch fails over or asks the policy again.
  if (auto* ctx = static_cast<ResponseContext*>(txn.user_data())) {
    ctx->cancelled = true;
    if (ctx->invite) cancel_pending(*ctx, nullptr);
  }
}

void ProxyCore::on_ack(ServerTransaction& txn, const core::Message& ack) {
  forward_stateless_request(ack, txn.peer());
}

void ProxyCore::on_overload(const core::Message& req, const core::Peer& from) {
  ++counters_.overloaded;
  if (req.method() == core::Method::Ack) return;
  std::string_view hdr[] = {"Retry-After: 5"};
  core::ResponseSpec spec;
  spec.status = 503;
  spec.reason = "Overloaded";
  spec.to_tag = "sb-overload";
  spec.headers = hdr;
  env_.send(response_destination(req, from), core::build_response(req, spec), 0);
}

void ProxyCore::on_terminated(uint64_t txn_id) {
  if (ClientTransaction* ct = layer_->find_client(txn_id)) {
    auto* b = static_cast<Branch*>(ct->user_data());
    if (!b) return;
    ResponseContext& ctx = *b->ctx;
    if (b->txn_id == txn_id) b->txn_id = 0;
    --ctx.live;
    maybe_destroy(ctx);
    return;
  }
  if (ServerTransaction* st = layer_->find_server(txn_id)) {
    auto* ctx = static_cast<ResponseContext*>(st->user_data());
    if (!ctx) return;
    ctx->server_alive = false;
    st->set_user_data(nullptr);
    maybe_destroy(*ctx);
  }
}

// The one place a context dies: when its server transaction ended, no client transaction or
// resolution of it is live and no decision is pending. Called only at the end of a
// top-level event (layer callback, timer, policy or resolver callback).
void ProxyCore::maybe_destroy(ResponseContext& ctx) {
  if (ctx.server_alive || ctx.live > 0 || ctx.deciding) {
    trim(ctx);
    return;
  }
  if (ctx.request_parsed() && !spare_request_) spare_request_ = ctx.release_request();
  contexts_.erase(ctx.id);
}

// A context that waits for answers keeps the request's bytes, not its parse (1.2 KB and the
// header vector): dropped once no decision is pending and no branch waits for its
// resolution, i.e. when everything that reads it on the way out has run. Never inside a
// policy call (the policy may hold the message until its call returns). The Message is
// kept for the next context, so a request in the common path allocates none.
void ProxyCore::trim(ResponseContext& ctx) {
  if (!ctx.request_parsed() || ctx.deciding || in_policy_ > 0) return;
  for (const auto& b : ctx.branches)
    if (b->state == Branch::State::Resolving) return;
  std::unique_ptr<core::Message> parsed = ctx.release_request();
  if (!spare_request_) spare_request_ = std::move(parsed);
}

void ProxyCore::on_timer(int64_t now) {
  timers_.pop_due(now, [&](const TimerEntry& t) {
    ResponseContext* ctx = find_context(t.owner_id);
    if (!ctx) return;
    uint32_t index = t.generation >> 16;
    if (index >= ctx->branches.size()) return;
    Branch& b = *ctx->branches[index];
    if (t.kind == kCancelWait) {
      give_up(*ctx, b);
    } else {
      // A stale Timer C (reset by a provisional), or one for a branch already over or
      // already cancelled (then the wait for the CANCEL's outcome runs instead).
      if (b.timer_gen != (t.generation & 0xffff) || b.state == Branch::State::Done || b.cancel_sent)
        return;
      ++counters_.timer_c;
      b.timed_out = true;
      // §16.8: Timer C fired. With a provisional, CANCEL the branch; without one, act as if
      // the transaction had received a 408 (and CANCEL it should a provisional come later).
      if (b.state == Branch::State::Proceeding) {
        cancel_branch(*ctx, b);
      } else {
        b.cancel_wanted = true;
        branch_failed(*ctx, b, 408, false);
      }
    }
    if (ResponseContext* again = find_context(t.owner_id)) maybe_destroy(*again);
  });
}

}  // namespace sb::proxy
