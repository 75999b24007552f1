#include "transport/owner.h"

#include "core/branch.h"

namespace sb::transport {

uint32_t owner_of(const core::Message& m, uint32_t workers, uint32_t receiver) {
  if (workers <= 1) return 0;
  if (m.is_response()) {
    if (auto w = core::branch_worker(m.top_via().branch); w && *w < workers) return *w;
  }
  return receiver < workers ? receiver : 0;
}

}  // namespace sb::transport
