#include "transport/owner.h"

#include <string_view>

#include "core/branch.h"
#include "core/hash.h"

namespace sb::transport {

namespace {

uint32_t pick(uint64_t h, uint32_t workers) {
  return static_cast<uint32_t>(core::hash::finish(h) % workers);
}

// The fields the transaction layer matches by (§17.2.3), hashed as its keys are: the branch
// and the sent-by host without case, so a retransmission that only changed their case still
// finds the same worker.
uint32_t by_transaction(const core::Message& m, uint32_t workers) {
  namespace hash = core::hash;
  const core::Via& via = m.top_via();
  if (via.rfc3261_branch()) {
    uint64_t h = hash::field(0, via.branch, hash::kCaseFold);
    h = hash::field(h, via.host, hash::kCaseFold);
    return pick(hash::number(h, via.port), workers);
  }
  return pick(hash::field(0, m.call_id()), workers);
}

}  // namespace

uint32_t owner_of(const core::Message& m, uint32_t workers, uint32_t receiver, Dispatch dispatch) {
  if (workers <= 1) return 0;
  if (m.is_response()) {
    if (auto w = core::branch_worker(m.top_via().branch); w && *w < workers) return *w;
  }
  if (dispatch == Dispatch::ByTransaction) return by_transaction(m, workers);
  return receiver < workers ? receiver : 0;
}

}  // namespace sb::transport
