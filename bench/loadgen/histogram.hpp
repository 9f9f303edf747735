// loadgen::Histogram: a log-linear (HDR-style) latency histogram, mergeable across threads.
//
// Strategy: values below 2 * kSubBuckets are counted exactly, one bucket each. Above that,
// every power of two [2^m, 2^(m+1)) is cut into kSubBuckets equal buckets, so a bucket is never
// wider than 1/kSubBuckets of its lower bound. A percentile is reported as the midpoint of the
// bucket that holds it (clamped to the exact min and max), hence within kRelativeError of the
// exact nearest-rank value. Recording is a count-leading-zeros and an increment: no allocation,
// no sorting, O(1) memory whatever the run's length. Two histograms merge by adding counts,
// which is what lets each worker thread keep its own and the main thread sum them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace loadgen {

class Histogram {
 public:
  static constexpr unsigned kSubBits = 7;
  static constexpr uint64_t kSubBuckets = uint64_t{1} << kSubBits;  // 128 per power of two
  // The largest relative distance between a reported percentile and the exact one.
  static constexpr double kRelativeError = 1.0 / (2.0 * kSubBuckets);
  // Values from 2^kTopBit up (about 73 minutes in nanoseconds) share the top bucket; the exact
  // max is still kept.
  static constexpr unsigned kTopBit = 42;
  static constexpr size_t kBuckets = (kTopBit - kSubBits + 1) * kSubBuckets;

  void record(uint64_t value);
  void merge(const Histogram& other);
  void reset();

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  // Nearest rank: the smallest recorded value v such that at least q * count() values are
  // <= v (q in [0, 1]; q = 0 gives min, q = 1 gives max). 0 when empty.
  uint64_t percentile(double q) const;

  // Bucket arithmetic, public for the unit test.
  static size_t index_of(uint64_t value);
  static uint64_t lower_bound_of(size_t index);
  static uint64_t width_of(size_t index);

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace loadgen
