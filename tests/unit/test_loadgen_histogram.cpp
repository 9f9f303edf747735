// loadgen::Histogram (bench/loadgen): percentiles against the exact nearest-rank values of
// known inputs, within the documented relative error; merging equals recording in one.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "loadgen/histogram.hpp"

using loadgen::Histogram;

namespace {

// The exact nearest-rank percentile: the value at rank ceil(q * n) of the sorted samples.
uint64_t exact_percentile(std::vector<uint64_t> v, double q) {
  std::sort(v.begin(), v.end());
  auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  rank = std::clamp<size_t>(rank, 1, v.size());
  return v[rank - 1];
}

bool within_precision(uint64_t got, uint64_t exact) {
  const double diff = std::fabs(static_cast<double>(got) - static_cast<double>(exact));
  return diff <= static_cast<double>(exact) * Histogram::kRelativeError;
}

constexpr double kQuantiles[] = {0.0, 0.10, 0.50, 0.90, 0.99, 0.999, 1.0};

}  // namespace

TEST_CASE("loadgen histogram: small values are exact", "[loadgen_histogram]") {
  Histogram h;
  for (uint64_t v = 1; v <= 100; v++) h.record(v);
  CHECK(h.count() == 100);
  CHECK(h.min() == 1);
  CHECK(h.max() == 100);
  CHECK(h.percentile(0.50) == 50);
  CHECK(h.percentile(0.90) == 90);
  CHECK(h.percentile(0.99) == 99);
  CHECK(h.percentile(0.999) == 100);
  CHECK(h.percentile(1.0) == 100);
  CHECK(h.percentile(0.0) == 1);
}

TEST_CASE("loadgen histogram: 1..10000 ms in ns, within the relative error", "[loadgen_histogram]") {
  Histogram h;
  std::vector<uint64_t> all;
  for (uint64_t ms = 1; ms <= 10000; ms++) {
    h.record(ms * 1000000);
    all.push_back(ms * 1000000);
  }
  // Known exact values: p50 = 5000 ms, p90 = 9000 ms, p99 = 9900 ms, p99.9 = 9990 ms.
  CHECK(exact_percentile(all, 0.50) == 5000000000u);
  CHECK(exact_percentile(all, 0.999) == 9990000000u);
  for (double q : kQuantiles) {
    INFO("q = " << q << ", got " << h.percentile(q) << ", exact " << exact_percentile(all, q));
    CHECK(within_precision(h.percentile(q), exact_percentile(all, q)));
  }
  CHECK(h.percentile(1.0) == 10000000000u);  // max is exact
  CHECK(h.percentile(0.0) == 1000000u);      // and so is min
}

TEST_CASE("loadgen histogram: a 10 ms plateau with a 1 s stall in the top 0.2%", "[loadgen_histogram]") {
  // The shape of the open-loop check: 4,990 connections near 10 ms, 10 that waited out a stall.
  Histogram h;
  std::vector<uint64_t> all;
  for (int i = 0; i < 4990; i++) all.push_back(10000000 + static_cast<uint64_t>(i % 50) * 10000);
  for (int i = 0; i < 10; i++) all.push_back(1000000000 + static_cast<uint64_t>(i) * 1000000);
  for (uint64_t v : all) h.record(v);
  CHECK(within_precision(h.percentile(0.50), exact_percentile(all, 0.50)));
  CHECK(within_precision(h.percentile(0.99), exact_percentile(all, 0.99)));
  CHECK(h.percentile(0.99) < 11000000);
  CHECK(within_precision(h.percentile(0.999), exact_percentile(all, 0.999)));
  CHECK(h.percentile(0.999) >= 1000000000 * (1 - Histogram::kRelativeError));
}

TEST_CASE("loadgen histogram: random values over 9 decades", "[loadgen_histogram]") {
  std::mt19937_64 rng(15);
  std::uniform_real_distribution<double> exponent(0.0, 9.0);
  Histogram h;
  std::vector<uint64_t> all;
  for (int i = 0; i < 20000; i++) {
    const auto v = static_cast<uint64_t>(std::pow(10.0, exponent(rng)));
    h.record(v);
    all.push_back(v);
  }
  for (double q : kQuantiles) {
    INFO("q = " << q << ", got " << h.percentile(q) << ", exact " << exact_percentile(all, q));
    CHECK(within_precision(h.percentile(q), exact_percentile(all, q)));
  }
}

TEST_CASE("loadgen histogram: merging two equals recording all in one", "[loadgen_histogram]") {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> latency(16.0, 1.5);  // around 9 ms in ns, long tail
  Histogram a, b, all;
  for (int i = 0; i < 5000; i++) {
    const auto v = static_cast<uint64_t>(latency(rng));
    (i % 3 == 0 ? a : b).record(v);
    all.record(v);
  }
  Histogram merged;
  merged.merge(a);
  merged.merge(b);
  CHECK(merged.count() == all.count());
  CHECK(merged.min() == all.min());
  CHECK(merged.max() == all.max());
  for (double q : kQuantiles) CHECK(merged.percentile(q) == all.percentile(q));
  merged.reset();
  CHECK(merged.count() == 0);
  CHECK(merged.percentile(0.5) == 0);
}

TEST_CASE("loadgen histogram: buckets tile the range without gaps", "[loadgen_histogram]") {
  for (size_t i = 0; i + 1 < Histogram::kBuckets; i++) {
    INFO("bucket " << i);
    REQUIRE(Histogram::lower_bound_of(i) + Histogram::width_of(i) == Histogram::lower_bound_of(i + 1));
    REQUIRE(Histogram::index_of(Histogram::lower_bound_of(i)) == i);
    REQUIRE(Histogram::width_of(i) <= std::max<uint64_t>(1, Histogram::lower_bound_of(i) / Histogram::kSubBuckets));
  }
  CHECK(Histogram::index_of(UINT64_MAX) == Histogram::kBuckets - 1);
}
