// Summary statistics of timing samples (see stats.h).
#include "bench/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace fluxtrain {

static double percentile_sorted(const std::vector<double>& v, double q) {
  // Rank q/100 * (n - 1), interpolated between its two neighbours.
  const double rank = q / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return v[lo] + frac * (v[hi] - v[lo]);
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) throw std::invalid_argument("percentile of no values");
  if (q < 0 || q > 100) throw std::invalid_argument("percentile outside [0, 100]");
  std::sort(values.begin(), values.end());
  return percentile_sorted(values, q);
}

TimingSummary summarize(const std::vector<double>& values) {
  if (values.empty()) throw std::invalid_argument("summary of no values");
  std::vector<double> v = values;
  std::sort(v.begin(), v.end());
  TimingSummary s;
  s.count = static_cast<int64_t>(v.size());
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  s.min = v.front();
  s.max = v.back();
  s.p50 = percentile_sorted(v, 50);
  s.p90 = percentile_sorted(v, 90);
  s.p99 = percentile_sorted(v, 99);
  return s;
}

}  // namespace fluxtrain
