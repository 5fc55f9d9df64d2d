// report.html (see html_report.h).
#include "bench/html_report.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "io/svg_chart.h"

namespace fluxtrain {
namespace {

std::string esc(const std::string& s) {
  return html_escape(s);
}

std::string gib(int64_t bytes) {
  return fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1ull << 30));
}

// Setting columns whose value differs between points (what the charts' series are made of).
std::vector<std::string> varying_columns(const BenchResults& r) {
  std::vector<std::string> out;
  for (const auto& c : setting_columns(r.spec)) {
    std::set<std::string> values;
    for (const auto& p : r.points) values.insert(p.column(c));
    if (values.size() > 1) out.push_back(c);
  }
  return out;
}

std::string short_value(const std::string& key, const std::string& v) {
  if (key == "resolution") return v + " px";
  if (key == "batch_size") return "batch " + v;
  if (key == "gradient_checkpointing") return v == "true" ? "checkpointing" : "no checkpointing";
  if (key == "precision" || key == "model" || key == "method") return v;
  return key + " " + v;
}

// Charts of `value` against batch size: one chart per model (and method), one series per
// combination of the other varying settings.
std::string charts(const BenchResults& r, const std::string& what, const std::string& y_label,
                   const std::function<std::optional<double>(const PointResult&)>& value) {
  const auto vary = varying_columns(r);
  std::map<std::string, std::map<std::string, ChartSeries>>
      by_chart;  // chart -> series label -> series
  std::vector<std::string> chart_order;
  std::map<std::string, std::vector<std::string>> series_order;
  for (const auto& p : r.points) {
    std::string chart = p.column("model");
    if (!p.column("method").empty() && p.column("method") != "full")
      chart += " " + p.column("method");
    std::string label;
    for (const auto& c : vary) {
      if (c == "batch_size" || c == "model" || c == "method") continue;
      label += (label.empty() ? "" : " \xc2\xb7 ") + short_value(c, p.column(c));
    }
    if (label.empty())
      label =
          p.column("precision") + " \xc2\xb7 " + short_value("resolution", p.column("resolution"));
    if (!by_chart.count(chart)) chart_order.push_back(chart);
    auto& series = by_chart[chart];
    if (!series.count(label)) series_order[chart].push_back(label);
    ChartSeries& s = series[label];
    s.label = label;
    double x = 0;
    try {
      x = std::stod(p.column("batch_size"));
    } catch (const std::exception&) {
      continue;
    }
    const auto v = p.status == point_status::kOk ? value(p) : std::nullopt;
    if (v)
      s.points.emplace_back(x, *v);
    else if (p.status != point_status::kOk)
      s.missing.emplace_back(x, p.status + (p.error.empty() ? "" : ": " + p.error));
  }
  std::string out;
  for (const auto& chart : chart_order) {
    ChartSpec spec;
    spec.title = what + " \xe2\x80\x94 " + chart;
    spec.x_label = r.spec.mode == "train"  ? "batch size (images per step)"
                   : r.spec.mode == "data" ? "batch size (examples per batch)"
                                           : "batch size (images per generation)";
    spec.y_label = y_label;
    for (const auto& label : series_order[chart]) spec.series.push_back(by_chart[chart][label]);
    out += "<figure>" + svg_line_chart(spec) + "</figure>\n";
  }
  return out;
}

std::string fmt_opt(const std::optional<double>& v, const char* f) {
  return v ? fmt::format(fmt::runtime(f), *v) : std::string("\xe2\x80\x94");
}

}  // namespace

std::string report_html(const BenchResults& r) {
  const bool train = r.spec.mode == "train";
  const Config& b = r.spec.bench;
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += fmt::format("<title>fluxtrain bench {}</title>\n", esc(r.id));
  h += R"(<style>
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1280px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.sub { color: #555; margin-top: 0; }
figure { display: inline-block; margin: 8px 16px 8px 0; vertical-align: top; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
tr.oom td { background: #fdecea; } tr.failed td, tr.timeout td { background: #fff4e0; }
tr.unsupported td, tr.skipped td, tr.interrupted td { background: #f1f1f1; color: #666; }
.note { color: #555; font-size: 13px; max-width: 900px; }
.scroll { overflow-x: auto; } td.name { white-space: nowrap; text-align: left; }
li { font-size: 13px; margin: 2px 0; }
</style>
</head>
<body>
)";
  std::map<std::string, int> counts;
  for (const auto& p : r.points) counts[p.status]++;
  std::string count_text;
  for (const auto& [k, v] : counts)
    count_text += fmt::format("{}{} {}", count_text.empty() ? "" : ", ", v, k);
  std::string device = r.env.gpus.empty() ? "CPU: " + r.env.cpu_model : r.env.gpus[0].name;
  for (const auto& p : r.points)
    if (!p.device_name.empty()) {
      device = p.device_name;
      break;
    }
  h += fmt::format("<h1>fluxtrain bench \xe2\x80\x94 {} ({})</h1>\n", esc(r.id),
                   train ? "training" : "sampling");
  h += fmt::format(
      "<p class=\"sub\">{} \xc2\xb7 {} points: {} \xc2\xb7 warm-up {}, measured {} {} per point "
      "\xc2\xb7 {}</p>\n",
      esc(device), r.points.size(), esc(count_text), b.i("warmup"), b.i("measured"),
      train ? "steps" : "generations", esc(r.env.started_at));

  // Best point.
  const PointResult* best = nullptr;
  for (const auto& p : r.points)
    if (p.figures &&
        (!best || p.figures->images_per_s_per_device > best->figures->images_per_s_per_device))
      best = &p;
  if (best)
    h += fmt::format(
        "<p>Highest throughput: <b>{:.4g} images/s per device</b> at {} ({}){}.</p>\n",
        best->figures->images_per_s_per_device, esc(best->point.name),
        esc(best->column("precision") + ", " + best->column("resolution") + " px, batch " +
            best->column("batch_size")),
        best->figures->mfu ? fmt::format(", MFU {:.1f} %", 100 * *best->figures->mfu) : "");

  h += "<h2>Charts</h2>\n";
  h += charts(r, train ? "Images/s per device" : "Images/s", "images per second",
              [](const PointResult& p) -> std::optional<double> {
                return p.figures->images_per_s_per_device;
              });
  if (!train)
    h += charts(
        r, "Latency p50", "ms per generation",
        [](const PointResult& p) -> std::optional<double> { return p.figures->time_ms.p50; });
  h += charts(r, "Peak memory", "GiB", [](const PointResult& p) -> std::optional<double> {
    if (!p.figures->peak_memory_bytes) return std::nullopt;
    return static_cast<double>(*p.figures->peak_memory_bytes) / (1ull << 30);
  });
  bool any_mfu = false;
  for (const auto& p : r.points) any_mfu |= p.figures && p.figures->mfu.has_value();
  if (any_mfu)
    h += charts(r, "MFU", "% of peak", [](const PointResult& p) -> std::optional<double> {
      if (!p.figures->mfu) return std::nullopt;
      return 100 * *p.figures->mfu;
    });

  // Table.
  const auto vary = varying_columns(r);
  std::vector<std::string> shown = {"model", "precision", "resolution", "batch_size"};
  if (!train) shown.push_back("steps");
  for (const auto& c : vary)
    if (std::find(shown.begin(), shown.end(), c) == shown.end()) shown.push_back(c);
  const std::string t = train ? "step" : "latency";
  h += "<h2>Points</h2>\n<div class=\"scroll\"><table>\n<tr><th class=\"l\">point</th><th "
       "class=\"l\">status</th>";
  for (const auto& c : shown) h += "<th class=\"l\">" + esc(c) + "</th>";
  h += fmt::format(
      "<th>images/s per device</th><th>{0} ms mean</th><th>{0} ms p50</th><th>{0} ms p90</th>"
      "<th>{0} ms p99</th><th>tokens/s</th><th>TFLOP/s</th><th>MFU</th><th>peak memory</th>"
      "<th>predicted</th><th>$ per 1k images</th></tr>\n",
      t);
  for (const auto& p : r.points) {
    h += fmt::format("<tr class=\"{}\"><td class=\"name\">{}</td><td class=\"l\">{}</td>",
                     esc(p.status), esc(p.point.name), esc(p.status));
    for (const auto& c : shown) h += "<td class=\"l\">" + esc(p.column(c)) + "</td>";
    if (p.figures) {
      const auto& f = *p.figures;
      h += fmt::format(
          "<td>{:.4g}</td><td>{:.1f}</td><td>{:.1f}</td><td>{:.1f}</td><td>{:.1f}</td>"
          "<td>{:.4g}</td><td>{:.3g}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
          f.images_per_s_per_device, f.time_ms.mean, f.time_ms.p50, f.time_ms.p90, f.time_ms.p99,
          f.tokens_per_s, f.model_tflops,
          f.mfu ? fmt::format("{:.1f} %", 100 * *f.mfu) : "\xe2\x80\x94",
          f.peak_memory_bytes
              ? gib(*f.peak_memory_bytes) + (f.peak_memory_kind == "rss" ? " (RSS)" : "")
              : "\xe2\x80\x94",
          f.predicted_peak_bytes ? gib(*f.predicted_peak_bytes) : "\xe2\x80\x94",
          fmt_opt(f.cost_per_1k_images, "{:.4g}"));
    } else {
      for (int i = 0; i < 11; ++i) h += "<td></td>";
    }
    h += "</tr>\n";
  }
  h += "</table></div>\n";
  std::string problems;
  for (const auto& p : r.points)
    if (p.status != point_status::kOk && !p.error.empty())
      problems += fmt::format("<li><b>{}</b> ({}): {}</li>\n", esc(p.point.name), esc(p.status),
                              esc(p.error));
  if (!problems.empty()) h += "<h3>Points that did not run</h3>\n<ul>\n" + problems + "</ul>\n";
  h += fmt::format(
      "<p class=\"note\">Images/s = images per {0} \xc3\x97 measured {0}s / their total time "
      "(warm-up excluded). "
      "TFLOP/s counts model FLOPs: {1}. MFU = TFLOP/s / peak ({2}). Peak memory is the CUDA "
      "caching allocator's "
      "allocated peak on a GPU and the peak resident set (RSS) on a CPU; predicted is the "
      "run's memory plan (arithmetic over the shapes, without the process's own libraries). "
      "Details: "
      "docs/benchmarks.md.</p>\n",
      train ? "step" : "generation",
      train ? "3 \xc3\x97 the forward pass per image (DESIGN \xc2\xa7"
              "8)"
            : "steps \xc3\x97 the forward pass per image (\xc3\x97 2 with CFG)",
      b.f("peak_tflops") > 0 ? fmt::format("{} TFLOP/s, given", b.f("peak_tflops"))
                             : "datasheet, dense; empty when unknown");

  // profile_steps: each point's top-15 ops from libtorch's profiler.
  std::string profiles;
  for (const auto& p : r.points)
    if (!p.profile_table.empty())
      profiles += fmt::format("<details><summary><b>{}</b> ({})</summary><pre>{}</pre></details>\n",
                              esc(p.point.name), esc(p.profile), esc(p.profile_table));
  if (!profiles.empty())
    h += "<h2>Where the time goes</h2>\n<p class=\"note\">libtorch's profiler over the last "
         "profile_steps steps of each point (after the measured steps, which they do not "
         "affect); self time excludes the ops nested in an op. Every op: profile.csv beside "
         "profile.txt.</p>\n" +
         profiles;

  // Environment and settings.
  h += "<h2>Environment</h2>\n<table>\n";
  auto row = [&](const std::string& k, const std::string& v) {
    h += "<tr><th class=\"l\">" + esc(k) + "</th><td class=\"l\">" + esc(v) + "</td></tr>\n";
  };
  for (const auto& g : r.env.gpus)
    row(fmt::format("GPU {}", g.index), fmt::format("{} ({} MiB)", g.name, g.memory_mib));
  row("NVIDIA driver", r.env.driver.empty() ? "\xe2\x80\x94" : r.env.driver);
  row("CUDA (driver / runtime)",
      (r.env.cuda_driver.empty() ? "\xe2\x80\x94" : r.env.cuda_driver) + " / " +
          (r.env.cuda_runtime.empty() ? "\xe2\x80\x94" : r.env.cuda_runtime));
  row("CPU", fmt::format("{} ({} cores)", r.env.cpu_model, r.env.cpu_cores));
  row("memory", gib(r.env.memory_bytes));
  row("libtorch", r.env.libtorch);
  row("fluxtrain commit", r.env.fluxtrain_commit);
  row("host / OS", r.env.hostname + " / " + r.env.os);
  row("started", r.env.started_at);
  h += "</table>\n<h2>Bench settings</h2>\n<table>\n";
  row("command", r.command);
  row("mode", r.spec.mode);
  row(train ? "steps" : "generations",
      fmt::format("{} warm-up + {} measured", b.i("warmup"), b.i("measured")));
  for (const auto& a : r.spec.axes) {
    std::string vs;
    for (const auto& v : a.values) vs += (vs.empty() ? "" : ", ") + v;
    row(a.key + " (axis)", vs);
  }
  for (const auto& [k, v] : r.spec.fixed) row(k, v);
  if (train)
    for (const auto& [k, v] : train_point_defaults()) row(k + " (bench default)", v);
  row("price per device-hour",
      b.f("price_per_hour") > 0 ? fmt::format("{}", b.f("price_per_hour")) : "\xe2\x80\x94");
  row("peak TFLOP/s",
      b.f("peak_tflops") > 0 ? fmt::format("{} (given)", b.f("peak_tflops")) : "datasheet table");
  h += "</table>\n</body>\n</html>\n";
  return h;
}

}  // namespace fluxtrain
