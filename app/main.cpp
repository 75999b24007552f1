// switchboard: the command line. `run` starts the proxy; `check` validates a config offline
// with the same code the running proxy uses.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "app/cpu_affinity.h"
#include "app/ctl.h"
#include "app/route_test.h"
#include "app/runtime.h"
#include "core/config.h"
#include "scripts/engine/lua_policy.h"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: switchboard [run] [-c FILE]      start the proxy (default: the embedded etc/switchboard.json)\n"
               "       switchboard check -c FILE        validate a configuration and exit (0 = valid)\n"
               "       switchboard route-test [-c FILE] --message FILE [--binding AOR=CONTACT]...\n"
               "                  [--source IP:PORT] [--transport udp|tcp]\n"
               "                                        run the script on a message offline, print the decision\n"
               "       switchboard ctl [--admin HOST:PORT] [--json] COMMAND ...\n"
               "                                        talk to a running proxy's admin API (ctl --help)\n"
               "       switchboard version              print the version\n");
}

sb::core::ConfigLoad load(const std::string& path) {
  return path.empty() ? sb::core::load_default_config() : sb::core::load_config_file(path);
}

int cmd_check(const std::string& path) {
  auto cfg = load(path);
  std::string name = path.empty() ? "<embedded default>" : path;
  if (!cfg.ok()) {
    for (const auto& e : cfg.errors) std::fprintf(stderr, "%s: %s\n", name.c_str(), e.c_str());
    std::fprintf(stderr, "%s: %zu error(s)\n", name.c_str(), cfg.errors.size());
    return 1;
  }
  // The users file, the certificates and the CPU plan, checked as `run` checks them.
  std::vector<std::string> load_errors;
  (void)sb::app::auth_setup(*cfg.config, load_errors);
  (void)sb::app::tls_context(*cfg.config, load_errors);
  (void)sb::app::worker_cpus(*cfg.config, load_errors);
  if (!load_errors.empty()) {
    for (const auto& e : load_errors) std::fprintf(stderr, "%s: %s\n", name.c_str(), e.c_str());
    return 1;
  }
  // The same compile the running proxy does: syntax, top level, entry points.
  auto script = sb::scripts::compile(cfg.config->script.path, sb::app::script_limits_from(*cfg.config));
  if (!script.ok()) {
    std::fprintf(stderr, "%s: script: %s\n", name.c_str(), script.error().c_str());
    return 1;
  }
  std::printf("%s: ok (%zu listener(s), %u worker(s), script %s)\n", name.c_str(),
              cfg.config->listen.size(), cfg.config->worker_count(), cfg.config->script.path.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  // ctl has its own options (docs/admin.md).
  if (!args.empty() && args[0] == "ctl") return sb::app::ctl_main({args.begin() + 1, args.end()});
  std::string command = "run";
  std::string config_path;
  sb::app::RouteTestOptions rt;
  size_t i = 0;
  if (!args.empty() && args[0][0] != '-') {
    command = args[0];
    i = 1;
  }
  for (; i < args.size(); ++i) {
    if ((args[i] == "-c" || args[i] == "--config") && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (command == "route-test" && args[i] == "--message" && i + 1 < args.size()) {
      rt.message_path = args[++i];
    } else if (command == "route-test" && args[i] == "--binding" && i + 1 < args.size()) {
      rt.bindings.push_back(args[++i]);
    } else if (command == "route-test" && args[i] == "--source" && i + 1 < args.size()) {
      rt.source = args[++i];
    } else if (command == "route-test" && args[i] == "--transport" && i + 1 < args.size()) {
      rt.transport = args[++i];
    } else if (args[i] == "-h" || args[i] == "--help") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "switchboard: unexpected argument '%s'\n", args[i].c_str());
      usage(stderr);
      return 2;
    }
  }
  if (command == "version") {
    std::printf("switchboard %s\n", SB_VERSION);
    return 0;
  }
  if (command == "check") return cmd_check(config_path);
  if (command == "route-test") {
    if (rt.message_path.empty()) {
      std::fprintf(stderr, "switchboard route-test: --message FILE is required\n");
      usage(stderr);
      return 2;
    }
    rt.config_path = config_path;
    return sb::app::route_test(rt);
  }
  if (command == "run") {
    auto cfg = load(config_path);
    if (!cfg.ok()) {
      for (const auto& e : cfg.errors)
        std::fprintf(stderr, "%s: %s\n", config_path.empty() ? "<embedded default>" : config_path.c_str(),
                     e.c_str());
      return 1;
    }
    return sb::app::run(config_path, cfg.config);
  }
  std::fprintf(stderr, "switchboard: unknown command '%s'\n", command.c_str());
  usage(stderr);
  return 2;
}
