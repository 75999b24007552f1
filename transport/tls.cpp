#include "transport/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <unordered_map>

#include "core/address.h"
#include "core/text.h"

namespace sb::transport {

namespace {

// The most specific OpenSSL error queued, or `fallback`; clears the queue.
std::string openssl_error(const char* fallback) {
  unsigned long last = 0;
  while (unsigned long e = ERR_get_error()) last = e;
  if (last == 0) return fallback;
  char buf[256];
  ERR_error_string_n(last, buf, sizeof buf);
  return buf;
}

std::string_view asn1_text(const ASN1_STRING* s) {
  if (!s) return {};
  auto* p = reinterpret_cast<const char*>(ASN1_STRING_get0_data(s));
  int n = ASN1_STRING_length(s);
  if (!p || n <= 0) return {};
  std::string_view v(p, static_cast<size_t>(n));
  // An embedded NUL is the classic "www.bank.com\0.evil.com" trick: never matches.
  if (v.find('\0') != std::string_view::npos) return {};
  return v;
}

// "192.0.2.1", "::1" or "[::1]".
bool is_ip_literal(std::string_view host) {
  return core::Endpoint::parse(host, 0).has_value();
}

std::string_view strip_brackets(std::string_view h) {
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') return h.substr(1, h.size() - 2);
  return h;
}

// The host of a SAN URI "sip:example.com" (RFC 5922 §7.1); "" when it is not a sip URI
// without a user part.
std::string_view sip_uri_domain(std::string_view uri) {
  if (uri.size() < 4 || !core::iequals(uri.substr(0, 4), "sip:")) return {};
  uri.remove_prefix(4);
  if (uri.find('@') != std::string_view::npos) return {};
  size_t end = uri.find_first_of(";:?>");
  return uri.substr(0, end);
}

bool name_equal(std::string_view cert_name, std::string_view domain) {
  // RFC 5922 §7.2: wildcards are not used for SIP domain identities.
  if (cert_name.empty() || cert_name.find('*') != std::string_view::npos) return false;
  // A trailing dot (absolute DNS name) is the same name.
  if (cert_name.back() == '.') cert_name.remove_suffix(1);
  if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  return core::iequals(cert_name, domain);
}

}  // namespace

// ---- TlsContext ----

std::shared_ptr<TlsContext> TlsContext::create(const TlsSettings& s, std::vector<std::string>& errors) {
  const size_t before = errors.size();
  ERR_clear_error();
  std::shared_ptr<TlsContext> out(new TlsContext());
  out->settings_ = s;
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  if (!ctx) {
    errors.push_back("tls: cannot create an SSL context: " + openssl_error("out of memory"));
    return nullptr;
  }
  out->ctx_ = ctx;
  if (s.min_version != "1.2" && s.min_version != "1.3") {
    errors.push_back("tls.min_version: expected \"1.2\" or \"1.3\", got \"" + s.min_version + "\"");
  } else {
    SSL_CTX_set_min_proto_version(ctx, s.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
  }
  // Idle connections keep no read/write buffers; renegotiation is an attack surface we do
  // not need.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  static const unsigned char kSessionContext[] = "switchboard";
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);

  bool have_cert = false, have_key = false;
  if (SSL_CTX_use_certificate_chain_file(ctx, s.certificate.c_str()) != 1)
    errors.push_back("tls.certificate: cannot load " + s.certificate + ": " +
                     openssl_error("not a PEM certificate"));
  else
    have_cert = true;
  if (SSL_CTX_use_PrivateKey_file(ctx, s.private_key.c_str(), SSL_FILETYPE_PEM) != 1)
    errors.push_back("tls.private_key: cannot load " + s.private_key + ": " +
                     openssl_error("not a PEM private key"));
  else
    have_key = true;
  if (have_cert && have_key && SSL_CTX_check_private_key(ctx) != 1)
    errors.push_back("tls.private_key: " + s.private_key + " does not belong to tls.certificate " +
                     s.certificate + ": " + openssl_error("key mismatch"));
  if (!s.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, s.ca_file.c_str(), nullptr) != 1)
      errors.push_back("tls.ca_file: cannot load " + s.ca_file + ": " +
                       openssl_error("not a PEM certificate bundle"));
    else if (s.verify_client) {
      // Tell clients which CAs we accept.
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(s.ca_file.c_str()))
        SSL_CTX_set_client_CA_list(ctx, names);
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    errors.push_back("tls.ca_file: not set and the system's CA paths cannot be loaded: " +
                     openssl_error("unknown error"));
  }
  // Server side; the client side sets its own mode per session.
  SSL_CTX_set_verify(ctx, s.verify_client ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                          : SSL_VERIFY_NONE,
                     nullptr);
  ERR_clear_error();
  if (errors.size() != before) return nullptr;
  return out;
}

TlsContext::~TlsContext() {
  if (ctx_) SSL_CTX_free(ctx_);
}

// ---- TlsSession ----

TlsSession::TlsSession(std::shared_ptr<const TlsContext> ctx, Role role, std::string peer_name)
    : ctx_(std::move(ctx)), role_(role), peer_name_(std::move(peer_name)) {
  // SSL_new takes its own reference on the SSL_CTX; ctx_ keeps our settings alive too.
  ssl_ = ctx_ ? SSL_new(ctx_->native()) : nullptr;
  in_ = BIO_new(BIO_s_mem());
  out_bio_ = BIO_new(BIO_s_mem());
  if (!ssl_ || !in_ || !out_bio_) {
    if (in_) BIO_free(in_);
    if (out_bio_) BIO_free(out_bio_);
    in_ = out_bio_ = nullptr;
    fail("cannot create a TLS session: " + openssl_error("out of memory"));
    return;
  }
  // An empty input BIO means "wait for more", not end of stream.
  BIO_set_mem_eof_return(in_, -1);
  SSL_set_bio(ssl_, in_, out_bio_);  // ssl_ owns both now
  if (role_ == Role::Server) {
    SSL_set_accept_state(ssl_);
    return;
  }
  SSL_set_connect_state(ssl_);
  SSL_set_verify(ssl_, ctx_->settings().verify_server ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  std::string_view host = strip_brackets(peer_name_);
  // SNI carries host names only (RFC 6066 §3).
  if (!host.empty() && !is_ip_literal(host))
    SSL_set_tlsext_host_name(ssl_, std::string(host).c_str());
}

TlsSession::~TlsSession() {
  if (ssl_) SSL_free(ssl_);
}

bool TlsSession::fail(std::string why) {
  if (!failed_) error_ = std::move(why);
  failed_ = true;
  ERR_clear_error();
  return false;
}

void TlsSession::drain_output() {
  size_t pending = BIO_ctrl_pending(out_bio_);
  while (pending > 0) {
    size_t old = out_.size();
    out_.resize(old + pending);
    int n = BIO_read(out_bio_, out_.data() + old, static_cast<int>(pending));
    out_.resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
    if (n <= 0) break;
    pending = BIO_ctrl_pending(out_bio_);
  }
}

bool TlsSession::start() {
  if (failed_) return false;
  if (role_ == Role::Server) return true;
  int r = SSL_do_handshake(ssl_);
  drain_output();
  if (r == 1) return true;  // cannot happen before the server answered; harmless
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
  return fail("TLS handshake: " + openssl_error("cannot start"));
}

bool TlsSession::check_peer_name() {
  if (role_ != Role::Client || !ctx_->settings().verify_server || peer_name_.empty()) return true;
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (!cert) return fail("the server sent no certificate");
  bool ok = certificate_matches(cert, peer_name_);
  X509_free(cert);
  // RFC 5922 §7.3: a certificate for another domain is a failed connection.
  if (!ok) return fail("the server's certificate does not match " + peer_name_ + " (RFC 5922)");
  return true;
}

bool TlsSession::feed(std::string_view cipher, std::string& plain) {
  if (failed_) return false;
  while (!cipher.empty()) {
    int n = BIO_write(in_, cipher.data(), static_cast<int>(std::min<size_t>(cipher.size(), 1u << 30)));
    if (n <= 0) return fail("TLS: cannot buffer input");
    cipher.remove_prefix(static_cast<size_t>(n));
  }
  if (!done_) {
    int r = SSL_do_handshake(ssl_);
    drain_output();  // a Finished or an alert goes out either way
    if (r != 1) {
      int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
      long v = SSL_get_verify_result(ssl_);
      if (v != X509_V_OK)
        return fail(std::string("TLS handshake: certificate verification failed: ") +
                    X509_verify_cert_error_string(v));
      return fail("TLS handshake: " + openssl_error("connection closed"));
    }
    done_ = true;
    if (!check_peer_name()) return false;
  }
  // Decrypt straight into the caller's buffer (it keeps its capacity between reads).
  constexpr size_t kChunk = 16384;
  for (;;) {
    size_t old = plain.size();
    plain.resize(old + kChunk);
    int n = SSL_read(ssl_, plain.data() + old, static_cast<int>(kChunk));
    if (n > 0) {
      plain.resize(old + static_cast<size_t>(n));
      continue;
    }
    plain.resize(old);
    int e = SSL_get_error(ssl_, n);
    drain_output();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
    if (e == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      return false;
    }
    return fail("TLS read: " + openssl_error("connection broken"));
  }
}

bool TlsSession::write(std::string_view plain) {
  if (failed_ || !done_) return false;
  while (!plain.empty()) {
    int chunk = static_cast<int>(std::min<size_t>(plain.size(), 1u << 30));
    int n = SSL_write(ssl_, plain.data(), chunk);
    if (n <= 0) {
      drain_output();
      return fail("TLS write: " + openssl_error("connection broken"));
    }
    plain.remove_prefix(static_cast<size_t>(n));
  }
  drain_output();
  return true;
}

bool TlsSession::peer_proves(std::string_view host) const {
  if (!done_ || failed_ || !ssl_) return false;
  if (proof_.checked && proof_.host == host) return proof_.ok;
  X509* cert = SSL_get1_peer_certificate(ssl_);
  bool ok = cert && SSL_get_verify_result(ssl_) == X509_V_OK && certificate_matches(cert, host);
  X509_free(cert);
  proof_.checked = true;
  proof_.ok = ok;
  proof_.host.assign(host);
  return ok;
}

// ---- RFC 5922 names ----

bool rfc5922_matches(const std::vector<std::string>& san_uris,
                     const std::vector<std::string>& san_dns, bool has_any_san,
                     std::string_view common_name, std::string_view domain) {
  domain = strip_brackets(domain);
  if (domain.empty()) return false;
  // §7.1: sip URIs in subjectAltName name the SIP domains the certificate is for; when
  // there are any, DNS names are not consulted.
  bool any_sip_uri = false;
  for (const auto& u : san_uris) {
    std::string_view d = sip_uri_domain(u);
    if (d.empty()) continue;
    any_sip_uri = true;
    if (name_equal(d, domain)) return true;
  }
  if (any_sip_uri) return false;
  for (const auto& d : san_dns)
    if (name_equal(d, domain)) return true;
  // The subject's CN only for a certificate without any subjectAltName.
  if (!has_any_san) return name_equal(common_name, domain);
  return false;
}

bool certificate_matches(X509* cert, std::string_view host) {
  if (!cert) return false;
  host = strip_brackets(host);
  if (host.empty()) return false;
  std::string h(host);
  if (is_ip_literal(host)) return X509_check_ip_asc(cert, h.c_str(), 0) == 1;
  std::vector<std::string> uris, dns;
  bool has_san = false;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names) {
    int n = sk_GENERAL_NAME_num(names);
    has_san = n > 0;
    for (int i = 0; i < n; ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
      if (g->type == GEN_URI) uris.emplace_back(asn1_text(g->d.uniformResourceIdentifier));
      else if (g->type == GEN_DNS) dns.emplace_back(asn1_text(g->d.dNSName));
    }
    GENERAL_NAMES_free(names);
  }
  std::string_view cn;
  X509_NAME* subject = X509_get_subject_name(cert);
  int idx = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
  if (idx >= 0) cn = asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)));
  return rfc5922_matches(uris, dns, has_san, cn, host);
}

namespace {
struct EndpointHash {
  size_t operator()(const core::Endpoint& e) const { return e.hash(); }
};
constexpr size_t kMaxNotedNames = 4096;
thread_local std::unordered_map<core::Endpoint, std::string, EndpointHash> t_peer_names;
}  // namespace

void note_tls_peer_name(const core::Endpoint& server, std::string_view domain) {
  if (domain.empty() || is_ip_literal(domain)) return;
  // Bounded: resolutions are far fewer than messages; starting over loses only hints.
  if (t_peer_names.size() >= kMaxNotedNames && !t_peer_names.count(server)) t_peer_names.clear();
  t_peer_names[server] = std::string(domain);
}

std::string tls_peer_name(const core::Endpoint& server) {
  auto it = t_peer_names.find(server);
  return it != t_peer_names.end() ? it->second : server.ip();
}

}  // namespace sb::transport
