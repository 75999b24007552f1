// The resolver the proxy core locates next hops with (RFC 3263) lives in transport/
// (DNS with c-ares is transport's job, DESIGN.md "Layers"); these are its names in proxy.
#pragma once
#include "transport/resolver.h"

namespace sb::proxy {

using transport::NumericResolver;
using transport::numeric_next_hop;
using transport::Resolver;
using transport::retry_after_ms;
using transport::ServerFault;
using transport::ServerList;

}  // namespace sb::proxy
