// profile_steps in a sweep: the profiled steps come after the measured ones and are left out of
// the timings.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "bench/train_point.h"
#include "test_util.h"

using namespace fluxtrain;
namespace fs = std::filesystem;

TEST(ProfilePoint, ProfiledStepsComeAfterTheMeasuredOnes) {
  auto spec = make_sweep(read_sweep_yaml_string(
      "warmup: 2\nmeasured: 3\nmodel: tiny\nprofile_steps: 2\nbatch_size: [1, 2]\n", "s.yaml"));
  const auto args = train_point_args(spec, expand_grid(spec)[0], "/out/points");
  auto has = [&](const std::string& a) {
    return std::find(args.begin(), args.end(), a) != args.end();
  };
  EXPECT_TRUE(has("--steps=7"));
  EXPECT_TRUE(has("--profile_steps=2"));
  EXPECT_FALSE(has("--steps=5"));

  fluxtrain::testing::TempDir tmp;
  const fs::path p = tmp.path() / "metrics.jsonl";
  std::ofstream(p) << "{\"type\":\"train\",\"step\":1,\"step_ms\":500}\n"
                      "{\"type\":\"train\",\"step\":2,\"step_ms\":100}\n"
                      "{\"type\":\"train\",\"step\":3,\"step_ms\":110}\n"
                      "{\"type\":\"train\",\"step\":4,\"step_ms\":900,\"profiled\":true}\n";
  EXPECT_EQ(measured_step_ms(p.string(), 1), (std::vector<double>{100.0, 110.0}));
}
