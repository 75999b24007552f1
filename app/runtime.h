// Running the proxy: location service, workers, listeners, signals, live reload and the
// admin backend. Stops cleanly on SIGINT/SIGTERM (every handle closed, the store flushed).
#pragma once
#include <uv.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "app/admin_backend.h"
#include "app/admin_server.h"
#include "app/sip_worker.h"
#include "core/clock.h"
#include "core/config.h"
#include "location/location_service.h"
#include "proxy/policy_services.h"
#include "transport/worker.h"

namespace sb::app {

class Runtime final : public AdminBackend {
 public:
  // `config_path` is re-read on reload ("" = the embedded default, which cannot change).
  Runtime(std::string config_path, std::shared_ptr<const core::Config> config);
  ~Runtime() override;

  // Starts everything and runs the main loop until SIGINT/SIGTERM. Returns the exit code.
  int run();

  // AdminBackend (main loop thread)
  void reload(std::function<void(ReloadOutcome)> done) override;
  void stats(std::function<void(StatsSnapshot)> done) override;
  std::vector<LocationEntry> location_list(std::string_view aor) override;
  core::Status location_add(std::string_view aor, std::string_view contact, double q,
                            uint32_t expires_s) override;
  size_t location_remove(std::string_view aor, std::string_view contact) override;

 private:
  // Work handed to the main loop from worker threads (reload acks, stats reports).
  void post_main(std::function<void()> fn);
  static void on_main_async(uv_async_t* h);
  static void on_signal(uv_signal_t* h, int signum);
  void start_reload();
  void finish_reload(ReloadOutcome outcome);

  std::string config_path_;
  std::shared_ptr<const core::Config> config_;
  core::SystemClock clock_;
  std::unique_ptr<location::LocationService> location_;
  transport::WorkerGroup group_;
  std::unique_ptr<AdminServer> admin_;
  std::vector<std::unique_ptr<SipWorker>> workers_;
  uint64_t generation_ = 1;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
  int64_t started_ms_ = 0;

  uv_loop_t loop_{};
  uv_async_t async_{};
  uv_signal_t sigint_{}, sigterm_{}, sighup_{};
  std::mutex main_mu_;
  std::vector<std::function<void()>> main_tasks_;
  // Reloads are serialised: the front one runs, the others wait their turn (STYLE.md user
  // complaints).
  std::deque<std::function<void(ReloadOutcome)>> reload_queue_;
};

// Config "auth" with its users file loaded and checked, as `run` and every reload do (and
// `switchboard check`); null when auth is off. Problems are appended to `errors`.
std::shared_ptr<const proxy::AuthSetup> auth_setup(const core::Config& cfg, std::vector<std::string>& errors);
// Config "tls" loaded into an SSL context, as `run`, every reload and `switchboard check` do;
// null when there is no "tls" section. Problems are appended to `errors`, each naming its key.
std::shared_ptr<const transport::TlsContext> tls_context(const core::Config& cfg,
                                                         std::vector<std::string>& errors);

// `switchboard run`.
int run(const std::string& config_path, std::shared_ptr<const core::Config> config);

}  // namespace sb::app
