// Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760): challenges with stateless nonces
// and verification of credentials, qop=auth only. Pure: no I/O, an injected clock, OpenSSL for
// every digest and HMAC. Errors are values; nothing here throws on input.
//
// Nonces are stateless: "<wall ms hex>:<worker>:<salt hex>:<HMAC-SHA-256 over those, the realm
// and the secret, hex, 128 bit>". Any worker can check that a nonce is ours and not expired
// without shared state. Nonce-count replay protection needs state: the highest nc seen per
// nonce, in a bounded LRU (NonceCounts). Requests go to workers by their Via branch
// (transport/owner.h), so a UA's retries, and a captured request replayed, land on any
// worker: the table is shared by the workers (SharedNonceCounts: shards, each a mutex held
// for one map operation, and only for a request that carries credentials). The nonce names
// its worker only for logs.
#pragma once
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "core/message.h"

namespace sb::proxy::digest {

enum class Algorithm : uint8_t { MD5, SHA256, SHA512_256 };
inline constexpr Algorithm kAllAlgorithms[] = {Algorithm::MD5, Algorithm::SHA256,
                                               Algorithm::SHA512_256};

// "MD5", "SHA-256", "SHA-512-256" (RFC 7616 §6.1).
std::string_view algorithm_name(Algorithm a);
// Case-insensitive; the -sess variants are not supported (nullopt).
std::optional<Algorithm> parse_algorithm(std::string_view name);
// Hex digits of H(data) for `a`: 32 for MD5, 64 for the others.
size_t hex_length(Algorithm a);

// Lower-case hex of H(data).
std::string hash_hex(Algorithm a, std::string_view data);
// RFC 7616 §3.4.2: H(username ":" realm ":" password), what a users file stores.
std::string ha1(Algorithm a, std::string_view user, std::string_view realm,
                std::string_view password);
// RFC 7616 §3.4.1 with qop=auth: H(HA1:nonce:nc:cnonce:qop:H(method:uri)).
std::string response(Algorithm a, std::string_view ha1_hex, std::string_view nonce,
                     std::string_view nc, std::string_view cnonce, std::string_view qop,
                     std::string_view method, std::string_view uri);
// 32 random bytes as hex, for a per-start nonce secret (OpenSSL RAND_bytes).
std::string random_secret();

struct Settings {
  std::string realm;                     // the default realm (config auth.realm)
  std::vector<Algorithm> algorithms = {Algorithm::SHA256, Algorithm::MD5};  // challenge order
  int64_t nonce_ttl_ms = 300'000;
  std::string secret;                    // HMAC key of the nonces
  uint32_t worker = 0;                   // the worker issuing these nonces (written into them)
  size_t max_tracked_nonces = 65536;     // nc table size
};

// Highest nonce-count seen per nonce, bounded, least recently used evicted first. A nonce
// evicted from the table would look fresh again; so every nonce issued no later than the
// newest evicted one is refused as stale from then on (the UA just gets a new nonce).
class NonceCounts {
 public:
  explicit NonceCounts(size_t capacity) : capacity_(capacity ? capacity : 1) {}
  enum class Result : uint8_t { Accepted, Replayed, Forgotten };
  // `issued_ms` is the nonce's timestamp. Accepted records nc as the highest seen.
  Result use(std::string_view nonce, int64_t issued_ms, uint32_t nc);
  size_t size() const { return map_.size(); }
  void clear();

 private:
  struct Entry {
    std::string nonce;
    uint32_t nc;
    int64_t issued_ms;
  };
  size_t capacity_;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<std::string_view, std::list<Entry>::iterator> map_;
  int64_t evicted_up_to_ms_ = INT64_MIN;
};

// NonceCounts shared by every worker: 16 shards by nonce hash, each with its own mutex, so
// two workers checking credentials rarely meet.
class SharedNonceCounts {
 public:
  explicit SharedNonceCounts(size_t capacity);
  NonceCounts::Result use(std::string_view nonce, int64_t issued_ms, uint32_t nc);
  size_t size() const;

 private:
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable std::mutex mu;
    NonceCounts counts;
    explicit Shard(size_t capacity) : counts(capacity) {}
  };
  std::vector<std::unique_ptr<Shard>> shards_;
};

// The credentials of one Authorization / Proxy-Authorization header (RFC 7616 §3.4).
struct Credentials {
  size_t header_index = 0;  // in Message::headers()
  Algorithm algorithm = Algorithm::MD5;
  std::string username, realm, nonce, uri, response, qop, nc, cnonce;
};

enum class Outcome : uint8_t {
  Ok,
  NoCredentials,         // no Digest credentials for this realm
  Malformed,             // a required parameter missing or bad
  UnsupportedAlgorithm,  // an algorithm not enabled (or -sess, or userhash)
  BadNonce,              // not a nonce of ours (tampered, other secret or realm)
  UnknownUser,
  WrongPassword,         // the response does not match
  Stale,                 // right password, nonce expired or no longer tracked
  Replayed,              // nonce-count not above the last one seen for this nonce
};

struct Verdict {
  Outcome outcome = Outcome::NoCredentials;
  std::string reason;    // for logs and scripts: "wrong password", "nonce expired", ...
  Credentials credentials;  // what was found (empty when NoCredentials)
  bool ok() const { return outcome == Outcome::Ok; }
  // Whether the next challenge carries stale=true (RFC 7616 §3.3).
  bool stale() const { return outcome == Outcome::Stale; }
};

// HA1 (lower-case hex) of `user` in `realm` for `algorithm`; nullopt = no such user (or no
// HA1 for that algorithm).
using Ha1Lookup = std::function<std::optional<std::string>(std::string_view user,
                                                           std::string_view realm, Algorithm)>;

// The Digest credentials for `realm` in the request's Authorization (REGISTER) or
// Proxy-Authorization (other methods) headers: the first whose realm matches and whose
// algorithm we support; else the first for the realm (its algorithm then fails).
std::optional<Credentials> find_credentials(const core::Message& m, std::string_view realm,
                                            std::string* error = nullptr);

// Per worker: issues challenges and checks credentials against the nc table it is given
// (shared by the workers; one of its own when none is given).
class Authenticator {
 public:
  Authenticator(Settings settings, const core::Clock& clock,
                std::shared_ptr<SharedNonceCounts> counts = nullptr);
  // Reload: new settings and the table to use (null: keep ours unless the secret changed).
  void set_settings(Settings settings, std::shared_ptr<SharedNonceCounts> counts = nullptr);
  const Settings& settings() const { return s_; }

  std::string make_nonce(std::string_view realm);
  // The challenge header lines, one per algorithm (RFC 8760 §2.4: preferred first):
  // "WWW-Authenticate: Digest ..." for REGISTER (401), else "Proxy-Authenticate: ..." (407).
  // `realm` empty = the default realm.
  std::vector<std::string> challenge(bool www, std::string_view realm, bool stale);
  Verdict verify(const core::Message& m, std::string_view realm, const Ha1Lookup& lookup);

  size_t tracked_nonces() const { return counts_->size(); }

 private:
  std::string mac(std::string_view body, std::string_view realm) const;
  const core::Clock& clock_;
  Settings s_;
  std::shared_ptr<SharedNonceCounts> counts_;
};

// REGISTER is answered by a registrar (401 / Authorization), everything else by a proxy
// (407 / Proxy-Authorization): RFC 3261 §22.1, §22.3.
inline bool uses_www(const core::Message& m) { return m.method() == core::Method::Register; }

}  // namespace sb::proxy::digest
