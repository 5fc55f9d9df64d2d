// Training points as child processes (see train_point.h).
#include "bench/train_point.h"

#include <c10/util/Exception.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bench/flops.h"
#include "core/errors.h"
#include "core/strings.h"
#include "model/presets.h"

namespace fluxtrain {
namespace fs = std::filesystem;

std::vector<std::string> train_point_args(const SweepSpec& spec, const SweepPoint& point,
                                          const std::string& points_dir) {
  const auto pending = pending_keys("train");
  std::vector<std::string> args = {"train"};
  for (const auto& [k, v] : train_point_defaults())
    if (setting(point, k).empty()) args.push_back(fmt::format("--{}={}", k, v));
  for (const auto& [k, v] : point.settings) {
    const bool is_pending = std::any_of(pending.begin(), pending.end(), [&](const PendingKey& p) {
      return p.name == k && (!p.in_run_schema || p.is_not_built(v));
    });
    if (!is_pending) args.push_back(fmt::format("--{}={}", k, v));
  }
  // Profiled steps (profile_steps: the run's last N) come after the measured ones, which their
  // profiler overhead would otherwise slow down.
  const std::string profile = setting(point, "profile_steps");
  const int64_t steps = spec.bench.i("warmup") + spec.bench.i("measured") +
                        (profile.empty() ? 0 : std::stoll(profile));
  args.insert(args.end(),
              {fmt::format("--steps={}", steps), "--save_checkpoints=false", "--val_samples=0",
               "--final_eval=none", fmt::format("--output_dir={}", points_dir),
               fmt::format("--name={}", point.name)});
  return args;
}

static std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool is_out_of_memory_text(const std::string& text) {
  const std::string t = lower(text);
  for (const char* marker : {"out of memory", "can't allocate memory", "cannot allocate memory",
                             "std::bad_alloc", "outofmemoryerror"})
    if (t.find(marker) != std::string::npos) return true;
  return false;
}

std::string last_error_line(const std::string& log_text) {
  std::istringstream in(log_text);
  std::string line, last, last_error;
  while (std::getline(in, line)) {
    line = trim_whitespace(line);
    if (line.empty() || line[0] == '#') continue;  // '#': our own header line
    last = line;
    const std::string l = lower(line);
    if (l.find("error") != std::string::npos || is_out_of_memory_text(l)) last_error = line;
  }
  std::string out = last_error.empty() ? last : last_error;
  if (out.size() > 300) out = out.substr(0, 297) + "...";
  return out;
}

std::pair<std::string, std::string> classify_failure(const ProcessOutcome& o,
                                                     const std::string& log_text) {
  const std::string why = last_error_line(log_text);
  if (o.timed_out)
    return {point_status::kTimeout,
            fmt::format("stopped after {:.0f} s (point_timeout_s)", o.seconds)};
  if (is_out_of_memory_text(log_text)) return {point_status::kOom, why};
  if (!o.exited) {
    if (o.signal == 9)
      return {point_status::kOom, "killed by SIGKILL (the kernel's out-of-memory killer sends it)"};
    return {point_status::kFailed,
            "killed by " + signal_name(o.signal) + (why.empty() ? "" : ": " + why)};
  }
  if (o.exit_code == 130) return {point_status::kInterrupted, "interrupted"};
  return {point_status::kFailed, why.empty() ? fmt::format("exit code {}", o.exit_code)
                                             : fmt::format("exit code {}: {}", o.exit_code, why)};
}

std::vector<double> measured_step_ms(const std::string& metrics_jsonl, int64_t warmup) {
  std::ifstream in(metrics_jsonl);
  std::vector<std::pair<int64_t, double>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (trim_whitespace(line).empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) continue;  // a line cut short by a crash
    if (j.value("type", "") != "train" || !j.contains("step_ms")) continue;
    if (j.value("profiled", false)) continue;  // slowed down by the profiler
    const int64_t step = j.value("step", int64_t{0});
    if (step > warmup) rows.emplace_back(step, j["step_ms"].get<double>());
  }
  std::sort(rows.begin(), rows.end());
  std::vector<double> out;
  for (const auto& r : rows) out.push_back(r.second);
  return out;
}

static std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The run directory the child created under <points_dir>/<name>/ (the newest, if several).
static std::string find_run_dir(const fs::path& point_dir) {
  std::string best;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(point_dir, ec))
    if (e.is_directory() && fs::exists(e.path() / "config.yaml") && e.path().string() > best)
      best = e.path().string();
  return best;
}

PointResult run_train_point(const SweepSpec& spec, const SweepPoint& point, const Environment& env,
                            const std::string& binary, const std::string& bench_dir) {
  PointResult r;
  r.point = point;
  r.columns = resolve_columns(spec, point);
  const ModelPreset preset = model_preset(r.column("model"));
  const int64_t resolution = std::stoll(r.column("resolution"));
  r.image_tokens = image_tokens_for(preset, resolution);
  r.text_tokens = preset.max_text_tokens;

  for (const auto& pk : pending_keys("train")) {
    const std::string v = setting(point, pk.name);
    if (!v.empty() && pk.is_not_built(v)) {
      r.status = point_status::kUnsupported;
      r.error =
          fmt::format("{}={}: {} not implemented yet in fluxtrain train", pk.name, v, pk.what);
      return r;
    }
  }

  const fs::path points_dir = fs::path(bench_dir) / "points";
  const fs::path point_dir = points_dir / point.name;
  fs::create_directories(point_dir);
  const fs::path log = point_dir / "output.log";
  r.log = fs::relative(log, bench_dir).string();
  std::vector<std::string> argv = {binary};
  for (auto& a : train_point_args(spec, point, points_dir.string())) argv.push_back(std::move(a));
  {
    std::string cmd = "#";
    for (const auto& a : argv) cmd += " " + a;
    std::ofstream(log) << cmd << "\n";
  }
  const double limit_gb = spec.bench.f("memory_limit_gb");
  const ProcessOutcome o =
      run_process(argv, log.string(), static_cast<double>(spec.bench.i("point_timeout_s")),
                  static_cast<int64_t>(limit_gb * 1024.0 * 1024.0 * 1024.0));
  r.seconds = o.seconds;
  const std::string run_dir = find_run_dir(point_dir);
  if (!run_dir.empty()) r.run_dir = fs::relative(run_dir, bench_dir).string();
  nlohmann::json summary;
  if (!run_dir.empty() && fs::exists(fs::path(run_dir) / "summary.json"))
    summary = nlohmann::json::parse(read_text(fs::path(run_dir) / "summary.json"), nullptr, false);
  if (summary.is_object()) {
    r.device = summary.value("device", "");
    r.device_name = env.device_name(r.device);
  }
  if (!(o.exited && o.exit_code == 0)) {
    std::tie(r.status, r.error) = classify_failure(o, read_text(log));
    return r;
  }
  const int64_t measured = spec.bench.i("measured");
  const auto times = run_dir.empty()
                         ? std::vector<double>{}
                         : measured_step_ms((fs::path(run_dir) / "metrics.jsonl").string(),
                                            spec.bench.i("warmup"));
  if (static_cast<int64_t>(times.size()) != measured || !summary.is_object()) {
    r.status = point_status::kFailed;
    r.error =
        fmt::format("the run finished but its metrics.jsonl has {} of {} measured steps{}",
                    times.size(), measured, summary.is_object() ? "" : " and no summary.json");
    return r;
  }

  FigureInputs in;
  in.times_ms = times;
  in.images_per_iteration = std::stoll(r.column("batch_size")) * std::stoll(r.column("grad_accum"));
  in.tokens_per_image = r.image_tokens + r.text_tokens;
  in.model_flops_per_image = training_flops_per_image(preset, resolution);
  in.peak_tflops = spec.bench.f("peak_tflops") > 0
                       ? std::optional<double>(spec.bench.f("peak_tflops"))
                       : datasheet_peak_tflops(r.device_name, r.column("precision"));
  in.price_per_hour = spec.bench.f("price_per_hour");
  r.figures = compute_figures(in);
  if (summary.contains("cuda_peak_allocated_bytes")) {
    r.figures->peak_memory_bytes = summary["cuda_peak_allocated_bytes"].get<int64_t>();
    r.figures->peak_memory_kind = "cuda_allocated";
    if (summary.contains("cuda_peak_reserved_bytes"))
      r.figures->cuda_peak_reserved_bytes = summary["cuda_peak_reserved_bytes"].get<int64_t>();
  } else if (summary.contains("peak_rss_bytes")) {
    r.figures->peak_memory_bytes = summary["peak_rss_bytes"].get<int64_t>();
    r.figures->peak_memory_kind = "rss";
  }
  if (summary.contains("predicted_peak_bytes"))
    r.figures->predicted_peak_bytes = summary["predicted_peak_bytes"].get<int64_t>();
  // profile_steps: profile.txt and profile.csv next to the point's output.log.
  if (fs::exists(fs::path(run_dir) / "profile.txt")) {
    std::error_code ec;
    for (const char* f : {"profile.txt", "profile.csv"})
      fs::copy_file(fs::path(run_dir) / f, point_dir / f, fs::copy_options::overwrite_existing, ec);
    r.profile = fs::relative(point_dir / "profile.txt", bench_dir).string();
    r.profile_table = read_text(fs::path(run_dir) / "profile.txt");
  }
  r.status = point_status::kOk;
  return r;
}

void record_point_exception(PointResult& r) {
  try {
    throw;
  } catch (const UserError& e) {
    r.status = point_status::kFailed;
    r.error = e.what();
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    r.status = is_out_of_memory_text(msg) ? point_status::kOom : point_status::kFailed;
    r.error = last_error_line(msg);
  } catch (const std::bad_alloc&) {
    r.status = point_status::kOom;
    r.error = "std::bad_alloc";
  } catch (const std::exception& e) {
    r.status = is_out_of_memory_text(e.what()) ? point_status::kOom : point_status::kFailed;
    r.error = last_error_line(e.what());
  }
}

}  // namespace fluxtrain
