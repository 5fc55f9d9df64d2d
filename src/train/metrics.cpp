// Metrics files (see metrics.h).
#include "train/metrics.h"

#include <filesystem>

#include "core/errors.h"

namespace fluxtrain {
namespace fs = std::filesystem;

static void truncate_after(const fs::path& path, int64_t step, bool csv) {
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::vector<std::string> keep;
  std::string line;
  bool header = csv;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (header) {
      keep.push_back(line);
      header = false;
      continue;
    }
    int64_t s = -1;
    if (csv) {
      const std::string first = line.substr(0, line.find(','));
      char* end = nullptr;
      s = std::strtoll(first.c_str(), &end, 10);
      if (first.empty() || *end != '\0')
        user_error("{}: row '{}' does not start with a step number (edit or remove the file)",
                   path.string(), line.substr(0, 60));
    } else {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("step")) s = j["step"].get<int64_t>();
    }
    if (s <= step) keep.push_back(line);
  }
  in.close();
  auto tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& l : keep) out << l << "\n";
  }
  fs::rename(tmp, path);
}

MetricsLog::MetricsLog(const std::string& run_dir, std::vector<std::string> csv_columns,
                       int64_t keep_until_step)
    : columns_(std::move(csv_columns)) {
  fs::path jl = fs::path(run_dir) / "metrics.jsonl", cv = fs::path(run_dir) / "metrics.csv";
  if (keep_until_step >= 0) {
    truncate_after(jl, keep_until_step, false);
    truncate_after(cv, keep_until_step, true);
  }
  const bool new_csv = !fs::exists(cv) || fs::file_size(cv) == 0;
  jsonl_.open(jl, std::ios::app);
  csv_.open(cv, std::ios::app);
  if (!jsonl_ || !csv_) user_error("run directory '{}': cannot write metrics files", run_dir);
  if (new_csv) {
    for (size_t i = 0; i < columns_.size(); ++i) csv_ << (i ? "," : "") << columns_[i];
    csv_ << "\n";
    csv_.flush();
  }
}

void MetricsLog::write(const nlohmann::json& row) {
  jsonl_ << row.dump() << "\n";
  jsonl_.flush();
  if (row.value("type", "") != "train") return;
  for (size_t i = 0; i < columns_.size(); ++i) {
    if (i) csv_ << ",";
    auto it = row.find(columns_[i]);
    if (it == row.end() || it->is_null()) continue;
    if (it->is_number_float())
      csv_ << fmt::format("{:.6g}", it->get<double>());
    else if (it->is_string())
      csv_ << it->get<std::string>();
    else
      csv_ << it->dump();
  }
  csv_ << "\n";
  csv_.flush();
}

}  // namespace fluxtrain
