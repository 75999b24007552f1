// The plan of which CPU each worker runs on (config "cpu_affinity"; app/cpu_affinity.h).
#include <doctest/doctest.h>

#include <algorithm>

#include "app/cpu_affinity.h"

using namespace sb::app;
using sb::core::CpuAffinityConfig;

TEST_CASE("cpu_affinity none: no worker is pinned") {
  std::string error;
  CHECK(plan_worker_cpus({"none", {}}, {0, 1}, 3, error) == std::vector<int>{-1, -1, -1});
  CHECK(error.empty());
}

TEST_CASE("cpu_affinity auto: workers spread round robin over the CPUs the process may use") {
  std::string error;
  CHECK(plan_worker_cpus({"auto", {}}, {0, 1}, 2, error) == std::vector<int>{0, 1});
  CHECK(plan_worker_cpus({"auto", {}}, {2, 5, 7}, 4, error) == std::vector<int>{2, 5, 7, 2});
  CHECK(plan_worker_cpus({"auto", {}}, {3}, 2, error) == std::vector<int>{3, 3});
  CHECK(plan_worker_cpus({"auto", {}}, {}, 2, error) == std::vector<int>{-1, -1});  // unknown: not pinned
  CHECK(error.empty());
}

TEST_CASE("cpu_affinity list: worker i on cpus[i % size]; a CPU the process may not use is named") {
  std::string error;
  CHECK(plan_worker_cpus({"list", {1, 0}}, {0, 1}, 3, error) == std::vector<int>{1, 0, 1});
  CHECK(plan_worker_cpus({"list", {1}}, {0, 1}, 2, error) == std::vector<int>{1, 1});
  CHECK(error.empty());
  CHECK(plan_worker_cpus({"list", {}}, {0, 1}, 2, error) == std::vector<int>{-1, -1});  // (config refuses it)
  CHECK(error.empty());
  CHECK(plan_worker_cpus({"list", {0, 4}}, {0, 1, 2, 3, 8}, 2, error).empty());
  CHECK(error == "cpu_affinity[1]: CPU 4 is not one this process may use (0-3,8)");
}

TEST_CASE("cpu_list_text writes ranges as the kernel does") {
  CHECK(cpu_list_text({}) == "");
  CHECK(cpu_list_text({0}) == "0");
  CHECK(cpu_list_text({0, 1}) == "0-1");
  CHECK(cpu_list_text({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8");
}

TEST_CASE("allowed_cpus: the CPUs this process may use, ascending") {
  std::vector<int> cpus = allowed_cpus();
  REQUIRE_FALSE(cpus.empty());
  CHECK(std::is_sorted(cpus.begin(), cpus.end()));
}
