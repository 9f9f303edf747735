// The daemon: one Boost.Asio loop on one thread that accepts, admits, leases a UID, spawns,
// reaps and cleans. The stages it strings together live in their own modules; this file only
// owns their state and the order in which they run.
#pragma once

#include <string>

#include "config/config.hpp"

namespace superd::daemon {

struct Options {
  int ready_fd = -1;        // write "READY\n" here once every listener is bound
  std::string config_path;  // re-read on SIGHUP / `superd reload`
};

// Runs until SIGTERM/SIGINT; returns the process exit code.
int serve(const config::Config& config, const Options& options);

}  // namespace superd::daemon
