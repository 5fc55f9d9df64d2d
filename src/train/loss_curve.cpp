// The loss curve of a run (see loss_curve.h).
#include "train/loss_curve.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace fluxtrain {
namespace fs = std::filesystem;

ChartSpec loss_curve_chart(const std::string& run_dir) {
  std::vector<std::pair<double, double>> train, val;
  std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("step")) continue;
    const double step = j["step"].get<double>();
    if (j.value("type", "") == "train" && j.contains("loss") && j["loss"].is_number())
      train.emplace_back(step, j["loss"].get<double>());
    if (j.value("type", "") == "val" && j.contains("val_loss") && j["val_loss"].is_number())
      val.emplace_back(step, j["val_loss"].get<double>());
  }
  ChartSpec spec;
  spec.title = "loss";
  spec.x_label = "step";
  spec.y_label = "loss";
  spec.linear_x = true;
  spec.markers = false;
  spec.width = 720;
  if (train.empty()) return spec;
  // Moving average over a window of about 1 % of the steps; at most ~400 points drawn.
  const size_t window = std::max<size_t>(1, train.size() / 100);
  const size_t every = std::max<size_t>(1, train.size() / 400);
  ChartSeries smooth{fmt::format("training loss ({}-step mean)", window), {}, {}};
  double sum = 0;
  for (size_t i = 0; i < train.size(); ++i) {
    sum += train[i].second;
    if (i >= window) sum -= train[i - window].second;
    if (i + 1 >= window && ((i + 1) % every == 0 || i + 1 == train.size()))
      smooth.points.emplace_back(train[i].first, sum / static_cast<double>(window));
  }
  spec.series.push_back(smooth);
  if (!val.empty()) spec.series.push_back({"validation loss (MLPerf)", val, {}});
  return spec;
}

std::string write_loss_curve(const std::string& run_dir) {
  const ChartSpec spec = loss_curve_chart(run_dir);
  if (spec.series.empty()) return "";
  const std::string path = (fs::path(run_dir) / "loss.svg").string();
  std::ofstream(path) << svg_line_chart(spec);
  return path;
}

}  // namespace fluxtrain
