// Per-step metrics to metrics.jsonl (every row, any fields) and metrics.csv (fixed columns).
#pragma once
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fluxtrain {

class MetricsLog {
 public:
  // Opens run_dir/metrics.{jsonl,csv}. When resuming at `keep_until_step` >= 0, rows with a later
  // step (written after the checkpoint by a run that then stopped) are dropped first, so that the
  // files describe one consistent run.
  MetricsLog(const std::string& run_dir, std::vector<std::string> csv_columns,
             int64_t keep_until_step = -1);
  // Writes the row to the JSONL file; rows with "type" == "train" also go to the CSV.
  void write(const nlohmann::json& row);

 private:
  std::vector<std::string> columns_;
  std::ofstream jsonl_, csv_;
};

}  // namespace fluxtrain
