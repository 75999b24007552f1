// The users file of digest authentication (config auth.users_file): per user the HA1 of each
// algorithm (never a password) and the addresses-of-record the user may register. Loaded and
// validated in full with the config (start and reload); an immutable snapshot shared by the
// workers. Errors name the file and the key path ("users.json: users.alice.ha1_md5: ...").
//
//   {"realm": "example.com",
//    "users": {"alice": {"ha1_md5": "<32 hex>", "ha1_sha256": "<64 hex>",
//                        "ha1_sha512_256": "<64 hex>", "aors": ["sip:alice@example.com"]}}}
#pragma once
#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/digest.h"

namespace sb::proxy {

struct UserStoreLoad;
// Parses and validates a users file's text; `source` (the path) prefixes every error.
UserStoreLoad parse_user_store(std::string_view json_text, const std::string& source);

struct UserRecord {
  std::array<std::string, 3> ha1;  // by digest::Algorithm, lower-case hex; "" = not given
  std::vector<std::string> aors;   // canonical AORs (core::canonical_aor); empty = see owns()
};

class UserStore {
 public:
  const std::string& realm() const { return realm_; }
  const std::string& source() const { return source_; }
  size_t size() const { return users_.size(); }
  const UserRecord* find(std::string_view user) const;
  // The user's HA1 for `algorithm`, when the file gives one.
  std::optional<std::string> ha1(std::string_view user, digest::Algorithm algorithm) const;

 private:
  friend UserStoreLoad parse_user_store(std::string_view json_text, const std::string& source);
  std::string realm_;
  std::string source_;
  std::unordered_map<std::string, UserRecord> users_;
};

struct UserStoreLoad {
  std::shared_ptr<const UserStore> store;
  std::vector<std::string> errors;  // every fault, "FILE: key.path: message"
  bool ok() const { return store != nullptr; }
};

UserStoreLoad load_user_store(const std::string& path);

// Whether `user` may bind `aor` (canonical): one of the user's aors; a user without an aors
// list (or one the script verified with its own HA1) owns the AORs whose user part is the
// user name, in any domain this proxy serves (the caller checks the domain).
bool user_owns_aor(const UserRecord* record, std::string_view user, std::string_view aor);

}  // namespace sb::proxy
