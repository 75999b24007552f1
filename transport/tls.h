// TLS for stream connections (RFC 3261 §26.2, RFC 5630, RFC 5922) with OpenSSL memory BIOs:
// the worker's libuv loop moves the ciphertext, OpenSSL never touches a socket, so no
// handshake blocks and no thread is added.
//
// A TlsContext is one SSL_CTX per config generation: built on the main thread, then shared
// read-only by every worker (SSL_new on a shared SSL_CTX is thread-safe). A TlsSession holds
// a reference to its context, so a reload that installs a new context leaves established
// connections on the one they started with.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sb::core {
class Endpoint;
}

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;
typedef struct x509_st X509;

namespace sb::transport {

// Config "tls" (docs/configuration.md). Paths are absolute (resolved by the config loader).
struct TlsSettings {
  std::string certificate;  // PEM chain, leaf first
  std::string private_key;  // PEM
  std::string ca_file;      // PEM bundle to verify peers; "" = the system's default paths
  std::string min_version = "1.2";  // "1.2" | "1.3"
  bool verify_client = false;       // require and verify a client certificate
  bool verify_server = true;        // verify servers we connect to (chain and name)
};

class TlsContext {
 public:
  // Loads the certificate, key and CA bundle. nullptr when something failed; each fault
  // is appended to `errors` prefixed with its config key ("tls.certificate: ...").
  static std::shared_ptr<TlsContext> create(const TlsSettings& s, std::vector<std::string>& errors);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* native() const { return ctx_; }
  const TlsSettings& settings() const { return settings_; }

 private:
  TlsContext() = default;
  SSL_CTX* ctx_ = nullptr;
  TlsSettings settings_;
};

// One side of one TLS connection over memory BIOs. Single-threaded (the owning worker).
// Ciphertext from the peer goes into feed(); ciphertext for the peer accumulates in
// output() until the caller has written it and called consume_output().
class TlsSession {
 public:
  enum class Role : uint8_t { Client, Server };

  // `peer_name`: for a client, the host the certificate must match (a SIP domain per RFC
  // 5922 or an IP literal); a domain name is also sent as SNI. "" = check the chain only.
  TlsSession(std::shared_ptr<const TlsContext> ctx, Role role, std::string peer_name);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Client: writes the ClientHello into output(). false when the session could not be set up.
  bool start();
  // Ciphertext read from the socket. Decrypted bytes are appended to `plain`. false on a
  // fatal error (failed handshake, bad record, peer's close_notify): see error().
  bool feed(std::string_view cipher, std::string& plain);
  // Encrypts `plain` into output(). Only after handshake_done(). false on a fatal error.
  bool write(std::string_view plain);
  // Ciphertext waiting to be written to the socket.
  std::string& output() { return out_; }

  bool handshake_done() const { return done_; }
  bool failed() const { return failed_; }
  bool closed_by_peer() const { return peer_closed_; }
  const std::string& error() const { return error_; }
  // Whether the peer proved `host` (RFC 5922 rules, an IP literal against iPAddress SANs)
  // with a certificate that verified against our CA bundle. A server only has one to check
  // with config tls.verify_client (it asks clients for a certificate then). The answer for
  // the last host asked is kept: a peer offering RFC 5923 ;alias asks on every request.
  bool peer_proves(std::string_view host) const;

 private:
  bool fail(std::string why);
  void drain_output();
  bool check_peer_name();

  std::shared_ptr<const TlsContext> ctx_;
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;   // network -> SSL (owned by ssl_)
  BIO* out_bio_ = nullptr;  // SSL -> network (owned by ssl_)
  Role role_;
  std::string peer_name_;
  std::string out_;
  std::string error_;
  bool done_ = false;
  bool failed_ = false;
  bool peer_closed_ = false;
  // peer_proves(): the certificate cannot change once the handshake is done (no
  // renegotiation), so the last answer stands.
  struct Proof {
    bool checked = false;
    bool ok = false;
    std::string host;
  };
  mutable Proof proof_;
};

// RFC 5922 §7.1: does a certificate with these identities match SIP domain `domain`?
// subjectAltName URIs (sip:domain, no user part) are used first; else its DNS names; the
// subject's CN only when the certificate has no subjectAltName at all. Case-insensitive,
// no wildcards (§7.2).
bool rfc5922_matches(const std::vector<std::string>& san_uris,
                     const std::vector<std::string>& san_dns, bool has_any_san,
                     std::string_view common_name, std::string_view domain);
// The same on a certificate; an IP-literal `host` is matched against iPAddress SANs.
bool certificate_matches(X509* cert, std::string_view host);

// The SIP domain a TLS server was found for: RFC 5922 §4 checks the certificate against the
// domain of the URI that was resolved, while the transport only sees the address. The
// worker's resolver notes it; the same worker's transport reads it when it connects. Per
// thread (a worker is a thread), bounded; the last domain noted for an address wins.
void note_tls_peer_name(const core::Endpoint& server, std::string_view domain);
// The domain noted for `server`, else its IP address (then the certificate must carry it).
std::string tls_peer_name(const core::Endpoint& server);

}  // namespace sb::transport
