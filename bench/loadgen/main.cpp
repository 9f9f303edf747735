// loadgen (installed as superd-loadgen): connection-rate load against one TCP or UNIX target.
//
// Order of a run: parse and resolve (exit 2 on bad usage), raise the fd limit, start the worker
// threads on one shared t0, tick once a second on this thread (series rows, progress line)
// until they end, then merge and report. Output: a human summary on stderr; with --json one
// JSON line on stdout (label, target, concurrency, ok, failed, conns_per_s, p50_ms, p90_ms,
// p99_ms, max_ms, duration_s, the failure breakdown, then p999_ms, late, threads, mode, rate).
// Exit 1 when nothing succeeded, so that scripts notice a dead target.
#include <fmt/core.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include "loadgen/options.hpp"
#include "loadgen/output.hpp"
#include "loadgen/series.hpp"
#include "loadgen/worker.hpp"

namespace {

void raise_fd_limit(unsigned slots) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < slots + 64u) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, slots + 64u);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void on_stop_signal(int) {
  loadgen::request_stop();
}

void install_signals() {
  // send() uses MSG_NOSIGNAL already; this only guards stdout/stderr.
  std::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace loadgen;
  Options o = parse_args(argc, argv);
  install_signals();
  raise_fd_limit(o.open_loop() ? o.max_inflight : o.concurrency);
  // The open loop's schedule is kept with epoll_pwait2's nanosecond timeouts; the default 50 µs
  // timer slack would be added to every connection's start.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

  output::SeriesWriter series(o.csv_path, o.series_json_path);
  output::Progress progress(o.progress);
  Collector collector(o.threads);
  std::atomic<uint64_t> tickets{o.count.value_or(0)};
  std::atomic<uint64_t>* shared_tickets = (!o.open_loop() && o.count) ? &tickets : nullptr;

  const uint64_t t0 = now_ns();
  std::vector<std::unique_ptr<Worker>> workers;
  try {
    for (unsigned i = 0; i < o.threads; i++)
      workers.push_back(std::make_unique<Worker>(o, i, o.threads, t0, shared_tickets, collector));
  } catch (const std::exception& e) {
    fmt::print(stderr, "loadgen: {}\n", e.what());
    return 1;
  }
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->run(); });

  // Ticks 50 ms after each second boundary: the workers wake on the boundary to hand it in.
  for (uint64_t tick = 1;; tick++) {
    const bool done = collector.wait_all_finished_until(t0 + tick * 1000000000ULL + 50000000ULL);
    series.write(collector.take_rows(false));
    if (done) break;
    progress.update(static_cast<double>(now_ns() - t0) / 1e9, collector.snapshot());
  }
  for (auto& t : threads) t.join();
  progress.clear();
  series.write(collector.take_rows(true));

  output::Summary s;
  uint64_t end = t0;
  bool fatal = false;
  for (const auto& w : workers) {
    s.counts.add(w->counts());
    end = std::max(end, w->end_ns());
    for (const auto& e : w->sample_errors())
      if (s.sample_errors.size() < 5) s.sample_errors.push_back(e);
    if (!w->fatal().empty()) {
      fmt::print(stderr, "loadgen: {}\n", w->fatal());
      fatal = true;
    }
  }
  s.totals = collector.totals();
  s.elapsed_s = static_cast<double>(end - t0) / 1e9;
  output::print_summary(o, s);
  if (o.json) output::print_json(o, s);
  return (s.counts.ok > 0 && !fatal) ? 0 : 1;
}
