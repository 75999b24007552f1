#include "transport/response_route.h"

#include "core/text.h"

namespace sb::transport {

namespace {

// The IP the response goes to: a received param that is an IP literal (set by the server
// that handled the request, §18.2.1), else the packet's source address.
core::Endpoint received_ip(const core::Via& via, const core::Peer& from) {
  if (!via.received.empty()) {
    if (auto e = core::Endpoint::parse(via.received, 0)) return *e;
  }
  core::Endpoint e = from.endpoint;
  e.set_port(0);
  return e;
}

uint16_t sent_by_port(const core::Via& via, core::Protocol p) {
  return via.port != 0 ? via.port : core::default_port(p);
}

bool same_ip(const core::Endpoint& a, const core::Endpoint& b) {
  core::Endpoint x = a, y = b;
  x.set_port(0);
  y.set_port(0);
  return x == y;
}

bool wants_rport(const core::Via& via) { return via.has_rport && via.rport.empty(); }

// §18.2.1: received is added when the sent-by host is not the source IP; RFC 3581 §4: always
// when the client asked for rport.
bool needs_received(const core::Via& via, const core::Peer& from) {
  if (!from.endpoint.valid()) return false;
  if (wants_rport(via)) return true;
  auto host = core::Endpoint::parse(via.host, 0);
  return !host || !same_ip(*host, from.endpoint);
}

}  // namespace

core::Peer response_destination(const core::Via& via, const core::Peer& from) {
  core::Peer to;
  to.protocol = from.protocol;
  if (core::is_reliable(from.protocol)) {
    to.connection = from.connection;
    to.endpoint = received_ip(via, from);
    to.endpoint.set_port(sent_by_port(via, from.protocol));
    return to;
  }
  if (!via.maddr.empty()) {
    if (auto m = core::Endpoint::parse(via.maddr, sent_by_port(via, core::Protocol::Udp))) {
      to.endpoint = *m;
      return to;
    }
  }
  to.endpoint = received_ip(via, from);
  uint16_t port = sent_by_port(via, core::Protocol::Udp);
  if (via.has_rport) {
    if (via.rport.empty()) {
      port = from.endpoint.port();
    } else if (auto v = core::parse_uint(via.rport, 65535); v && *v != 0) {
      port = static_cast<uint16_t>(*v);
    }
  }
  to.endpoint.set_port(port);
  return to;
}

void append_stamped_via(std::string& out, const core::Via& via, const core::Peer& from) {
  bool add_received = needs_received(via, from);
  bool fill_rport = wants_rport(via) && from.endpoint.valid();
  if (!add_received && !fill_rport) {
    out.append(via.raw);
    return;
  }
  if (via.params.empty()) {
    out.append(via.raw);
  } else {
    auto offset = static_cast<size_t>(via.params.data() - via.raw.data());
    out.append(via.raw.substr(0, offset));  // up to and including the first ';'
    std::string_view params = via.params;
    bool first = true;
    size_t i = 0;
    while (i <= params.size()) {
      size_t e = core::find_unquoted(params, ';', i);
      if (e == std::string_view::npos) e = params.size();
      std::string_view piece = params.substr(i, e - i);
      size_t eq = piece.find('=');
      std::string_view name = core::trim(piece.substr(0, eq));
      bool keep = true;
      std::string_view text = piece;
      std::string filled;
      if (core::iequals(name, "received") && add_received) {
        keep = false;  // ours replaces it
      } else if (core::iequals(name, "rport") && eq == std::string_view::npos && fill_rport) {
        filled = "rport=" + std::to_string(from.endpoint.port());
        text = filled;
        fill_rport = false;  // only the first one
      }
      if (keep) {
        if (!first) out.push_back(';');
        out.append(text);
        first = false;
      }
      i = e + 1;
    }
    if (first && out.back() == ';') out.pop_back();  // every param was dropped
  }
  if (add_received) out.append(";received=").append(from.endpoint.ip());
}

}  // namespace sb::transport
