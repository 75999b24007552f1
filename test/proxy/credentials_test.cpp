#include "proxy/credentials.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace sb::proxy {
namespace {

const std::string kMd5(32, 'a');
const std::string kSha(64, 'B');

UserStoreLoad parse(const std::string& text) { return parse_user_store(text, "users.json"); }

std::string only_error(const std::string& text) {
  UserStoreLoad r = parse(text);
  CHECK_FALSE(r.ok());
  REQUIRE_MESSAGE(r.errors.size() == 1, "errors: " << r.errors.size()
                                                    << (r.errors.empty() ? "" : " first: " + r.errors[0]));
  return r.errors[0];
}

TEST_CASE("credentials: a valid users file") {
  UserStoreLoad r = parse(R"({"realm": "example.com", "users": {
      "alice": {"ha1_md5": ")" + kMd5 + R"(", "ha1_sha256": ")" + kSha + R"(",
                "aors": ["sip:alice@example.com", "sip:Alice.Office@EXAMPLE.com:5060;transport=tcp"]},
      "bob": {"ha1_sha512_256": ")" + kSha + R"("}}})");
  REQUIRE_MESSAGE(r.ok(), (r.errors.empty() ? "" : r.errors[0]));
  const UserStore& s = *r.store;
  CHECK(s.realm() == "example.com");
  CHECK(s.size() == 2);
  CHECK(s.ha1("alice", digest::Algorithm::MD5) == kMd5);
  CHECK(s.ha1("alice", digest::Algorithm::SHA256) == std::string(64, 'b'));  // lower-cased
  CHECK_FALSE(s.ha1("alice", digest::Algorithm::SHA512_256));
  CHECK_FALSE(s.ha1("carol", digest::Algorithm::MD5));
  const UserRecord* alice = s.find("alice");
  REQUIRE(alice);
  CHECK(alice->aors == std::vector<std::string>{"sip:alice@example.com", "sip:Alice.Office@example.com"});
  CHECK(user_owns_aor(alice, "alice", "sip:alice@example.com"));
  CHECK(user_owns_aor(alice, "alice", "sip:Alice.Office@example.com"));
  CHECK_FALSE(user_owns_aor(alice, "alice", "sip:bob@example.com"));
  // Without an aors list: the AORs whose user part is the user name.
  CHECK(user_owns_aor(s.find("bob"), "bob", "sip:bob@example.com"));
  CHECK_FALSE(user_owns_aor(s.find("bob"), "bob", "sip:alice@example.com"));
  CHECK(user_owns_aor(nullptr, "carol", "sips:carol@example.com"));
  CHECK_FALSE(user_owns_aor(nullptr, "carol", "sip:example.com"));
}

TEST_CASE("credentials: every fault names the file and the key path") {
  CHECK(only_error("[1]") == R"(users.json: expected an object {"realm": ..., "users": {...}})");
  CHECK(only_error("{").rfind("users.json: not valid JSON:", 0) == 0);
  CHECK(only_error(R"({"users": {}})") == "users.json: realm: required key is missing");
  CHECK(only_error(R"({"realm": "x"})") == "users.json: users: required key is missing");
  CHECK(only_error(R"({"realm": "a\"b", "users": {}})").rfind("users.json: realm: expected a non-empty string", 0) == 0);
  CHECK(only_error(R"({"realm": "x", "users": {}, "extra": 1})") ==
        "users.json: extra: unknown key; expected realm or users");
  CHECK(only_error(R"({"realm": "x", "users": {"alice": {"ha1_md5": "abc"}}})") ==
        R"(users.json: users.alice.ha1_md5: expected 32 hex digits (H(user:realm:password)), got "abc")");
  CHECK(only_error(R"({"realm": "x", "users": {"alice": {"ha1_sha256": ")" + kMd5 + R"("}}})")
            .rfind("users.json: users.alice.ha1_sha256: expected 64 hex digits", 0) == 0);
  CHECK(only_error(R"({"realm": "x", "users": {"alice": {"ha1_md5": ")" + std::string(31, 'a') + R"(g"}}})")
            .rfind("users.json: users.alice.ha1_md5: expected 32 hex digits", 0) == 0);
  CHECK(only_error(R"({"realm": "x", "users": {"alice": {"aors": []}}})") ==
        "users.json: users.alice: needs at least one of ha1_md5, ha1_sha256, ha1_sha512_256");
  CHECK(only_error(R"({"realm": "x", "users": {"alice": {"ha1_md5": ")" + kMd5 + R"(", "aors": ["tel:+123"]}}})") ==
        R"(users.json: users.alice.aors[0]: expected a sip: or sips: URI, got "tel:+123")");
  CHECK(only_error(R"({"realm": "x", "users": {"alice": {"ha1_md5": ")" + kMd5 + R"(", "password": "pw"}}})")
            .rfind("users.json: users.alice.password: plain passwords are not accepted", 0) == 0);
  CHECK(only_error(R"({"realm": "x", "users": {"alice": {"ha1_md5": ")" + kMd5 + R"(", "ha1": "x"}}})")
            .rfind("users.json: users.alice.ha1: unknown key", 0) == 0);
  CHECK(only_error(R"({"realm": "x", "users": {"a\"b": {"ha1_md5": ")" + kMd5 + R"("}}})")
            .rfind("users.json: users.a\"b: a user name must be", 0) == 0);
  // All faults at once.
  CHECK(parse(R"({"realm": 5, "users": {"a": 1, "b": {}}})").errors.size() == 3);
}

TEST_CASE("credentials: load from a file") {
  char tmpl[] = "/tmp/sb-users-XXXXXX";
  int fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream out(tmpl);
    out << R"({"realm": "example.com", "users": {"alice": {"ha1_md5": ")" << kMd5 << R"("}}})";
  }
  UserStoreLoad r = load_user_store(tmpl);
  CHECK(r.ok());
  CHECK(r.store->source() == tmpl);
  unlink(tmpl);
  r = load_user_store(tmpl);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == std::string(tmpl) + ": cannot open: No such file or directory");
}

}  // namespace
}  // namespace sb::proxy
