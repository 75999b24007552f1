// Our Via branch (RFC 3261 §8.1.1.7, §16.6 step 8): magic cookie, the owning worker, then a
// unique part. Responses come back with it, so any worker can route them to their owner
// without shared state (DESIGN.md "Threading").
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sb::core {

// "z9hG4bK" "sb" <worker in hex> "." <unique in hex>, e.g. "z9hG4bKsb1.5f3a9c0e".
std::string make_branch(uint32_t worker, uint64_t unique);
// Appends the same to `out` (no allocation when it has room).
void append_branch(std::string& out, uint32_t worker, uint64_t unique);
// The worker encoded in one of our branches; nullopt when the branch is not ours.
std::optional<uint32_t> branch_worker(std::string_view branch);

}  // namespace sb::core
