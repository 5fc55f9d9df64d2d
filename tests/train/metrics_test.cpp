// Metrics files: resuming drops rows written after the checkpoint; a damaged CSV is named.
#include "train/metrics.h"

#include <gtest/gtest.h>

#include <fstream>

#include "test_util.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;

static std::string read(const std::filesystem::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(MetricsLog, ResumeKeepsRowsUpToTheCheckpointStep) {
  auto dir = fluxtrain::testing::fresh_temp_dir("metrics_keep");
  {
    MetricsLog m(dir.string(), {"step", "loss"});
    for (int s = 1; s <= 4; ++s) m.write({{"type", "train"}, {"step", s}, {"loss", 0.5}});
    m.write({{"type", "val"}, {"step", 4}, {"val_loss", 1.0}});
  }
  { MetricsLog m(dir.string(), {"step", "loss"}, 2); }
  EXPECT_EQ(read(dir / "metrics.csv"), "step,loss\n1,0.5\n2,0.5\n");
  EXPECT_EQ(read(dir / "metrics.jsonl"),
            "{\"loss\":0.5,\"step\":1,\"type\":\"train\"}\n{\"loss\":0.5,\"step\":2,\"type\":"
            "\"train\"}\n");
}

TEST(MetricsLog, DamagedCsvIsAUserErrorNamingTheFile) {
  auto dir = fluxtrain::testing::fresh_temp_dir("metrics_bad");
  std::ofstream(dir / "metrics.csv") << "step,loss\n1,0.5\ngarbage\n";
  EXPECT_EQ(error_of([&] {
              MetricsLog m(dir.string(), {"step", "loss"}, 1);
            }),
            (dir / "metrics.csv").string() +
                ": row 'garbage' does not start with a step number (edit or remove the file)");
}
