// The daemon: one Boost.Asio loop on one thread that accepts, admits, leases a UID, spawns,
// reaps and cleans. The stages it strings together live in their own modules; this file only
// owns their state and the order in which they run.
#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"

namespace superd::daemon {

struct Options {
  int ready_fd = -1;              // write "READY\n" here once every listener is bound
  std::string config_path;        // re-read on SIGHUP / `superd reload` ("" with --xinetd: defaults)
  std::string xinetd_path;        // serve --xinetd: services converted from this file, re-read likewise
  std::vector<std::string> argv;  // as superd was started: an upgrade execs the new binary with them
  int handover_fd = -1;           // an upgrade's state from the image before (daemon/handover.hpp)
};

// Called by the new image of an upgrade that cannot go on before it has changed anything (its
// configuration does not load, say): re-executes the image before it, from the binary it ran,
// with the same state and `why`; that image keeps serving and says why. Returns only if even
// that fails.
void rollback_upgrade(int handover_fd, const std::string& why);

// The configuration `serve` runs: the main file and its includes, plus (with `xinetd_path`)
// the services converted in memory from an xinetd.conf; the importer's warnings are logged.
config::Config load_config(const std::string& config_path, const std::string& xinetd_path, config::Problems& problems);

// Runs until SIGTERM/SIGINT; returns the process exit code.
int serve(const config::Config& config, const Options& options);

}  // namespace superd::daemon
