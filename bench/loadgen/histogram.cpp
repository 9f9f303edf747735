// The bucket layout of loadgen::Histogram (see histogram.hpp for the strategy). Index i below
// 2 * kSubBuckets is the value itself; above, with shift = msb(v) - kSubBits (>= 1) and
// m = v >> shift (the top kSubBits + 1 bits, in [kSubBuckets, 2 * kSubBuckets)), the index is
// shift * kSubBuckets + m, which continues the exact range without a gap.
#include "loadgen/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace loadgen {

namespace {

constexpr uint64_t kExactLimit = 2 * Histogram::kSubBuckets;
constexpr uint64_t kTopValue = uint64_t{1} << Histogram::kTopBit;

}  // namespace

size_t Histogram::index_of(uint64_t value) {
  if (value < kExactLimit) return static_cast<size_t>(value);
  if (value >= kTopValue) value = kTopValue - 1;
  const unsigned msb = 63u - static_cast<unsigned>(__builtin_clzll(value));
  const unsigned shift = msb - kSubBits;
  return static_cast<size_t>(shift * kSubBuckets + (value >> shift));
}

uint64_t Histogram::lower_bound_of(size_t index) {
  if (index < kExactLimit) return index;
  const uint64_t shift = index / kSubBuckets - 1;
  const uint64_t m = index - shift * kSubBuckets;
  return m << shift;
}

uint64_t Histogram::width_of(size_t index) {
  if (index < kExactLimit) return 1;
  return uint64_t{1} << (index / kSubBuckets - 1);
}

void Histogram::record(uint64_t value) {
  counts_[index_of(value)]++;
  count_++;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

void Histogram::merge(const Histogram& other) {
  for (size_t i = 0; i < kBuckets; i++) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

void Histogram::reset() {
  counts_.fill(0);
  count_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
}

uint64_t Histogram::percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The same rank as a nearest-rank percentile over the sorted values: ceil(q * n), at least 1.
  const auto rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_))));
  // The first and last ranks are the exact min and max, which are kept.
  if (rank == 1) return min_;
  if (rank >= count_) return max_;
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; i++) {
    seen += counts_[i];
    if (seen >= rank) {
      const uint64_t mid = lower_bound_of(i) + width_of(i) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

}  // namespace loadgen
