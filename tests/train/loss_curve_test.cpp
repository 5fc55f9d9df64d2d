// The loss curve drawn at the end of a run: the smoothed training loss and the validation losses
// from metrics.jsonl, checked against hand-worked moving averages.
#include "train/loss_curve.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

using namespace fluxtrain;
namespace fs = std::filesystem;

TEST(LossCurve, MovingAverageOfTrainingLossAndEveryValidationLoss) {
  fluxtrain::testing::TempDir run;
  {
    std::ofstream m(run.path() / "metrics.jsonl");
    for (int s = 1; s <= 800; ++s) {
      m << nlohmann::json{{"type", "train"}, {"step", s}, {"loss", double(s)}}.dump() << "\n";
      if (s % 400 == 0)
        m << nlohmann::json{{"type", "val"}, {"step", s}, {"val_loss", 1000.0 / s}}.dump() << "\n";
    }
    m << "not json\n";                                                     // skipped
    m << nlohmann::json{{"type", "train"}, {"step", 801}}.dump() << "\n";  // no loss: skipped
  }
  const ChartSpec c = loss_curve_chart(run.path().string());
  ASSERT_EQ(c.series.size(), 2u);
  // 800 rows: an 8-row window, a point every 2 rows from the 8th: the mean of s-7..s is s - 3.5.
  const auto& train = c.series[0].points;
  ASSERT_EQ(train.size(), 397u);
  EXPECT_EQ(train.front(), (std::pair<double, double>{8, 4.5}));
  EXPECT_EQ(train[1], (std::pair<double, double>{10, 6.5}));
  EXPECT_EQ(train.back(), (std::pair<double, double>{800, 796.5}));
  EXPECT_EQ(c.series[0].label, "training loss (8-step mean)");
  EXPECT_EQ(c.series[1].points, (std::vector<std::pair<double, double>>{{400, 2.5}, {800, 1.25}}));

  const std::string svg_path = write_loss_curve(run.path().string());
  EXPECT_EQ(svg_path, (run.path() / "loss.svg").string());
  std::stringstream svg;
  svg << std::ifstream(svg_path).rdbuf();
  size_t lines = 0;
  for (size_t at = svg.str().find("<polyline"); at != std::string::npos;
       at = svg.str().find("<polyline", at + 1))
    ++lines;
  EXPECT_EQ(lines, 2u);
  EXPECT_NE(svg.str().find("validation loss (MLPerf)"), std::string::npos);

  // No training rows: no chart, no file.
  const fs::path empty = run.path() / "empty";
  fs::create_directories(empty);
  std::ofstream(empty / "metrics.jsonl") << nlohmann::json{{"type", "val"}, {"step", 1}}.dump();
  EXPECT_TRUE(loss_curve_chart(empty.string()).series.empty());
  EXPECT_EQ(write_loss_curve(empty.string()), "");
  EXPECT_FALSE(fs::exists(empty / "loss.svg"));
  EXPECT_TRUE(fs::exists(run.path() / "loss.svg"));  // the first run's chart is untouched
}
