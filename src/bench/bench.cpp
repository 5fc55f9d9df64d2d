// The sweep runner (see bench.h).
#include "bench/bench.h"

#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <filesystem>

#include "bench/data_point.h"
#include "bench/outputs.h"
#include "bench/sample_point.h"
#include "bench/subprocess.h"
#include "bench/train_point.h"
#include "core/log.h"
#include "train/run_directory.h"
#include "train/train_config.h"

namespace fluxtrain {
namespace fs = std::filesystem;

namespace {
std::atomic<int> g_bench_stop{0};
extern "C" void on_bench_stop(int sig) {
  if (g_bench_stop.fetch_add(1) >= 1) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

std::string outcome_line(const PointResult& p) {
  if (!p.figures) return fmt::format("{}{}", p.status, p.error.empty() ? "" : ": " + p.error);
  const auto& f = *p.figures;
  return fmt::format(
      "ok, {:.4g} images/s, p50 {:.1f} ms, p99 {:.1f} ms{}{}", f.images_per_s_per_device,
      f.time_ms.p50, f.time_ms.p99, f.mfu ? fmt::format(", MFU {:.1f} %", 100 * *f.mfu) : "",
      f.peak_memory_bytes ? fmt::format(", peak {:.2f} GiB",
                                        static_cast<double>(*f.peak_memory_bytes) / (1ull << 30))
                          : "");
}
}  // namespace

void install_bench_stop_handlers() {
  std::signal(SIGINT, on_bench_stop);
  std::signal(SIGTERM, on_bench_stop);
}

BenchResults run_bench(const SweepSpec& spec, const BenchOptions& options) {
  g_bench_stop = 0;
  BenchResults r;
  r.spec = spec;
  r.command = options.command;
  r.dir = create_run_dir(spec.bench.s("output_dir"), spec.bench.s("name"));
  r.id = fs::path(r.dir).filename().string();
  r.env = collect_environment();
  const std::string binary = options.binary.empty() ? self_executable() : options.binary;
  const auto points = expand_grid(spec);
  for (const auto& p : points) {
    PointResult pr;
    pr.point = p;
    pr.columns = resolve_columns(spec, p);
    r.points.push_back(std::move(pr));
  }
  log_info("bench {}: {} point(s), mode {}, outputs in {}", r.id, points.size(), spec.mode, r.dir);
  write_bench_outputs(r);
  for (size_t i = 0; i < points.size(); ++i) {
    if (g_bench_stop > 0) {
      r.points[i].status = point_status::kSkipped;
      continue;
    }
    log_info("point {}/{} {}", i + 1, points.size(), points[i].name);
    if (spec.mode == "train")
      r.points[i] = run_train_point(spec, points[i], r.env, binary, r.dir);
    else if (spec.mode == "data")
      r.points[i] = run_data_point(spec, points[i], r.env, r.dir);
    else
      r.points[i] = run_sample_point(spec, points[i], r.env);
    if (r.points[i].status == point_status::kInterrupted) g_bench_stop = 1;
    log_info("point {}/{} {}: {}", i + 1, points.size(), points[i].name, outcome_line(r.points[i]));
    write_bench_outputs(r);
  }
  write_bench_outputs(r);
  return r;
}

}  // namespace fluxtrain
