// Which worker owns a message (DESIGN.md "Threading: shared-nothing workers"): a transaction
// lives on one worker, so every message of it must reach that worker.
#pragma once
#include <cstdint>

#include "core/message.h"

namespace sb::transport {

// How requests are spread over the workers (config "dispatch").
enum class Dispatch : uint8_t {
  // A request belongs to `receiver`, the worker that read it: SO_REUSEPORT keeps a UDP
  // source on one worker's socket, so its retransmissions, its ACK and its CANCEL arrive
  // where it did, and a stream's messages all arrive on the worker holding the connection.
  // No hand-off; the workers share the load as the sources spread over them.
  BySource,
  // hash(top Via branch + sent-by) % workers (ACK for a non-2xx and CANCEL carry the
  // INVITE's branch, §17.2.3 / §9.2), hash(Call-ID) without the magic cookie (RFC 2543):
  // one busy source (a trunk) is spread over every worker, at the cost of handing about
  // (workers - 1) / workers of its requests to their owner.
  ByTransaction,
};

// A response to one of our branches: the worker encoded in it (core::branch_worker), when
// that is one of ours (it reaches that worker directly when the request left from the
// worker's reply port, transport/listener.h). A request, or a response to a branch not ours:
// as `dispatch` says. Always 0 with one worker. Stable across processes (FNV-1a).
uint32_t owner_of(const core::Message& m, uint32_t workers, uint32_t receiver,
                  Dispatch dispatch = Dispatch::BySource);

}  // namespace sb::transport
