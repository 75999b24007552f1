// What the transport listens on and the limits it enforces (config "listeners", "limits").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/address.h"
#include "transport/owner.h"

namespace sb::transport {

// One local address we receive on. Every worker binds it (SO_REUSEPORT), so the kernel
// spreads datagrams and accepted connections over the workers.
struct ListenerSpec {
  core::Protocol protocol = core::Protocol::Udp;
  // Port 0: the kernel picks a port at start and WorkerGroup::listeners() shows it.
  core::Endpoint bind;
  // Host for Via / Record-Route (e.g. a public name or the NAT's address); empty = bind ip.
  std::string advertise_host;
  // UDP: send every request from this listening socket (config listen[].symmetric). When
  // false, each worker also binds a reply socket on the same address (a port of its own,
  // chosen by the kernel) and sends the requests it forwards from there with that port in
  // its Via, so their responses come back to the worker that owns the transaction instead
  // of to whichever worker SO_REUSEPORT picks (DESIGN.md "Threading": no hand-off).
  bool symmetric = false;
  // Filled in by the transport (UDP, not symmetric): worker i's reply port at [i].
  std::vector<uint16_t> reply_ports;
  // Set by WorkerGroup::update_listeners() on a listener it removed: nothing is bound there
  // any more, but the slot keeps its index (connections accepted on it drain, messages in
  // flight still name it). Ignored in the specs given to start() / update_listeners().
  bool closed = false;

  // A listener's identity across reloads: protocol and bind address (advertise_host may
  // change in place).
  bool same_socket(const ListenerSpec& o) const {
    return protocol == o.protocol && bind == o.bind;
  }
  // Worker `worker`'s reply port, 0 when it has none (symmetric, stream, not bound yet).
  uint16_t reply_port(uint32_t worker) const {
    return worker < reply_ports.size() ? reply_ports[worker] : 0;
  }

  // advertise_host, or the bind IP in URI form ("[::1]" for IPv6).
  std::string advertised_host() const {
    return advertise_host.empty() ? bind.uri_host() : advertise_host;
  }
};

struct Limits {
  // Which worker a request belongs to (config "dispatch", transport/owner.h).
  Dispatch dispatch = Dispatch::BySource;
  // Largest message accepted (datagram or stream frame); beyond it: 513 (RFC 3261 §18.1.1).
  uint32_t max_message_bytes = 65535;
  // Capacity of each worker's hand-off queue (rounded up to a power of two).
  uint32_t queue_capacity = 65536;
  // A stream connection with no traffic for this long is closed.
  uint32_t tcp_idle_timeout_s = 900;
  // Connections one worker holds (accepted + opened); beyond it accepts are closed at once
  // and connects fail.
  uint32_t max_connections = 10000;
  // An outgoing connect that has not completed by then fails (on_send_error).
  uint32_t tcp_connect_timeout_ms = 10000;
  // Bytes queued on one connection (kernel buffer full or still connecting) before send()
  // refuses: a peer that does not read must not grow our memory without bound.
  uint32_t max_connection_queue_bytes = 4u << 20;
  // A TLS handshake (accepted or opened) not done by then closes the connection, counted.
  uint32_t tls_handshake_timeout_ms = 10000;
  // Run the worker threads under SCHED_BATCH (config "scheduling"): a worker the kernel wakes
  // for a datagram does not preempt the task running on that CPU, it waits for it to yield,
  // and then reads what arrived meanwhile in the same turn.
  bool batch_scheduling = false;
  // Per worker id, the CPU its thread is pinned to (config "cpu_affinity"); -1 or absent:
  // wherever the kernel places it.
  std::vector<int> worker_cpus;
};

}  // namespace sb::transport
