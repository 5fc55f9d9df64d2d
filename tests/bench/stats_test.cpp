// Percentiles and summaries against hand-worked values.
#include "bench/stats.h"

#include <gtest/gtest.h>

#include <stdexcept>

using namespace fluxtrain;

TEST(Stats, PercentilesInterpolateBetweenClosestRanks) {
  // Sorted: 10 20 30 40 50. Rank q/100 * 4: p50 -> 2 (30); p90 -> 3.6 (40 + 0.6 * 10 = 46);
  // p99 -> 3.96 (40 + 0.96 * 10 = 49.6); p25 -> 1 (20).
  const std::vector<double> v = {50, 10, 40, 30, 20};
  EXPECT_DOUBLE_EQ(percentile(v, 50), 30);
  EXPECT_DOUBLE_EQ(percentile(v, 90), 46);
  EXPECT_DOUBLE_EQ(percentile(v, 99), 49.6);
  EXPECT_DOUBLE_EQ(percentile(v, 25), 20);
  EXPECT_DOUBLE_EQ(percentile(v, 0), 10);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 50);
  // 1 2 3 4: rank 1.5 -> 2.5; rank 2.7 -> 3.7; rank 2.97 -> 3.97.
  const std::vector<double> w = {4, 3, 2, 1};
  EXPECT_DOUBLE_EQ(percentile(w, 50), 2.5);
  EXPECT_NEAR(percentile(w, 90), 3.7, 1e-12);
  EXPECT_NEAR(percentile(w, 99), 3.97, 1e-12);
}

TEST(Stats, SummaryOfMeasuredTimes) {
  const auto s = summarize({12, 10, 11, 13, 100});
  EXPECT_EQ(s.count, 5);
  EXPECT_DOUBLE_EQ(s.mean, 29.2);  // 146 / 5
  EXPECT_DOUBLE_EQ(s.min, 10);
  EXPECT_DOUBLE_EQ(s.max, 100);
  EXPECT_DOUBLE_EQ(s.p50, 12);
  EXPECT_NEAR(s.p90, 13 + 0.6 * 87, 1e-9);   // rank 3.6 between 13 and 100
  EXPECT_NEAR(s.p99, 13 + 0.96 * 87, 1e-9);  // rank 3.96
  const auto one = summarize({7});
  EXPECT_DOUBLE_EQ(one.p50, 7);
  EXPECT_DOUBLE_EQ(one.p99, 7);
  EXPECT_THROW(summarize({}), std::invalid_argument);
  EXPECT_THROW(percentile({1.0}, 101), std::invalid_argument);
}
