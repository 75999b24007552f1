// Which worker owns a message (DESIGN.md "Threading: shared-nothing workers"): a transaction
// lives on one worker, so every message of it must reach that worker.
#pragma once
#include <cstdint>

#include "core/message.h"

namespace sb::transport {

// A response to one of our branches: the worker encoded in it (core::branch_worker), when
// that is one of ours. Anything else (every request, a response to a branch not ours)
// belongs to `receiver`, the worker that read it: SO_REUSEPORT keeps a UDP source on one
// worker's socket, so a request's retransmissions, its ACK and its CANCEL arrive where the
// request did, and a stream's messages all arrive on the worker holding the connection.
// Responses reach their owner directly too when the request left from its worker's reply
// port (transport/listener.h); otherwise they are handed to it.
uint32_t owner_of(const core::Message& m, uint32_t workers, uint32_t receiver);

}  // namespace sb::transport
