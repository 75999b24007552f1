#include "transport/tls.h"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <deque>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/address.h"

namespace sb::transport {
namespace {

namespace fs = std::filesystem;

// Keys and certificates made in memory with OpenSSL, written as PEM into a scratch directory
// (TlsContext loads files, as the config names them).
struct Pki {
  fs::path dir;
  Pki() {
    dir = fs::temp_directory_path() / ("sb_tls_test_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Pki() {
    for (auto& m : made) {
      X509_free(m.cert);
      EVP_PKEY_free(m.key);
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  struct Issued {
    EVP_PKEY* key = nullptr;
    X509* cert = nullptr;
    std::string cert_file, key_file;
  };
  std::deque<Issued> made;  // references stay valid as it grows

  // `san`: an OpenSSL subjectAltName value ("DNS:a, URI:sip:b, IP:127.0.0.1"), "" for none.
  // `issuer` null: self-signed CA.
  Issued& issue(const std::string& name, const std::string& cn, const std::string& san,
                const Issued* issuer) {
    Issued is;
    is.key = EVP_EC_gen("P-256");
    REQUIRE(is.key);
    is.cert = X509_new();
    X509_set_version(is.cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(is.cert), static_cast<long>(made.size() + 1));
    X509_gmtime_adj(X509_getm_notBefore(is.cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(is.cert), 3600);
    X509_set_pubkey(is.cert, is.key);
    X509_NAME* subj = X509_get_subject_name(is.cert);
    X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()),
                               -1, -1, 0);
    X509_set_issuer_name(is.cert, issuer ? X509_get_subject_name(issuer->cert) : subj);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer ? issuer->cert : is.cert, is.cert, nullptr, nullptr, 0);
    auto ext = [&](int nid, const std::string& value) {
      X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
      REQUIRE(e);
      X509_add_ext(is.cert, e, -1);
      X509_EXTENSION_free(e);
    };
    ext(NID_basic_constraints, issuer ? "CA:FALSE" : "critical,CA:TRUE");
    if (!san.empty()) ext(NID_subject_alt_name, san);
    REQUIRE(X509_sign(is.cert, issuer ? issuer->key : is.key, EVP_sha256()) > 0);
    is.cert_file = (dir / (name + ".crt")).string();
    is.key_file = (dir / (name + ".key")).string();
    FILE* f = std::fopen(is.cert_file.c_str(), "w");
    PEM_write_X509(f, is.cert);
    std::fclose(f);
    f = std::fopen(is.key_file.c_str(), "w");
    PEM_write_PrivateKey(f, is.key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    made.push_back(is);
    return made.back();
  }
};

std::shared_ptr<TlsContext> context(const Pki::Issued& id, const Pki::Issued& ca) {
  TlsSettings s;
  s.certificate = id.cert_file;
  s.private_key = id.key_file;
  s.ca_file = ca.cert_file;
  std::vector<std::string> errors;
  auto ctx = TlsContext::create(s, errors);
  REQUIRE_MESSAGE(ctx, (errors.empty() ? "" : errors[0]));
  return ctx;
}

// Moves ciphertext between the two sessions until neither has anything to say.
void pump(TlsSession& client, TlsSession& server, std::string& client_plain, std::string& server_plain) {
  for (int round = 0; round < 20; ++round) {
    bool moved = false;
    if (!client.output().empty()) {
      std::string bytes;
      bytes.swap(client.output());
      server.feed(bytes, server_plain);
      moved = true;
    }
    if (!server.output().empty()) {
      std::string bytes;
      bytes.swap(server.output());
      client.feed(bytes, client_plain);
      moved = true;
    }
    if (!moved) return;
  }
  FAIL("the sessions keep talking");
}

struct Fixture {
  Pki pki;
  Pki::Issued& ca = pki.issue("ca", "Test CA", "", nullptr);
  Pki::Issued& server = pki.issue("server", "proxy.example.com",
                                  "URI:sip:example.com, DNS:proxy.example.com, IP:127.0.0.1", &ca);
  Pki::Issued& other_ca = pki.issue("other", "Other CA", "", nullptr);
};

}  // namespace

TEST_CASE("tls: client and server sessions over memory: handshake, then data both ways") {
  Fixture f;
  auto server_ctx = context(f.server, f.ca);
  auto client_ctx = context(f.server, f.ca);
  TlsSession server(server_ctx, TlsSession::Role::Server, "");
  TlsSession client(client_ctx, TlsSession::Role::Client, "example.com");
  REQUIRE(client.start());
  CHECK_FALSE(client.output().empty());  // the ClientHello
  std::string cp, sp;
  pump(client, server, cp, sp);
  REQUIRE_MESSAGE(client.handshake_done(), client.error());
  REQUIRE_MESSAGE(server.handshake_done(), server.error());
  CHECK(cp.empty());
  CHECK(sp.empty());
  CHECK(client.peer_proves("example.com"));
  CHECK(client.peer_proves("127.0.0.1"));
  CHECK_FALSE(client.peer_proves("other.example.com"));
  CHECK_FALSE(server.peer_proves("example.com"));  // no client certificate asked for

  const std::string invite = "INVITE sips:bob@example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n";
  REQUIRE(client.write(invite));
  CHECK(client.output().find("INVITE") == std::string::npos);  // encrypted on the wire
  pump(client, server, cp, sp);
  CHECK(sp == invite);
  REQUIRE(server.write("SIP/2.0 100 Trying\r\n\r\n"));
  pump(client, server, cp, sp);
  CHECK(cp == "SIP/2.0 100 Trying\r\n\r\n");

  // A record split anywhere still decrypts once complete.
  sp.clear();
  REQUIRE(client.write("OPTIONS"));
  std::string rec;
  rec.swap(client.output());
  for (char ch : rec) REQUIRE(server.feed(std::string_view(&ch, 1), sp));
  CHECK(sp == "OPTIONS");
}

TEST_CASE("tls: a session keeps its context when the owner drops it (reload)") {
  Fixture f;
  auto server_ctx = context(f.server, f.ca);
  auto client_ctx = context(f.server, f.ca);
  TlsSession server(server_ctx, TlsSession::Role::Server, "");
  TlsSession client(client_ctx, TlsSession::Role::Client, "127.0.0.1");
  server_ctx.reset();  // a reload installed another one
  client_ctx.reset();
  REQUIRE(client.start());
  std::string cp, sp;
  pump(client, server, cp, sp);
  REQUIRE_MESSAGE(client.handshake_done(), client.error());
  REQUIRE(client.write("x"));
  pump(client, server, cp, sp);
  CHECK(sp == "x");
}

TEST_CASE("tls: verify_client asks for a client certificate and refuses a client without one") {
  Fixture f;
  TlsSettings s;
  s.certificate = f.server.cert_file;
  s.private_key = f.server.key_file;
  s.ca_file = f.ca.cert_file;
  s.verify_client = true;
  std::vector<std::string> errors;
  std::shared_ptr<const TlsContext> server_ctx = TlsContext::create(s, errors);
  REQUIRE(server_ctx);
  auto client_ctx = context(f.server, f.ca);  // has a certificate from the CA
  {
    TlsSession server(server_ctx, TlsSession::Role::Server, "");
    TlsSession client(client_ctx, TlsSession::Role::Client, "example.com");
    REQUIRE(client.start());
    std::string cp, sp;
    pump(client, server, cp, sp);
    REQUIRE_MESSAGE(server.handshake_done(), server.error());
    // The client's certificate, verified: it proves its names (RFC 5923 ;alias), no other.
    // Asked in turn, as note_alias does for Via hosts: the kept answer follows the host.
    CHECK(server.peer_proves("127.0.0.1"));
    CHECK(server.peer_proves("127.0.0.1"));
    CHECK_FALSE(server.peer_proves("127.0.0.2"));
    CHECK(server.peer_proves("example.com"));
    CHECK_FALSE(server.peer_proves("192.0.2.1"));
    CHECK(server.peer_proves("127.0.0.1"));
  }
  // A client whose certificate comes from another CA is refused by the server.
  auto rogue = context(f.pki.issue("rogue", "rogue", "DNS:rogue", &f.other_ca), f.ca);
  TlsSession server(server_ctx, TlsSession::Role::Server, "");
  TlsSession client(rogue, TlsSession::Role::Client, "example.com");
  REQUIRE(client.start());
  std::string cp, sp;
  pump(client, server, cp, sp);
  CHECK(server.failed());
  CHECK_FALSE(server.handshake_done());
}

TEST_CASE("tls: a server certificate from another CA fails the handshake") {
  Fixture f;
  auto server_ctx = context(f.server, f.ca);
  auto client_ctx = context(f.server, f.other_ca);  // trusts only the other CA
  TlsSession server(server_ctx, TlsSession::Role::Server, "");
  TlsSession client(client_ctx, TlsSession::Role::Client, "example.com");
  REQUIRE(client.start());
  std::string cp, sp;
  pump(client, server, cp, sp);
  CHECK_FALSE(client.handshake_done());
  CHECK(client.failed());
  CHECK(client.error().find("certificate verification failed") != std::string::npos);
  CHECK_FALSE(client.write("x"));
  CHECK(server.failed());  // it got the alert
}

TEST_CASE("tls: a certificate for another name fails (RFC 5922), for our IP passes") {
  Fixture f;
  auto server_ctx = context(f.server, f.ca);
  auto client_ctx = context(f.server, f.ca);
  for (const char* name : {"other.example.com", "127.0.0.2", "proxy.example.com"}) {
    CAPTURE(name);
    TlsSession server(server_ctx, TlsSession::Role::Server, "");
    TlsSession client(client_ctx, TlsSession::Role::Client, name);
    REQUIRE(client.start());
    std::string cp, sp;
    pump(client, server, cp, sp);
    // proxy.example.com is only a DNS name: the SAN URIs list the SIP domains (§7.1).
    CHECK(client.failed());
    CHECK(client.error().find("does not match") != std::string::npos);
  }
  TlsSession server(server_ctx, TlsSession::Role::Server, "");
  TlsSession client(client_ctx, TlsSession::Role::Client, "127.0.0.1");
  REQUIRE(client.start());
  std::string cp, sp;
  pump(client, server, cp, sp);
  CHECK_MESSAGE(client.handshake_done(), client.error());
  CHECK_FALSE(client.failed());
}

TEST_CASE("tls: rfc5922 name matching") {
  using V = std::vector<std::string>;
  // SAN URIs first; a URI with a user part is not a domain identity.
  CHECK(rfc5922_matches(V{"sip:example.com"}, V{}, true, "", "example.com"));
  CHECK(rfc5922_matches(V{"SIP:Example.COM"}, V{}, true, "", "example.com"));
  CHECK(rfc5922_matches(V{"sip:a.example.com", "sip:example.com"}, V{}, true, "", "EXAMPLE.com"));
  CHECK_FALSE(rfc5922_matches(V{"sip:alice@example.com"}, V{}, true, "", "example.com"));
  CHECK_FALSE(rfc5922_matches(V{"sips:example.com"}, V{}, true, "", "example.com"));
  // With SIP URIs present, DNS names are not consulted.
  CHECK_FALSE(rfc5922_matches(V{"sip:example.com"}, V{"other.example.org"}, true, "", "other.example.org"));
  // Else the DNS names.
  CHECK(rfc5922_matches(V{}, V{"other.example.org", "example.com"}, true, "", "example.com"));
  CHECK(rfc5922_matches(V{}, V{"example.com."}, true, "", "example.com"));
  CHECK(rfc5922_matches(V{"http://example.com/"}, V{"example.com"}, true, "", "example.com"));
  // CN only without any subjectAltName.
  CHECK(rfc5922_matches(V{}, V{}, false, "example.com", "example.com"));
  CHECK_FALSE(rfc5922_matches(V{}, V{"x.example.com"}, true, "example.com", "example.com"));
  // Mismatch, and no wildcards for SIP (§7.2).
  CHECK_FALSE(rfc5922_matches(V{}, V{"example.org"}, true, "", "example.com"));
  CHECK_FALSE(rfc5922_matches(V{}, V{"*.example.com"}, true, "", "sip.example.com"));
  CHECK_FALSE(rfc5922_matches(V{"sip:*.example.com"}, V{}, true, "", "sip.example.com"));
  CHECK_FALSE(rfc5922_matches(V{}, V{}, false, "*.example.com", "sip.example.com"));
  CHECK_FALSE(rfc5922_matches(V{}, V{"example.com"}, true, "", ""));
}

TEST_CASE("tls: certificate_matches reads SANs and the CN from a certificate") {
  Pki pki;
  auto& ca = pki.issue("ca", "Test CA", "", nullptr);
  auto& cn_only = pki.issue("cn", "example.com", "", &ca);
  auto& dns = pki.issue("dns", "ignored.example.com", "DNS:example.com, IP:::1", &ca);
  auto& wild = pki.issue("wild", "x", "DNS:*.example.com", &ca);
  CHECK(certificate_matches(cn_only.cert, "example.com"));
  CHECK_FALSE(certificate_matches(cn_only.cert, "example.org"));
  CHECK(certificate_matches(dns.cert, "example.com"));
  CHECK_FALSE(certificate_matches(dns.cert, "ignored.example.com"));  // CN ignored with SANs
  CHECK(certificate_matches(dns.cert, "[::1]"));
  CHECK(certificate_matches(dns.cert, "::1"));
  CHECK_FALSE(certificate_matches(dns.cert, "127.0.0.1"));
  CHECK_FALSE(certificate_matches(wild.cert, "sip.example.com"));
}

TEST_CASE("tls: context errors name their config key") {
  Fixture f;
  TlsSettings s;
  s.certificate = (f.pki.dir / "missing.crt").string();
  s.private_key = f.server.key_file;
  s.ca_file = f.ca.cert_file;
  std::vector<std::string> errors;
  CHECK_FALSE(TlsContext::create(s, errors));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].rfind("tls.certificate: cannot load " + s.certificate + ": ", 0) == 0);

  errors.clear();
  s.certificate = f.server.cert_file;
  s.private_key = f.ca.key_file;  // another key
  CHECK_FALSE(TlsContext::create(s, errors));
  REQUIRE(errors.size() == 1);
  CHECK_MESSAGE(errors[0].rfind("tls.private_key: ", 0) == 0, errors[0]);
  CHECK_MESSAGE(errors[0].find(s.private_key) != std::string::npos, errors[0]);

  errors.clear();
  s.private_key = f.server.key_file;
  s.ca_file = f.server.key_file;  // not a certificate
  CHECK_FALSE(TlsContext::create(s, errors));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].rfind("tls.ca_file: cannot load ", 0) == 0);

  errors.clear();
  s.ca_file = f.ca.cert_file;
  s.min_version = "1.3";
  CHECK(TlsContext::create(s, errors));
  CHECK(errors.empty());
}

TEST_CASE("tls: peer names noted by the resolver, per thread") {
  auto ep = *core::Endpoint::parse("192.0.2.77", 5061);
  CHECK(tls_peer_name(ep) == "192.0.2.77");
  note_tls_peer_name(ep, "example.com");
  CHECK(tls_peer_name(ep) == "example.com");
  note_tls_peer_name(ep, "127.0.0.1");  // an address is no domain: ignored
  CHECK(tls_peer_name(ep) == "example.com");
  std::string other;
  std::thread([&] { other = tls_peer_name(ep); }).join();
  CHECK(other == "192.0.2.77");  // another worker learned nothing
  // Bounded: many names later, the table still answers.
  for (int i = 0; i < 5000; ++i)
    note_tls_peer_name(*core::Endpoint::parse("10.0.0.1", static_cast<uint16_t>(1000 + i)), "x.example");
  CHECK(tls_peer_name(*core::Endpoint::parse("10.0.0.1", 5999)) == "x.example");
}

}  // namespace sb::transport
