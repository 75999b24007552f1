// Where responses go and what a server records in the top Via (RFC 3261 §18.2.1, §18.2.2,
// RFC 3581 §4). Pure functions: no I/O, no DNS.
#pragma once
#include <string>

#include "core/address.h"
#include "core/sip_headers.h"

namespace sb::transport {

// RFC 3261 §18.2.2 with RFC 3581 §4, for a response to the request whose top Via is
// `top_via` and which arrived from `received_from` (for a forwarded response: the Via below
// ours, with the Peer the original request came from).
//  - Reliable transport: the same connection (received_from.connection). The endpoint is
//    where §18.2.2 says to open a new connection if that one has closed: the received IP
//    (the Via's received param, else the source IP) with the sent-by port or the
//    transport's default port. Worker::send() uses it only when the connection is gone.
//  - UDP: maddr when it is an IP literal, with the sent-by port or 5060; otherwise the
//    received IP (received param, else source IP) with the rport value when the Via has
//    one, the source port when it has an empty rport, else the sent-by port or 5060.
//    An maddr that is a host name would need RFC 3263 §5 resolution, which is not done
//    here: such a Via is answered like one without maddr.
core::Peer response_destination(const core::Via& top_via, const core::Peer& received_from);

// RFC 3261 §18.2.1 / RFC 3581 §4: the top via-parm (top_via.raw) as a server records it
// for a request received from `from`: a bare "rport" gets the source port in place, and
// ";received=IP" is appended (replacing any received param it had) when the sent-by host is
// not that IP (a name, or another address) or when the Via asks for rport. Splice it over
// top_via.raw. Appended to `out` (a forwarded request's Via line is built in one string,
// ours first): top_via.raw unchanged when nothing is to be added.
void append_stamped_via(std::string& out, const core::Via& top_via, const core::Peer& from);

}  // namespace sb::transport
