// Running the proxy: location service, workers, listeners, signals; stops cleanly on
// SIGINT/SIGTERM (every handle closed, the location store flushed).
#pragma once
#include <memory>

#include "core/config.h"

namespace sb::app {

int run(std::shared_ptr<const core::Config> config);

}  // namespace sb::app
