// Summary statistics of timing samples: mean and percentiles (linear interpolation between the
// closest ranks, numpy's default), used for step times and sampling latencies.
#pragma once
#include <cstdint>
#include <vector>

namespace fluxtrain {

struct TimingSummary {
  int64_t count = 0;
  double mean = 0, min = 0, max = 0;
  double p50 = 0, p90 = 0, p99 = 0;
};

// q in [0, 100]; `values` need not be sorted. Throws std::invalid_argument when empty.
double percentile(std::vector<double> values, double q);
TimingSummary summarize(const std::vector<double>& values);

}  // namespace fluxtrain
