#include "proxy/validation.h"

#include <algorithm>

#include "core/text.h"

namespace sb::proxy {

std::optional<Rejection> validate_request(const core::Message& req,
                                          std::span<const std::string_view> supported) {
  // §16.3 step 2: a scheme we cannot route on → 416 (RFC 4475 §3.3.2: never route on To).
  if (req.ruri().scheme == core::Scheme::Other)
    return Rejection{416, "Unsupported URI Scheme", {}};
  // §16.3 step 3: Max-Forwards 0 → 483 (ACK and CANCEL are not answered; the caller drops them).
  if (req.max_forwards() == 0) return Rejection{483, "Too Many Hops", {}};
  // §16.3 step 5: every Proxy-Require option must be supported, else 420 listing them.
  std::string unsupported;
  req.for_each_value(core::HeaderId::ProxyRequire, [&](std::string_view opt) {
    if (opt.empty()) return true;
    bool ok = std::any_of(supported.begin(), supported.end(),
                          [&](std::string_view s) { return core::iequals(s, opt); });
    if (!ok) {
      if (!unsupported.empty()) unsupported += ", ";
      unsupported.append(opt);
    }
    return true;
  });
  if (!unsupported.empty())
    return Rejection{420, "Bad Extension", {"Unsupported: " + unsupported}};
  return std::nullopt;
}

}  // namespace sb::proxy
