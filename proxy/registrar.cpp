#include "proxy/registrar.h"

#include <cstdio>
#include <ctime>
#include <memory_resource>

#include "core/scratch.h"
#include "core/sip_headers.h"
#include "core/text.h"
#include "core/uri.h"

namespace sb::proxy {

namespace {

RegistrarReply reply(int status, std::string reason) {
  RegistrarReply r;
  r.status = status;
  r.reason = std::move(reason);
  return r;
}

RegistrarReply bad_request(const core::Error& e) { return reply(400, core::describe(e)); }

// True when a Require or Supported header of `reg` lists `tag`.
bool lists(const core::Message& reg, core::HeaderId id, std::string_view tag) {
  bool found = false;
  reg.for_each_value(id, [&](std::string_view v) {
    found = core::iequals(v, tag);
    return !found;
  });
  return found;
}
bool supports(const core::Message& reg, std::string_view tag) {
  return lists(reg, core::HeaderId::Supported, tag) || lists(reg, core::HeaderId::Require, tag);
}

// Contact params other than those the registrar keeps in fields of their own (q, expires,
// +sip.instance, reg-id), as written, joined with ';'.
std::string other_params(std::string_view params) {
  std::string out;
  size_t i = 0;
  while (i < params.size()) {
    size_t e = core::find_unquoted(params, ';', i);
    if (e == std::string_view::npos) e = params.size();
    std::string_view p = core::trim(params.substr(i, e - i));
    std::string_view name = core::trim(p.substr(0, p.find('=')));
    if (!p.empty() && !core::iequals(name, "q") && !core::iequals(name, "expires") &&
        !core::iequals(name, "+sip.instance") && !core::iequals(name, "reg-id")) {
      if (!out.empty()) out += ';';
      out.append(p);
    }
    i = e + 1;
  }
  return out;
}

// q as RFC 3261 §20.10 writes it: "0.5", "0.075", "0".
std::string format_q(uint16_t q1000) {
  if (q1000 >= 1000) return "1";
  std::string s = "0.";
  s += char('0' + q1000 / 100);
  s += char('0' + q1000 / 10 % 10);
  s += char('0' + q1000 % 10);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

// RFC 3261 §10.3 step 8: one Contact per binding, with the seconds it has left.
std::string contact_line(const location::Binding& b, int64_t now) {
  std::string s;
  // One allocation: the fixed text and the numbers take at most 72 characters ("Contact:
  // <>", ";", ";q=0.xxx", ";+sip.instance=", ";reg-id=" and ";expires=" with 10 digits each).
  s.reserve(b.contact.size() + b.params.size() + b.instance.size() + 72);
  s += "Contact: <";
  s += b.contact;
  s += '>';
  if (!b.params.empty()) s.append(";").append(b.params);
  if (b.q != 1000) s.append(";q=").append(format_q(b.q));
  if (!b.instance.empty()) {
    s.append(";+sip.instance=").append(b.instance);
    if (b.reg_id) s.append(";reg-id=").append(std::to_string(b.reg_id));
  }
  s.append(";expires=").append(std::to_string(b.expires_in(now)));
  return s;
}

}  // namespace

void append_rfc1123_date(std::string& out, int64_t wall_ms) {
  // Every REGISTER in one second carries the same Date: format it once per second (per
  // worker thread: no sharing).
  thread_local int64_t cached_s = -1;
  thread_local std::string cached;
  const int64_t s = wall_ms / 1000;
  if (s == cached_s) {
    out += cached;
    return;
  }
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t t = static_cast<std::time_t>(wall_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  // Names by hand: strftime's %a/%b follow the locale.
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday % 7],
                tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  cached = buf;
  cached_s = s;
  out += cached;
}

Registrar::Registrar(location::LocationService& location, const core::Clock& clock,
                     RegistrarSettings settings)
    : location_(location), clock_(clock), settings_(std::move(settings)) {}

bool Registrar::serves(std::string_view host) const {
  for (const std::string& d : settings_.domains)
    if (core::iequals(d, host)) return true;
  return false;
}

RegistrarReply Registrar::handle(const core::Message& reg, const core::Peer& source) const {
  // §10.3: a registrar accepts only REGISTER.
  if (reg.method() != core::Method::Register) {
    RegistrarReply r = reply(405, "registrar accepts only REGISTER");
    r.headers.emplace_back("Allow: REGISTER");
    return r;
  }

  // Step 1: do we hold bindings for the Request-URI's domain?
  const core::Uri& ruri = reg.ruri();
  if (!ruri.is_sip() || !serves(ruri.host)) {
    RegistrarReply r = reply(403, "domain not served here");
    r.outcome = RegistrarReply::Outcome::NotOurs;
    return r;
  }

  // Step 2: Require as a UAS (§8.2.2.3); we support path (RFC 3327) and outbound (RFC 5626).
  std::string unsupported;
  reg.for_each_value(core::HeaderId::Require, [&](std::string_view tag) {
    if (!tag.empty() && !core::iequals(tag, "path") && !core::iequals(tag, "outbound")) {
      if (!unsupported.empty()) unsupported += ", ";
      unsupported.append(tag);
    }
    return true;
  });
  if (!unsupported.empty()) {
    RegistrarReply r = reply(420, "unsupported extension in Require: " + unsupported);
    r.headers.push_back("Unsupported: " + unsupported);
    return r;
  }

  // Step 5 (needs To first): the AOR must be a SIP or SIPS URI (RFC 4475 §3.3.4 unksm2) of a
  // domain served here, else 404.
  if (!reg.has_to() || !reg.to().uri.is_sip())
    return reply(400, "bad To: address-of-record must be a SIP or SIPS URI");
  const core::Uri& to = reg.to().uri;
  if (!serves(to.host)) return reply(404, "address-of-record not in a domain served here");
  const std::string aor = core::canonical_aor(to);

  // Steps 3-4: authentication and authorization for this AOR.
  if (authorizer_)
    if (auto r = authorizer_(reg, aor)) return std::move(*r);

  // Step 6: the Contacts.
  std::optional<uint32_t> expires_header;
  if (const core::Header* h = reg.find(core::HeaderId::Expires)) {
    auto e = core::parse_delta_seconds(h->value, "not a number of seconds");
    if (!e) return bad_request(core::in_header(e.error(), "Expires"));
    expires_header = *e;
  }
  // The temporaries below live on the stack for the usual REGISTER of a few Contacts.
  core::Scratch<4096> scratch;
  std::pmr::vector<core::ContactValue> contacts(scratch.resource());
  bool star = false;
  core::Status bad;
  reg.for_each_value(core::HeaderId::Contact, [&](std::string_view v) {
    if (v.empty()) {
      bad = core::Error{"empty value", 400, "Contact"};
      return false;
    }
    auto c = core::parse_contact(v);
    if (!c) {
      bad = core::in_header(c.error(), "Contact");
      return false;
    }
    star = star || c->star;
    contacts.push_back(*c);
    return true;
  });
  if (!bad) return bad_request(bad.error());
  // §10.3 step 6: '*' only alone and with Expires: 0.
  if (star && contacts.size() != 1) return reply(400, "bad Contact: '*' must be the only Contact");
  if (star && expires_header.value_or(1) != 0)
    return reply(400, "bad Contact: '*' requires Expires: 0");

  std::pmr::vector<location::BindingChange> changes(scratch.resource());
  std::pmr::vector<std::string> params(scratch.resource());  // owns what changes[i].params views
  changes.reserve(contacts.size());
  params.reserve(contacts.size());
  bool outbound = false;
  if (!star) {
    for (const core::ContactValue& c : contacts) {
      // §10.3 step 7: the expires param, else the Expires header, else our default.
      uint32_t e = c.expires.value_or(expires_header.value_or(settings_.default_expires));
      // 423 only for a nonzero interval below our minimum that is also under an hour.
      if (e > 0 && e < settings_.min_expires && e < 3600) {
        RegistrarReply r = reply(423, "expiry shorter than Min-Expires");
        r.headers.push_back("Min-Expires: " + std::to_string(settings_.min_expires));
        return r;
      }
      if (e > settings_.max_expires) e = settings_.max_expires;

      location::BindingChange ch;
      ch.contact = c.addr.uri_text;
      ch.q = c.q1000;
      ch.expires = e;
      if (auto inst = c.addr.param("+sip.instance")) {
        if (inst->empty()) return reply(400, "bad Contact: empty +sip.instance");
        ch.instance = *inst;
      }
      if (auto rid = c.addr.param("reg-id")) {
        // RFC 5626 §4.2: reg-id is 1 to 2^31-1.
        auto v = core::parse_uint(*rid, 0x7fffffff);
        if (!v || *v == 0) return reply(400, "bad Contact: bad reg-id");
        // RFC 5626 §6: without +sip.instance the reg-id is ignored.
        if (!ch.instance.empty()) ch.reg_id = static_cast<uint32_t>(*v);
      }
      if (ch.reg_id) {
        for (const auto& other : changes)
          if (other.reg_id == ch.reg_id && core::iequals(other.instance, ch.instance))
            return reply(400, "bad Contact: the same +sip.instance and reg-id twice");
        outbound = true;
      }
      params.push_back(other_params(c.addr.params));
      ch.params = params.back();
      changes.push_back(ch);
    }
  }

  // RFC 3327 §5.3: the Path values are stored with the bindings, topmost first.
  std::pmr::vector<std::string_view> path(scratch.resource());
  reg.for_each_value(core::HeaderId::Path, [&](std::string_view v) {
    if (!v.empty()) path.push_back(v);
    return true;
  });
  // RFC 5626 §6: outbound needs a first hop that supports it: us when there is no Path,
  // else the edge proxy, whose Path (the last one) must carry ;ob.
  if (outbound && !path.empty()) {
    auto edge = core::parse_name_addr(path.back());
    if (!edge || !edge->uri.has_param("ob"))
      return reply(439, "first hop lacks outbound support");
  }

  // Step 7: apply, atomically, with the Call-ID/CSeq checks.
  location::UpdateRequest req;
  req.call_id = reg.call_id();
  req.cseq = reg.cseq().number;
  req.source = source;
  req.path = path;
  if (const core::Header* ua = reg.find(core::HeaderId::UserAgent)) req.user_agent = ua->value;
  req.remove_all = star;
  req.limits = location::Limits{settings_.max_bindings_per_aor, settings_.max_aors};
  auto res = location_.update(aor, req, changes);
  if (!res) {
    const core::Error& e = res.error();
    RegistrarReply r = reply(e.status, core::describe(e));
    // The table is full for now: bindings expire, so the UA may try again later.
    if (e.status == 503) r.headers.emplace_back("Retry-After: 300");
    return r;
  }

  // Step 8: 200 with every current binding.
  RegistrarReply r = reply(200, "OK");
  r.headers.reserve(res->bindings.size() + 3);  // the Contacts, Date, Path, Require
  const int64_t now = clock_.wall_ms();
  for (const location::Binding& b : res->bindings) {
    // Static bindings belong to the operator: a UA can neither refresh nor remove them.
    if (b.is_static()) continue;
    r.headers.push_back(contact_line(b, now));
  }
  std::string date;
  date.reserve(40);  // "Date: " and the 29 characters of an RFC 1123 date
  date += "Date: ";
  append_rfc1123_date(date, now);
  r.headers.push_back(std::move(date));
  if (!path.empty() && supports(reg, "path")) {
    std::string line = "Path: ";
    for (size_t i = 0; i < path.size(); ++i) {
      if (i) line += ", ";
      line.append(path[i]);
    }
    r.headers.push_back(std::move(line));
  }
  // RFC 5626 §6: the registrar used the outbound procedures; say so when the UA supports them.
  if (outbound && supports(reg, "outbound")) r.headers.emplace_back("Require: outbound");
  return r;
}

}  // namespace sb::proxy
