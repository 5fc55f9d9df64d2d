// runs_summary.csv (see csv_report.h).
#include "bench/csv_report.h"

#include <fmt/format.h>

namespace fluxtrain {

static std::vector<std::string> figure_columns(const std::string& mode) {
  const std::string t = mode == "train" ? "step_ms" : mode == "data" ? "batch_ms" : "latency_ms";
  return {"measured",
          "images_per_s",
          "images_per_s_per_device",
          t + "_mean",
          t + "_p50",
          t + "_p90",
          t + "_p99",
          "tokens_per_s",
          "model_tflops",
          "peak_tflops",
          "mfu",
          "peak_memory_gib",
          "peak_memory_kind",
          "predicted_peak_gib",
          "cost_per_1k_images"};
}

std::vector<std::string> csv_columns(const BenchResults& results) {
  std::vector<std::string> cols = {"point", "status"};
  for (const auto& c : setting_columns(results.spec)) cols.push_back(c);
  cols.push_back("device_name");
  for (const auto& c : figure_columns(results.spec.mode)) cols.push_back(c);
  cols.push_back("error");
  return cols;
}

static std::string num(double v) {
  return fmt::format("{:.6g}", v);
}

std::vector<std::vector<std::string>> csv_rows(const BenchResults& results) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : results.points) {
    std::vector<std::string> row = {p.point.name, p.status};
    for (const auto& c : setting_columns(results.spec)) row.push_back(p.column(c));
    row.push_back(p.device_name.empty() ? p.device : p.device_name);
    if (p.figures) {
      const auto& f = *p.figures;
      auto opt = [](const std::optional<double>& o) { return o ? num(*o) : std::string(); };
      for (const auto& v :
           {std::to_string(f.time_ms.count), num(f.images_per_s), num(f.images_per_s_per_device),
            num(f.time_ms.mean), num(f.time_ms.p50), num(f.time_ms.p90), num(f.time_ms.p99),
            num(f.tokens_per_s), num(f.model_tflops), opt(f.peak_tflops), opt(f.mfu),
            f.peak_memory_bytes
                ? fmt::format("{:.3f}", static_cast<double>(*f.peak_memory_bytes) / (1ull << 30))
                : std::string(),
            f.peak_memory_kind,
            f.predicted_peak_bytes
                ? fmt::format("{:.3f}", static_cast<double>(*f.predicted_peak_bytes) / (1ull << 30))
                : std::string(),
            opt(f.cost_per_1k_images)})
        row.push_back(v);
    } else {
      for (size_t i = 0; i < figure_columns(results.spec.mode).size(); ++i) row.emplace_back();
    }
    row.push_back(p.error);
    rows.push_back(std::move(row));
  }
  return rows;
}

static std::string cell(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string csv_text(const BenchResults& results) {
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) out += (i ? "," : "") + cell(cells[i]);
    out += "\n";
  };
  line(csv_columns(results));
  for (const auto& r : csv_rows(results)) line(r);
  return out;
}

}  // namespace fluxtrain
