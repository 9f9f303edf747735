// The per-second series and run totals of loadgen (see series.hpp for the hand-in protocol).
#include "loadgen/series.hpp"

#include <time.h>

#include <algorithm>
#include <chrono>

namespace loadgen {

void Interval::add(const Interval& o) {
  started += o.started;
  ok += o.ok;
  failed += o.failed;
  late += o.late;
  inflight += o.inflight;
  latency.merge(o.latency);
}

void Interval::clear() {
  started = ok = failed = late = inflight = 0;
  latency.reset();
}

Row Collector::to_row(uint64_t second, const Interval& iv) {
  auto ms = [](uint64_t ns) { return static_cast<double>(ns) / 1e6; };
  Row r;
  r.second = second;
  r.started = iv.started;
  r.ok = iv.ok;
  r.failed = iv.failed;
  r.late = iv.late;
  r.inflight = iv.inflight;
  r.p50_ms = ms(iv.latency.percentile(0.50));
  r.p90_ms = ms(iv.latency.percentile(0.90));
  r.p99_ms = ms(iv.latency.percentile(0.99));
  r.p999_ms = ms(iv.latency.percentile(0.999));
  r.max_ms = ms(iv.latency.max());
  return r;
}

void Collector::hand_in(unsigned w, uint64_t second, const Interval& iv) {
  std::lock_guard lock(mu_);
  pending_[second].add(iv);
  next_second_[w] = second + 1;
  totals_.add(iv);
  totals_.inflight = 0;  // a gauge, meaningful per second only
  complete_rows();
}

void Collector::complete_rows() {
  // Second s is complete once every worker still running has handed it in.
  uint64_t done_below = UINT64_MAX;
  for (unsigned w = 0; w < workers_; w++)
    if (!finished_flags_[w]) done_below = std::min(done_below, next_second_[w]);
  while (!pending_.empty() && pending_.begin()->first < done_below) {
    auto it = pending_.begin();
    ready_.push_back(to_row(it->first, it->second));
    last_second_ok_ = it->second.ok;
    have_last_second_ = true;
    pending_.erase(it);
  }
}

void Collector::worker_finished(unsigned w) {
  {
    std::lock_guard lock(mu_);
    finished_flags_[w] = true;
    finished_++;
    complete_rows();
  }
  cv_.notify_all();
}

bool Collector::wait_all_finished_until(uint64_t deadline_ns) {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
  std::unique_lock lock(mu_);
  if (deadline_ns > now)
    cv_.wait_for(lock, std::chrono::nanoseconds(deadline_ns - now), [&] { return finished_ >= workers_; });
  return finished_ >= workers_;
}

std::vector<Row> Collector::take_rows(bool all) {
  std::lock_guard lock(mu_);
  if (all) {
    for (auto& [second, iv] : pending_) ready_.push_back(to_row(second, iv));
    pending_.clear();
  }
  std::vector<Row> out;
  out.swap(ready_);
  return out;
}

Snapshot Collector::snapshot() const {
  std::lock_guard lock(mu_);
  Snapshot s;
  s.ok = totals_.ok;
  s.failed = totals_.failed;
  s.last_second_ok = last_second_ok_;
  s.have_last_second = have_last_second_;
  s.p99_ms = static_cast<double>(totals_.latency.percentile(0.99)) / 1e6;
  return s;
}

Interval Collector::totals() const {
  std::lock_guard lock(mu_);
  return totals_;
}

}  // namespace loadgen
