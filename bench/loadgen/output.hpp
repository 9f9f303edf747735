// loadgen's reports: the human summary on stderr, the one-line JSON summary on stdout (its keys
// are what bench/*.py read: keep them), the per-second series as CSV or JSON lines, and the live
// progress line, written only when stderr is a TTY.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "loadgen/options.hpp"
#include "loadgen/series.hpp"
#include "loadgen/worker.hpp"

namespace loadgen::output {

struct Summary {
  Counters counts;
  Interval totals;  // its latency histogram: every successful connection
  double elapsed_s = 0;
  std::vector<std::string> sample_errors;
};

void print_summary(const Options& o, const Summary& s);
void print_json(const Options& o, const Summary& s);

// Writes rows as they complete; "-" is stdout. Start-up errors (cannot open) exit 2.
class SeriesWriter {
 public:
  SeriesWriter(const std::string& csv_path, const std::string& json_path);
  ~SeriesWriter();
  SeriesWriter(const SeriesWriter&) = delete;
  SeriesWriter& operator=(const SeriesWriter&) = delete;
  void write(const std::vector<Row>& rows);

 private:
  std::FILE* csv_ = nullptr;
  std::FILE* json_ = nullptr;
};

// The one-line live display: rewritten in place once a second, cleared at the end.
class Progress {
 public:
  explicit Progress(bool wanted);
  void update(double elapsed_s, const Snapshot& s);
  void clear();

 private:
  bool on_ = false;
  bool drawn_ = false;
};

}  // namespace loadgen::output
