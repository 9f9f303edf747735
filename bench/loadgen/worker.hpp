// loadgen::Worker: one thread's epoll loop, running its share of the connections.
//
// Closed loop (-c): keeps its share of the concurrency in flight, starting a connection as soon
// as one ends; latency runs from the actual start. Open loop (-r): connection j of the run is
// due at t0 + j / RATE, and worker w of T takes every j with j % T == w, so the threads
// together keep the one global schedule. A connection starts when it is due, whatever the
// latency of the others; if the worker is behind (every slot busy, or the loop was held up),
// it starts late but its latency still runs from the time it was due, so that a stall shows
// up in the percentiles instead of slowing the schedule down (no coordinated omission). One
// that cannot start within --timeout-ms of its schedule is counted `late`, a failure.
//
// Each worker owns its sockets, counters and histogram; the threads share only the Collector
// (once a second) and, in a closed loop with -n, an atomic count of connections left to start.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "loadgen/options.hpp"
#include "loadgen/series.hpp"

namespace loadgen {

struct Counters {
  uint64_t started = 0, ok = 0;
  uint64_t connect_errors = 0, timeouts = 0, mismatches = 0, io_errors = 0, late = 0;
  uint64_t failed() const { return connect_errors + timeouts + mismatches + io_errors + late; }
  void add(const Counters& o);
};

// Async-signal-safe: stop starting connections; those in flight finish or time out.
void request_stop();

uint64_t now_ns();

class Worker {
 public:
  // `tickets`: connections left to start in a closed loop with -n (shared), else null.
  Worker(const Options& o, unsigned index, unsigned workers, uint64_t t0_ns, std::atomic<uint64_t>* tickets,
         Collector& collector);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void run();

  const Counters& counts() const { return counts_; }
  const std::vector<std::string>& sample_errors() const { return sample_errors_; }
  uint64_t end_ns() const { return end_ns_; }
  const std::string& fatal() const { return fatal_; }

 private:
  enum class State { idle, connecting, running };
  enum class Failure { connect, timeout, mismatch, io, late };
  enum class Io { progress, again, eof, error };

  struct Conn {
    int fd = -1;
    uint32_t gen = 0;  // bumped on every reuse so stale events/timeouts are ignored
    State state = State::idle;
    uint64_t due_ns = 0;      // the latency's origin: the schedule (open loop) or the start
    uint64_t started_ns = 0;  // the timeout's origin
    uint64_t step = 0;        // the script's cursor
    size_t sent = 0;          // of the current send step
    std::string rx;           // received, not yet consumed by an expect step
    uint64_t dropped = 0;     // bytes beyond what an `expect`/`eof` step keeps
    bool peer_eof = false;
    bool send_broken = false;  // the peer closed its read side: later sends are skipped
  };

  struct PendingTimeout {
    unsigned idx;
    uint32_t gen;
    uint64_t started_ns;
  };

  void launch(uint64_t now);
  bool more_to_launch(uint64_t now) const;
  uint64_t due_of(uint64_t k) const;
  bool take_ticket();
  void start_one(uint64_t now, uint64_t due);
  void on_event(uint64_t data, uint32_t events);
  void advance(unsigned idx);
  Io send_some(Conn& c, const std::string& text);
  Io read_some(Conn& c, size_t keep_limit);
  void finish(unsigned idx, bool ok, Failure f = Failure::io);
  void count_failure(Failure f);
  void expire(uint64_t now);
  void abort_all_inflight();
  void roll(uint64_t now);
  void note_error(const char* what, int err);

  const Options& opt_;
  const unsigned index_, workers_;
  const uint64_t t0_ns_, timeout_ns_;
  std::atomic<uint64_t>* tickets_;
  Collector& collector_;
  int epfd_ = -1;
  std::vector<Conn> slots_;
  std::vector<unsigned> free_;
  std::deque<PendingTimeout> timeouts_;
  std::vector<std::string> sample_errors_;
  Counters counts_;
  Interval second_;  // what completes in cur_second_
  uint64_t cur_second_ = 0;
  uint64_t next_boundary_ns_ = 0;
  unsigned inflight_ = 0;
  uint64_t launch_until_ns_ = 0, hard_stop_ns_ = 0, end_ns_ = 0;
  bool stopping_ = false;
  // Open loop: the next of this worker's connections to start, and how many it has.
  uint64_t next_k_ = 0, open_total_ = 0;
  std::string fatal_;
};

}  // namespace loadgen
