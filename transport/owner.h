// Which worker owns a message (DESIGN.md "Threading: shared-nothing workers"): a transaction
// lives on one worker, so every message of it must reach that worker.
#pragma once
#include <cstdint>

#include "core/message.h"

namespace sb::transport {

// Response: the worker encoded in our branch (core::branch_worker) when the branch is ours
// and names an existing worker; otherwise like a request.
// Request: hash(top Via branch + sent-by) % workers when the branch has the RFC 3261 magic
// cookie (ACK for a non-2xx and CANCEL carry the INVITE's branch, §17.2.3 / §9.2, so they
// land on the INVITE's owner); else hash(Call-ID) % workers (RFC 2543 peers).
// Always 0 when workers <= 1. Stable across processes (FNV-1a, not std::hash).
uint32_t owner_of(const core::Message& m, uint32_t workers);

}  // namespace sb::transport
