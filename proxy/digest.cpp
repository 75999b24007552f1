#include "proxy/digest.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdio>

#include "core/sip_headers.h"
#include "core/text.h"

namespace sb::proxy::digest {

namespace {

constexpr char kHex[] = "0123456789abcdef";

std::string to_hex(const unsigned char* p, size_t n) {
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kHex[p[i] >> 4];
    out[2 * i + 1] = kHex[p[i] & 15];
  }
  return out;
}

const EVP_MD* md_of(Algorithm a) {
  switch (a) {
    case Algorithm::MD5: return EVP_md5();
    case Algorithm::SHA256: return EVP_sha256();
    case Algorithm::SHA512_256: return EVP_sha512_256();
  }
  return EVP_sha256();
}

// A quoted-string's content with its \-escapes undone (RFC 3261 §25.1 quoted-pair).
std::string unescape(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size()) ++i;
    out += v[i];
  }
  return out;
}

std::optional<uint64_t> parse_hex(std::string_view s, size_t max_digits) {
  if (s.empty() || s.size() > max_digits) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (!core::is_hex(c)) return std::nullopt;
    v = v * 16 + uint64_t(core::hex_value(c));
  }
  return v;
}

bool equal_ct(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = core::ascii_lower(c);
  return out;
}

// The fields of a nonce "<ts hex>:<worker>:<salt hex>:<mac hex>".
struct NonceParts {
  int64_t issued_ms = 0;
  uint32_t worker = 0;
  std::string_view body;  // everything before the last ':'
  std::string_view mac;
};

std::optional<NonceParts> split_nonce(std::string_view n) {
  size_t a = n.find(':');
  if (a == std::string_view::npos) return std::nullopt;
  size_t b = n.find(':', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  size_t c = n.find(':', b + 1);
  if (c == std::string_view::npos || n.find(':', c + 1) != std::string_view::npos) return std::nullopt;
  auto ts = parse_hex(n.substr(0, a), 15);
  auto w = parse_hex(n.substr(a + 1, b - a - 1), 8);
  auto salt = parse_hex(n.substr(b + 1, c - b - 1), 16);
  if (!ts || !w || !salt) return std::nullopt;
  NonceParts p;
  p.issued_ms = int64_t(*ts);
  p.worker = uint32_t(*w);
  p.body = n.substr(0, c);
  p.mac = n.substr(c + 1);
  return p;
}

Verdict fail(Outcome o, std::string reason, Credentials c = {}) {
  Verdict v;
  v.outcome = o;
  v.reason = std::move(reason);
  v.credentials = std::move(c);
  return v;
}

}  // namespace

std::string_view algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::MD5: return "MD5";
    case Algorithm::SHA256: return "SHA-256";
    case Algorithm::SHA512_256: return "SHA-512-256";
  }
  return "MD5";
}

std::optional<Algorithm> parse_algorithm(std::string_view name) {
  for (Algorithm a : kAllAlgorithms)
    if (core::iequals(name, algorithm_name(a))) return a;
  return std::nullopt;
}

size_t hex_length(Algorithm a) { return a == Algorithm::MD5 ? 32 : 64; }

std::string hash_hex(Algorithm a, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), out, &n, md_of(a), nullptr) != 1) return {};
  return to_hex(out, n);
}

std::string ha1(Algorithm a, std::string_view user, std::string_view realm,
                std::string_view password) {
  std::string s;
  s.append(user).append(":").append(realm).append(":").append(password);
  return hash_hex(a, s);
}

std::string response(Algorithm a, std::string_view ha1_hex, std::string_view nonce,
                     std::string_view nc, std::string_view cnonce, std::string_view qop,
                     std::string_view method, std::string_view uri) {
  std::string a2;
  a2.append(method).append(":").append(uri);
  std::string kd;
  kd.append(ha1_hex).append(":").append(nonce).append(":").append(nc).append(":");
  kd.append(cnonce).append(":").append(qop).append(":").append(hash_hex(a, a2));
  return hash_hex(a, kd);
}

std::string random_secret() {
  unsigned char b[32];
  if (RAND_bytes(b, sizeof b) != 1) return {};
  return to_hex(b, sizeof b);
}

// ---- NonceCounts ----

NonceCounts::Result NonceCounts::use(std::string_view nonce, int64_t issued_ms, uint32_t nc) {
  auto it = map_.find(nonce);
  if (it != map_.end()) {
    Entry& e = *it->second;
    if (nc <= e.nc) return Result::Replayed;
    e.nc = nc;
    lru_.splice(lru_.begin(), lru_, it->second);
    return Result::Accepted;
  }
  // Unknown: new, or evicted earlier (then its last nc is lost: refuse, §NonceCounts).
  if (issued_ms <= evicted_up_to_ms_) return Result::Forgotten;
  if (map_.size() >= capacity_) {
    Entry& old = lru_.back();
    evicted_up_to_ms_ = std::max(evicted_up_to_ms_, old.issued_ms);
    map_.erase(old.nonce);
    lru_.pop_back();
    if (issued_ms <= evicted_up_to_ms_) return Result::Forgotten;
  }
  lru_.push_front(Entry{std::string(nonce), nc, issued_ms});
  map_.emplace(lru_.front().nonce, lru_.begin());
  return Result::Accepted;
}

void NonceCounts::clear() {
  map_.clear();
  lru_.clear();
  evicted_up_to_ms_ = INT64_MIN;
}

// ---- credentials ----

std::optional<Credentials> find_credentials(const core::Message& m, std::string_view realm,
                                            std::string* error) {
  core::HeaderId id = uses_www(m) ? core::HeaderId::Authorization : core::HeaderId::ProxyAuthorization;
  std::optional<Credentials> first;
  std::string first_error;
  std::optional<Credentials> out;
  const auto& hs = m.headers();
  for (size_t i = 0; i < hs.size() && !out; ++i) {
    if (hs[i].id != id) continue;
    auto a = core::parse_auth(hs[i].value);
    if (!a || !core::iequals(a->scheme, "Digest")) continue;
    auto r = a->param("realm");
    if (!r || unescape(*r) != realm) continue;
    Credentials c;
    c.header_index = i;
    c.realm = std::string(realm);
    std::string err;
    auto get = [&](const char* name, std::string& into) {
      auto v = a->param(name);
      if (!v || v->empty()) {
        if (err.empty()) err = std::string("no ") + name + " parameter";
        return;
      }
      into = unescape(*v);
    };
    get("username", c.username);
    get("nonce", c.nonce);
    get("uri", c.uri);
    get("response", c.response);
    bool supported = true;
    if (auto alg = a->param("algorithm")) {
      auto parsed = parse_algorithm(*alg);
      if (parsed) c.algorithm = *parsed;
      else supported = false;
    }
    if (auto uh = a->param("userhash"); uh && core::iequals(*uh, "true")) supported = false;
    if (auto q = a->param("qop")) c.qop = std::string(*q);
    if (auto n = a->param("nc")) c.nc = std::string(*n);
    if (auto cn = a->param("cnonce")) c.cnonce = unescape(*cn);
    if (err.empty() && supported) {
      out = std::move(c);
    } else if (!first) {
      first = std::move(c);
      first_error = err.empty() ? "unsupported algorithm or userhash" : err;
    }
  }
  if (out) return out;
  if (first && error) *error = first_error;
  return first;
}

// ---- Authenticator ----

SharedNonceCounts::SharedNonceCounts(size_t capacity) {
  size_t per_shard = std::max<size_t>(1, (capacity + kShards - 1) / kShards);
  for (size_t i = 0; i < kShards; ++i) shards_.push_back(std::make_unique<Shard>(per_shard));
}

NonceCounts::Result SharedNonceCounts::use(std::string_view nonce, int64_t issued_ms, uint32_t nc) {
  Shard& s = *shards_[std::hash<std::string_view>{}(nonce) % kShards];
  std::lock_guard lock(s.mu);
  return s.counts.use(nonce, issued_ms, nc);
}

size_t SharedNonceCounts::size() const {
  size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    n += s->counts.size();
  }
  return n;
}

Authenticator::Authenticator(Settings settings, const core::Clock& clock,
                             std::shared_ptr<SharedNonceCounts> counts)
    : clock_(clock), s_(std::move(settings)), counts_(std::move(counts)) {
  if (!counts_) counts_ = std::make_shared<SharedNonceCounts>(s_.max_tracked_nonces);
}

void Authenticator::set_settings(Settings settings, std::shared_ptr<SharedNonceCounts> counts) {
  bool keep = settings.secret == s_.secret && settings.max_tracked_nonces == s_.max_tracked_nonces;
  s_ = std::move(settings);
  if (counts) counts_ = std::move(counts);
  else if (!keep) counts_ = std::make_shared<SharedNonceCounts>(s_.max_tracked_nonces);
}

std::string Authenticator::mac(std::string_view body, std::string_view realm) const {
  std::string data;
  data.append(body).append("@").append(realm);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(EVP_sha256(), s_.secret.data(), static_cast<int>(s_.secret.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &n))
    return {};
  return to_hex(out, std::min<unsigned>(n, 16));  // 128 bits are plenty for a nonce tag
}

std::string Authenticator::make_nonce(std::string_view realm) {
  if (realm.empty()) realm = s_.realm;
  unsigned char salt[8] = {};
  RAND_bytes(salt, sizeof salt);  // keeps two UAs challenged in the same ms apart (nc)
  char head[64];
  std::snprintf(head, sizeof head, "%llx:%x:", static_cast<unsigned long long>(clock_.wall_ms()),
                s_.worker);
  std::string body = head + to_hex(salt, sizeof salt);
  return body + ":" + mac(body, realm);
}

std::vector<std::string> Authenticator::challenge(bool www, std::string_view realm, bool stale) {
  if (realm.empty()) realm = s_.realm;
  std::string nonce = make_nonce(realm);
  std::vector<std::string> out;
  for (Algorithm a : s_.algorithms) {
    std::string line = www ? "WWW-Authenticate: Digest realm=\"" : "Proxy-Authenticate: Digest realm=\"";
    line.append(realm).append("\", nonce=\"").append(nonce).append("\", algorithm=");
    line.append(algorithm_name(a)).append(", qop=\"auth\"");
    if (stale) line.append(", stale=true");
    out.push_back(std::move(line));
  }
  return out;
}

Verdict Authenticator::verify(const core::Message& m, std::string_view realm,
                              const Ha1Lookup& lookup) {
  if (realm.empty()) realm = s_.realm;
  std::string err;
  auto found = find_credentials(m, realm, &err);
  if (!found) return fail(Outcome::NoCredentials, "no credentials for realm " + std::string(realm));
  Credentials c = std::move(*found);
  if (!err.empty()) {
    if (err.starts_with("no ")) return fail(Outcome::Malformed, "malformed credentials: " + err, c);
    return fail(Outcome::UnsupportedAlgorithm, err, c);
  }
  bool enabled = false;
  for (Algorithm a : s_.algorithms) enabled |= a == c.algorithm;
  if (!enabled)
    return fail(Outcome::UnsupportedAlgorithm,
                "algorithm " + std::string(algorithm_name(c.algorithm)) + " is not enabled", c);
  // RFC 7616 §3.4: we always offer qop="auth", so credentials without it are refused.
  if (!core::iequals(c.qop, "auth")) return fail(Outcome::Malformed, "qop=auth required", c);
  auto nc = parse_hex(c.nc, 8);
  if (c.nc.size() != 8 || !nc || *nc == 0) return fail(Outcome::Malformed, "bad nc", c);
  if (c.cnonce.empty()) return fail(Outcome::Malformed, "no cnonce parameter", c);

  auto parts = split_nonce(c.nonce);
  if (!parts || !equal_ct(lower(parts->mac), mac(parts->body, realm)))
    return fail(Outcome::BadNonce, "not a nonce of ours", c);
  int64_t now = clock_.wall_ms();
  if (parts->issued_ms > now + 5000) return fail(Outcome::BadNonce, "nonce from the future", c);

  auto ha1_hex = lookup ? lookup(c.username, realm, c.algorithm) : std::nullopt;
  if (!ha1_hex) return fail(Outcome::UnknownUser, "unknown user", c);
  std::string expected = response(c.algorithm, lower(*ha1_hex), c.nonce, c.nc, c.cnonce, c.qop,
                                  m.method_text(), c.uri);
  if (!equal_ct(lower(c.response), expected)) return fail(Outcome::WrongPassword, "wrong password", c);

  // The password was right: the nonce's age and origin only make it stale (RFC 7616 §3.3).
  if (now - parts->issued_ms > s_.nonce_ttl_ms) return fail(Outcome::Stale, "nonce expired", c);
  switch (counts_->use(c.nonce, parts->issued_ms, uint32_t(*nc))) {
    case NonceCounts::Result::Accepted: break;
    case NonceCounts::Result::Replayed:
      return fail(Outcome::Replayed, "replayed nonce-count", c);
    case NonceCounts::Result::Forgotten:
      return fail(Outcome::Stale, "nonce no longer tracked", c);
  }
  Verdict v;
  v.outcome = Outcome::Ok;
  v.credentials = std::move(c);
  return v;
}

}  // namespace sb::proxy::digest
