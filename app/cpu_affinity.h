// Which CPU each worker thread runs on (config "cpu_affinity", docs/configuration.md),
// planned once at start from the CPUs this process may use.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace sb::app {

// The CPUs this process may run on (sched_getaffinity), ascending; empty if unknown.
std::vector<int> allowed_cpus();

// "0-3,6": `cpus` (ascending) as the kernel's cpu lists write them.
std::string cpu_list_text(const std::vector<int>& cpus);

// Per worker, the CPU it is pinned to, or -1 (placed by the kernel). A listed CPU this
// process may not use is an error: `error` names the key and the CPU, the result is empty.
std::vector<int> plan_worker_cpus(const core::CpuAffinityConfig& config, const std::vector<int>& allowed,
                                  uint32_t workers, std::string& error);

// The plan for `cfg` on this machine, as `run` and `check` make it: an error is appended to
// `errors` (as auth_setup and tls_context do).
std::vector<int> worker_cpus(const core::Config& cfg, std::vector<std::string>& errors);

}  // namespace sb::app
