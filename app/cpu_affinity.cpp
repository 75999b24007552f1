#include "app/cpu_affinity.h"

#include <sched.h>

#include <algorithm>

namespace sb::app {

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> out;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &set)) out.push_back(cpu);
  return out;
}

std::string cpu_list_text(const std::vector<int>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(cpus[i]);
    if (j > i) out += '-' + std::to_string(cpus[j]);
    i = j + 1;
  }
  return out;
}

std::vector<int> plan_worker_cpus(const core::CpuAffinityConfig& config, const std::vector<int>& allowed,
                                  uint32_t workers, std::string& error) {
  std::vector<int> plan(workers, -1);
  if (config.mode == "auto") {
    if (allowed.empty()) return plan;  // nothing known to spread over: leave it to the kernel
    for (uint32_t i = 0; i < workers; ++i) plan[i] = allowed[i % allowed.size()];
  } else if (config.mode == "list" && !config.cpus.empty()) {
    for (size_t k = 0; k < config.cpus.size(); ++k) {
      const int cpu = static_cast<int>(config.cpus[k]);
      // Unknown (sched_getaffinity failed): the worker finds out when it pins itself.
      if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), cpu) == allowed.end()) {
        error = "cpu_affinity[" + std::to_string(k) + "]: CPU " + std::to_string(cpu) +
                " is not one this process may use (" + cpu_list_text(allowed) + ")";
        return {};
      }
    }
    for (uint32_t i = 0; i < workers; ++i) plan[i] = static_cast<int>(config.cpus[i % config.cpus.size()]);
  }
  return plan;
}

std::vector<int> worker_cpus(const core::Config& cfg, std::vector<std::string>& errors) {
  std::string error;
  std::vector<int> plan = plan_worker_cpus(cfg.cpu_affinity, allowed_cpus(), cfg.worker_count(), error);
  if (!error.empty()) errors.push_back(std::move(error));
  return plan;
}

}  // namespace sb::app
