// loadgen::Collector: where the worker threads hand in their seconds.
//
// Each worker counts into an Interval of its own and hands it in when its clock passes a
// second boundary (second s = [t0 + s, t0 + s + 1) by completion time). The collector merges
// it into that second's pending row and into the run's totals; once every worker has handed in
// second s, the row is complete and its histogram is dropped, so memory stays bounded however
// long the run. One mutex, taken once a second per worker: the measured loops share nothing else.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "loadgen/histogram.hpp"

namespace loadgen {

struct Interval {
  uint64_t started = 0;
  uint64_t ok = 0;
  uint64_t failed = 0;    // every failure, late ones included
  uint64_t late = 0;      // open loop: could not start within the timeout of their schedule
  uint64_t inflight = 0;  // at the end of the second
  Histogram latency;      // of the connections that succeeded, in ns

  void add(const Interval& other);
  void clear();
};

// One complete second, as written to --csv and --json-series.
struct Row {
  uint64_t second = 0;
  uint64_t started = 0, ok = 0, failed = 0, late = 0, inflight = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
};

// What the progress line shows.
struct Snapshot {
  uint64_t ok = 0, failed = 0, last_second_ok = 0;
  bool have_last_second = false;
  double p99_ms = 0;
};

class Collector {
 public:
  explicit Collector(unsigned workers) : workers_(workers), next_second_(workers, 0), finished_flags_(workers, false) {}

  // Worker `w` is done with `second` (seconds are handed in in order); `iv` holds what
  // completed in it.
  void hand_in(unsigned w, uint64_t second, const Interval& iv);
  // Worker `w` has ended, after handing in its last second: it holds no later second back.
  void worker_finished(unsigned w);

  // Waits until `deadline_ns` (CLOCK_MONOTONIC) or until every worker has finished.
  bool wait_all_finished_until(uint64_t deadline_ns);
  // The rows completed since the last call, in order; with `all`, the incomplete ones too
  // (after the workers are joined).
  std::vector<Row> take_rows(bool all);
  Snapshot snapshot() const;
  // Run totals; only meaningful once the workers have finished.
  Interval totals() const;

 private:
  static Row to_row(uint64_t second, const Interval& iv);
  void complete_rows();  // with mu_ held

  const unsigned workers_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  unsigned finished_ = 0;
  std::vector<uint64_t> next_second_;  // per worker: the first second not yet handed in
  std::vector<bool> finished_flags_;
  std::map<uint64_t, Interval> pending_;
  std::vector<Row> ready_;
  Interval totals_;
  uint64_t last_second_ok_ = 0;
  bool have_last_second_ = false;
};

}  // namespace loadgen
