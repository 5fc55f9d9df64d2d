// runs_summary.csv, results.json and report.html from hand-made results.
#include <gtest/gtest.h>

#include <sstream>

#include "bench/csv_report.h"
#include "bench/html_report.h"
#include "bench/json_report.h"
#include "io/svg_chart.h"

using namespace fluxtrain;

namespace {

BenchResults sample_results() {
  BenchResults r;
  r.id = "20260101-000000";
  r.dir = "/tmp/x";
  r.command = "fluxtrain bench --config s.yaml";
  r.spec = make_sweep(read_sweep_yaml_string(
      "model: flux-dev\nprecision: bf16\nresolution: [256, 512]\nbatch_size: [1, 2]\n", "s.yaml"));
  r.env.cpu_model = "Test CPU";
  r.env.libtorch = "9.9.9";
  r.env.gpus = {{0, "NVIDIA H100 80GB HBM3", "550.1", 81559}};
  for (const auto& p : expand_grid(r.spec)) {
    PointResult pr;
    pr.point = p;
    pr.columns = resolve_columns(r.spec, p);
    pr.device = "cuda:0";
    pr.device_name = "NVIDIA H100 80GB HBM3";
    if (p.index == 4) {
      pr.status = point_status::kOom;
      pr.error = "CUDA out of memory. Tried to allocate 2.00 GiB, \"GPU 0\" <limit>";
    } else {
      FigureInputs in;
      in.times_ms = {1000.0 * p.index, 1000.0 * p.index};
      in.images_per_iteration = std::stoll(pr.column("batch_size"));
      in.tokens_per_image = 768;
      in.model_flops_per_image = 1e13;
      in.peak_tflops = 989.0;
      in.price_per_hour = 2.0;
      pr.figures = compute_figures(in);
      pr.figures->peak_memory_bytes = int64_t{3} << 30;
      pr.figures->peak_memory_kind = "cuda_allocated";
      pr.status = point_status::kOk;
    }
    r.points.push_back(pr);
  }
  return r;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

}  // namespace

TEST(Reports, CsvHasOneRowPerPointWithSettingsAndFigures) {
  const auto r = sample_results();
  const auto cols = csv_columns(r);
  auto col = [&](const std::string& name) {
    auto it = std::find(cols.begin(), cols.end(), name);
    EXPECT_NE(it, cols.end()) << name;
    return static_cast<size_t>(it - cols.begin());
  };
  const auto rows = csv_rows(r);
  ASSERT_EQ(rows.size(), 4u);
  for (const auto& row : rows) ASSERT_EQ(row.size(), cols.size());
  // Point 2: 512 px? No: the last axis (batch_size) turns fastest -> (256, 2).
  EXPECT_EQ(rows[1][col("point")], "002-256px-bs2");
  EXPECT_EQ(rows[1][col("resolution")], "256");
  EXPECT_EQ(rows[1][col("batch_size")], "2");
  EXPECT_EQ(rows[1][col("precision")], "bf16");
  EXPECT_EQ(rows[1][col("status")], "ok");
  // 2 images per 2 s step -> 1 image/s; 1e13 FLOP x 1 / s = 10 TFLOP/s; MFU 10 / 989.
  EXPECT_EQ(rows[1][col("images_per_s")], "1");
  EXPECT_EQ(rows[1][col("step_ms_p50")], "2000");
  EXPECT_EQ(rows[1][col("model_tflops")], "10");
  EXPECT_EQ(rows[1][col("mfu")], fmt::format("{:.6g}", 10.0 / 989.0));
  EXPECT_EQ(rows[1][col("peak_memory_gib")], "3.000");
  EXPECT_EQ(rows[1][col("cost_per_1k_images")], fmt::format("{:.6g}", 2.0 / 3600 * 1000));
  EXPECT_EQ(rows[1][col("device_name")], "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(rows[3][col("status")], "oom");
  EXPECT_EQ(rows[3][col("images_per_s")], "");
  // The text: header + 4 rows; the error cell with a comma and quotes is quoted RFC 4180 style.
  const auto text = lines(csv_text(r));
  ASSERT_EQ(text.size(), 5u);
  EXPECT_EQ(text[0].rfind("point,status,model,method,precision", 0), 0u) << text[0];
  EXPECT_NE(
      text[4].find(",\"CUDA out of memory. Tried to allocate 2.00 GiB, \"\"GPU 0\"\" <limit>\""),
      std::string::npos)
      << text[4];
}

TEST(Reports, JsonHasBenchEnvironmentAndPoints) {
  const auto j = results_json(sample_results());
  EXPECT_EQ(j["bench"]["mode"], "train");
  EXPECT_EQ(j["bench"]["axes"].size(), 2u);
  EXPECT_EQ(j["bench"]["axes"][0]["key"], "resolution");
  EXPECT_EQ(j["bench"]["fixed"]["model"], "flux-dev");
  EXPECT_EQ(j["bench"]["status_counts"]["ok"], 3);
  EXPECT_EQ(j["bench"]["status_counts"]["oom"], 1);
  EXPECT_EQ(j["bench"]["point_defaults"]["lr_schedule"], "constant");
  EXPECT_EQ(j["environment"]["libtorch"], "9.9.9");
  EXPECT_EQ(j["environment"]["gpus"][0]["name"], "NVIDIA H100 80GB HBM3");
  ASSERT_EQ(j["points"].size(), 4u);
  const auto& p = j["points"][2];
  EXPECT_EQ(p["name"], "003-512px-bs1");
  EXPECT_EQ(p["settings"]["resolution"], "512");
  EXPECT_EQ(p["settings"]["gradient_checkpointing"], "false");
  EXPECT_DOUBLE_EQ(p["figures"]["images_per_s"].get<double>(), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(p["figures"]["time_ms"]["p99"].get<double>(), 3000.0);
  EXPECT_EQ(p["figures"]["peak_memory_kind"], "cuda_allocated");
  EXPECT_TRUE(j["points"][3]["figures"].is_null());
  EXPECT_EQ(j["points"][3]["status"], "oom");
}

TEST(Reports, HtmlIsSelfContainedWithChartsTableAndEnvironment) {
  const std::string h = report_html(sample_results());
  EXPECT_EQ(h.rfind("<!DOCTYPE html>", 0), 0u);
  for (const char* banned : {"<script", "<link", "src=", "url(", "@import", "https://"})
    EXPECT_EQ(h.find(banned), std::string::npos) << banned;
  // One chart per figure for the one model; a series per resolution (precision is fixed).
  EXPECT_NE(h.find("Images/s per device \xe2\x80\x94 flux-dev"), std::string::npos);
  EXPECT_NE(h.find("Peak memory \xe2\x80\x94 flux-dev"), std::string::npos);
  EXPECT_NE(h.find("MFU \xe2\x80\x94 flux-dev"), std::string::npos);
  EXPECT_NE(h.find(">256 px</text>"), std::string::npos);
  EXPECT_NE(h.find(">512 px</text>"), std::string::npos);
  // The OOM point is a cross with its reason, escaped.
  EXPECT_NE(h.find("<title>512 px: oom: CUDA out of memory. Tried to allocate 2.00 GiB, &quot;GPU "
                   "0&quot; &lt;limit&gt;</title>"),
            std::string::npos);
  EXPECT_NE(h.find("<tr class=\"oom\">"), std::string::npos);
  EXPECT_NE(h.find("NVIDIA H100 80GB HBM3"), std::string::npos);
  EXPECT_NE(h.find("9.9.9"), std::string::npos);
  EXPECT_NE(h.find("Highest throughput"), std::string::npos);
}

TEST(Reports, SvgChartAxesAndTicks) {
  EXPECT_DOUBLE_EQ(nice_step(58.5, 5), 20);  // raw 11.7 -> 20
  EXPECT_DOUBLE_EQ(nice_step(10, 5), 2);
  EXPECT_DOUBLE_EQ(nice_step(0.33, 5), 0.1);  // raw 0.066 -> 0.1
  EXPECT_DOUBLE_EQ(nice_step(12, 5), 2.5);    // raw 2.4 -> 2.5
  ChartSpec c;
  c.title = "t";
  c.series = {{"a", {{1, 10}, {4, 30}, {2, 20}}, {}}, {"b", {{1, 5}}, {{16, "oom"}}}};
  const std::string s = svg_line_chart(c);
  EXPECT_EQ(s.rfind("<svg", 0), 0u);
  EXPECT_NE(s.find("<polyline"), std::string::npos);
  // x ticks are the distinct batch sizes, evenly spaced: 1, 2, 4, 16.
  for (const char* t : {">1</text>", ">2</text>", ">4</text>", ">16</text>", ">30</text>"})
    EXPECT_NE(s.find(t), std::string::npos) << t;
  EXPECT_NE(s.find("<title>b: oom</title>"), std::string::npos);
}
