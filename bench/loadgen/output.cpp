// Formatting of loadgen's results (see output.hpp). Percentiles come from the merged
// log-linear histogram: within Histogram::kRelativeError of the exact nearest-rank values.
#include "loadgen/output.hpp"

#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

namespace loadgen::output {

namespace {

double ms(uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

double round3(double v) {
  return std::round(v * 1000.0) / 1000.0;
}

double rate_of(const Summary& s) {
  return s.elapsed_s > 0 ? static_cast<double>(s.counts.ok) / s.elapsed_s : 0.0;
}

std::FILE* open_out(const std::string& path) {
  if (path.empty()) return nullptr;
  if (path == "-") return stdout;
  std::FILE* f = std::fopen(path.c_str(), "we");
  if (f == nullptr) {
    fmt::print(stderr, "loadgen: cannot write '{}': {}\n", path, std::strerror(errno));
    std::exit(2);
  }
  return f;
}

}  // namespace

void print_summary(const Options& o, const Summary& s) {
  const Counters& c = s.counts;
  const Histogram& h = s.totals.latency;
  const std::string mode = o.open_loop() ? fmt::format("r={:g}/s", *o.rate) : fmt::format("c={}", o.concurrency);
  fmt::print(stderr,
             "loadgen{}{} {} {} T={}: ok={} failed={} (connect={} timeout={} mismatch={} io={} late={})\n"
             "  {:.1f} conns/s over {:.2f} s; latency ms p50={:.3f} p90={:.3f} p99={:.3f} p99.9={:.3f} "
             "max={:.3f}\n",
             o.label.empty() ? "" : " ", o.label, o.target, mode, o.threads, c.ok, c.failed(), c.connect_errors,
             c.timeouts, c.mismatches, c.io_errors, c.late, rate_of(s), s.elapsed_s, ms(h.percentile(0.50)),
             ms(h.percentile(0.90)), ms(h.percentile(0.99)), ms(h.percentile(0.999)), ms(h.max()));
  if (o.open_loop()) fmt::print(stderr, "  open loop: latency from each connection's scheduled start\n");
  for (const auto& err : s.sample_errors) fmt::print(stderr, "  e.g. {}\n", err);
}

void print_json(const Options& o, const Summary& s) {
  const Counters& c = s.counts;
  const Histogram& h = s.totals.latency;
  nlohmann::ordered_json j;
  // The keys bench/*.py have always read, in their old order.
  j["label"] = o.label;
  j["target"] = o.target;
  j["concurrency"] = o.open_loop() ? o.max_inflight : o.concurrency;
  j["ok"] = c.ok;
  j["failed"] = c.failed();
  j["conns_per_s"] = std::round(rate_of(s) * 10.0) / 10.0;
  j["p50_ms"] = round3(ms(h.percentile(0.50)));
  j["p90_ms"] = round3(ms(h.percentile(0.90)));
  j["p99_ms"] = round3(ms(h.percentile(0.99)));
  j["max_ms"] = round3(ms(h.max()));
  j["duration_s"] = round3(s.elapsed_s);
  j["connect_errors"] = c.connect_errors;
  j["timeouts"] = c.timeouts;
  j["mismatches"] = c.mismatches;
  j["io_errors"] = c.io_errors;
  // Added with -T and -r.
  j["late"] = c.late;
  j["p999_ms"] = round3(ms(h.percentile(0.999)));
  j["started"] = c.started;
  j["threads"] = o.threads;
  j["mode"] = o.open_loop() ? "open" : "closed";
  j["rate"] = o.open_loop() ? nlohmann::ordered_json(*o.rate) : nlohmann::ordered_json(nullptr);
  std::fputs((j.dump() + "\n").c_str(), stdout);
  std::fflush(stdout);
}

SeriesWriter::SeriesWriter(const std::string& csv_path, const std::string& json_path)
    : csv_(open_out(csv_path)), json_(open_out(json_path)) {
  if (csv_ != nullptr) {
    std::fputs("second,started,ok,failed,late,inflight,p50_ms,p90_ms,p99_ms,p999_ms,max_ms\n", csv_);
    std::fflush(csv_);
  }
}

SeriesWriter::~SeriesWriter() {
  if (csv_ != nullptr && csv_ != stdout) std::fclose(csv_);
  if (json_ != nullptr && json_ != stdout) std::fclose(json_);
}

void SeriesWriter::write(const std::vector<Row>& rows) {
  for (const Row& r : rows) {
    if (csv_ != nullptr)
      fmt::print(csv_, "{},{},{},{},{},{},{:.3f},{:.3f},{:.3f},{:.3f},{:.3f}\n", r.second, r.started, r.ok, r.failed,
                 r.late, r.inflight, r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms, r.max_ms);
    if (json_ != nullptr) {
      nlohmann::ordered_json j;
      j["second"] = r.second;
      j["started"] = r.started;
      j["ok"] = r.ok;
      j["failed"] = r.failed;
      j["late"] = r.late;
      j["inflight"] = r.inflight;
      j["p50_ms"] = round3(r.p50_ms);
      j["p90_ms"] = round3(r.p90_ms);
      j["p99_ms"] = round3(r.p99_ms);
      j["p999_ms"] = round3(r.p999_ms);
      j["max_ms"] = round3(r.max_ms);
      std::fputs((j.dump() + "\n").c_str(), json_);
    }
  }
  if (csv_ != nullptr) std::fflush(csv_);
  if (json_ != nullptr) std::fflush(json_);
}

Progress::Progress(bool wanted) : on_(wanted && isatty(STDERR_FILENO) == 1) {}

void Progress::update(double elapsed_s, const Snapshot& s) {
  if (!on_) return;
  const double rate = s.have_last_second ? static_cast<double>(s.last_second_ok)
                                         : (elapsed_s > 0 ? static_cast<double>(s.ok) / elapsed_s : 0.0);
  // \r and erase-to-end-of-line: one line, rewritten in place.
  fmt::print(stderr, "\r\x1b[K{:5.0f} s  {:8.0f} conns/s  ok {}  failed {}  p99 {:.2f} ms", elapsed_s, rate, s.ok,
             s.failed, s.p99_ms);
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::clear() {
  if (on_ && drawn_) {
    fmt::print(stderr, "\r\x1b[K");
    std::fflush(stderr);
  }
  drawn_ = false;
}

}  // namespace loadgen::output
