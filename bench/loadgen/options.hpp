// loadgen::Options: the command line, parsed and validated once before the clock starts.
// Bad usage prints the usage and exits 2 (start-up regime); nothing after parse_args parses.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>

#include "loadgen/script.hpp"

namespace loadgen {

struct Target {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = AF_UNSPEC;
};

struct Options {
  std::string target;
  Target addr;
  unsigned concurrency = 1;  // closed loop: connections kept in flight
  unsigned threads = 1;
  std::optional<double> rate;     // open loop: connections started per second, on schedule
  unsigned max_inflight = 10000;  // open loop: the bound on connections in flight
  std::optional<uint64_t> count;
  std::optional<double> duration_s;
  // -n alone still needs a time bound: a wedged server must not keep a benchmark script
  // waiting forever.
  double max_seconds = 300.0;
  script::Script script;
  bool graceful_close = false;
  unsigned timeout_ms = 5000;
  std::string label;
  bool json = false;
  std::string csv_path;          // per-second series as CSV ("-": stdout)
  std::string series_json_path;  // per-second series as JSON lines ("-": stdout)
  bool progress = true;          // the live line on stderr, when it is a TTY

  bool open_loop() const { return rate.has_value(); }
};

inline constexpr unsigned kMaxThreads = 64;
inline constexpr unsigned kMaxConcurrency = 100000;
inline constexpr unsigned kMaxInflight = 1000000;
inline constexpr double kMaxRate = 10000000.0;

Options parse_args(int argc, char** argv);

}  // namespace loadgen
