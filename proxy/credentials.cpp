#include "proxy/credentials.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/text.h"
#include "core/uri.h"

namespace sb::proxy {

namespace {

using Json = nlohmann::ordered_json;

constexpr const char* kHa1Keys[] = {"ha1_md5", "ha1_sha256", "ha1_sha512_256"};

std::string shown(const Json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Realm and user names go into quoted-strings of our challenges.
bool clean_quoted(std::string_view s) { return !s.empty() && core::quotable(s); }

}  // namespace

const UserRecord* UserStore::find(std::string_view user) const {
  auto it = users_.find(std::string(user));
  return it == users_.end() ? nullptr : &it->second;
}

std::optional<std::string> UserStore::ha1(std::string_view user, digest::Algorithm a) const {
  const UserRecord* r = find(user);
  if (!r || r->ha1[static_cast<size_t>(a)].empty()) return std::nullopt;
  return r->ha1[static_cast<size_t>(a)];
}

UserStoreLoad parse_user_store(std::string_view text, const std::string& source) {
  UserStoreLoad out;
  auto fail = [&](const std::string& path, const std::string& msg) {
    out.errors.push_back(source + ": " + (path.empty() ? "" : path + ": ") + msg);
  };
  Json root;
  try {
    root = Json::parse(text.begin(), text.end());
  } catch (const std::exception& e) {
    fail("", std::string("not valid JSON: ") + e.what());
    return out;
  }
  if (!root.is_object()) {
    fail("", "expected an object {\"realm\": ..., \"users\": {...}}");
    return out;
  }
  auto store = std::make_shared<UserStore>();
  store->source_ = source;
  bool have_users = false;
  for (const auto& [key, value] : root.items()) {
    if (key == "realm") {
      if (!value.is_string() || !clean_quoted(value.get_ref<const std::string&>()))
        fail("realm", "expected a non-empty string without quotes, backslashes or control characters, got " + shown(value));
      else
        store->realm_ = value.get<std::string>();
    } else if (key == "users") {
      have_users = true;
      if (!value.is_object()) {
        fail("users", "expected an object of users by name, got " + shown(value));
        continue;
      }
      for (const auto& [name, u] : value.items()) {
        std::string upath = "users." + name;
        if (!clean_quoted(name)) {
          fail(upath, "a user name must be non-empty, without quotes, backslashes or control characters");
          continue;
        }
        if (!u.is_object()) {
          fail(upath, "expected an object, got " + shown(u));
          continue;
        }
        UserRecord r;
        bool any_ha1 = false;  // a key given, valid or not (a bad one is reported already)
        for (const auto& [k, v] : u.items()) {
          std::string kpath = upath + "." + k;
          size_t idx = 0;
          while (idx < 3 && k != kHa1Keys[idx]) ++idx;
          if (idx < 3) {
            any_ha1 = true;
            auto alg = static_cast<digest::Algorithm>(idx);
            size_t len = digest::hex_length(alg);
            bool good = v.is_string() && v.get_ref<const std::string&>().size() == len;
            if (good)
              for (char c : v.get_ref<const std::string&>()) good &= core::is_hex(c);
            if (!good) {
              fail(kpath, "expected " + std::to_string(len) + " hex digits (H(user:realm:password)), got " + shown(v));
              continue;
            }
            std::string h = v.get<std::string>();
            for (char& c : h) c = core::ascii_lower(c);
            r.ha1[idx] = std::move(h);
          } else if (k == "aors") {
            if (!v.is_array()) {
              fail(kpath, "expected an array of sip: URIs, got " + shown(v));
              continue;
            }
            for (size_t i = 0; i < v.size(); ++i) {
              std::string ipath = kpath + "[" + std::to_string(i) + "]";
              std::optional<core::Uri> uri;
              if (v[i].is_string()) {
                auto p = core::parse_uri(v[i].get_ref<const std::string&>());
                if (p && p->is_sip()) uri = *p;
              }
              if (!uri) {
                fail(ipath, "expected a sip: or sips: URI, got " + shown(v[i]));
                continue;
              }
              r.aors.push_back(core::canonical_aor(*uri));
            }
          } else if (k == "password") {
            fail(kpath, "plain passwords are not accepted; store ha1_sha256 / ha1_md5 "
                        "(H(user:realm:password)) instead");
          } else {
            fail(kpath, "unknown key; expected one of ha1_md5, ha1_sha256, ha1_sha512_256, aors");
          }
        }
        if (!any_ha1) fail(upath, "needs at least one of ha1_md5, ha1_sha256, ha1_sha512_256");
        store->users_.emplace(name, std::move(r));
      }
    } else {
      fail(key, "unknown key; expected realm or users");
    }
  }
  if (store->realm_.empty() && !root.contains("realm")) fail("realm", "required key is missing");
  if (!have_users) fail("users", "required key is missing");
  if (out.errors.empty()) out.store = std::move(store);
  return out;
}

UserStoreLoad load_user_store(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return UserStoreLoad{nullptr, {path + ": cannot open: " + std::strerror(errno)}};
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) return UserStoreLoad{nullptr, {path + ": cannot read"}};
  try {
    return parse_user_store(text, path);
  } catch (const std::exception& e) {
    return UserStoreLoad{nullptr, {path + ": " + e.what()}};
  }
}

bool user_owns_aor(const UserRecord* record, std::string_view user, std::string_view aor) {
  if (record && !record->aors.empty()) {
    for (const auto& a : record->aors)
      if (a == aor) return true;
    return false;
  }
  // "sip:<user>@host" or "sips:<user>@host"
  size_t colon = aor.find(':');
  size_t at = aor.rfind('@');
  if (colon == std::string_view::npos || at == std::string_view::npos || at < colon) return false;
  return aor.substr(colon + 1, at - colon - 1) == user;
}

}  // namespace sb::proxy
