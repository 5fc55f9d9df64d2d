// `fluxtrain bench`: a sweep of training or sampling points -> runs_summary.csv, results.json and
// report.html in <output_dir>/<name>/<id>/ (see src/bench/ and docs/benchmarks.md).
#include <cstdio>

#include "bench/bench.h"
#include "bench/data_point.h"
#include "bench/sweep.h"
#include "bench/train_point.h"
#include "cli/commands.h"
#include "core/errors.h"
#include "train/train_config.h"

namespace fluxtrain {

static void print_bench_help() {
  std::printf(
      "usage: fluxtrain bench --config sweep.yaml [--key value|v1,v2,... ...]\n"
      "\n"
      "A sweep file is a flat YAML mapping. A key with one value is the same at every point; a "
      "key\n"
      "with a list ([1, 2, 4]) is an axis of the grid, and every combination of the axes is a "
      "point.\n"
      "On the command line, --key v1,v2 is a list; flags replace the file's keys.\n"
      "Train mode: any key of `fluxtrain train` (see `fluxtrain train --help`): method full,\n"
      "  lora or controlnet (controlnet needs control_images), blocks_to_swap, the savers;\n"
      "  gradient_checkpointing is train's key (activation checkpointing). Each point is a fresh\n"
      "  `fluxtrain train` process with steps = warmup + measured, no checkpoints, validation or\n"
      "  evaluation; an out-of-memory point is recorded as oom and the sweep goes on.\n"
      "  --profile_steps N (a train key) adds N steps after the measured ones, profiled with\n"
      "  libtorch's profiler: points/<point>/profile.txt (top 15 ops) and profile.csv (every op),\n"
      "  and a table per point in report.html; the profiled steps are not in the timings.\n"
      "Sample mode: the keys below under model, sampling and run; generation is timed in-process.\n"
      "Data mode: the last keys below (data, run); each point writes its own images (and cache) "
      "and\n"
      "  times the loader's batches (decode, cache) or whole prepares in-process.\n"
      "%s%s\ndata mode:\n%s",
      bench_schema().help().c_str(), sample_bench_schema().help().c_str(),
      data_bench_schema().help().c_str());
}

int cmd_bench(const Args& args) {
  const auto entries = parse_bench_args(args);
  if (!entries) {
    print_bench_help();
    return 0;
  }
  bool has_config = false;
  for (const auto& a : args) has_config |= a == "--config" || a.rfind("--config=", 0) == 0;
  if (!has_config && entries->empty())
    user_error("--config: give a sweep file (see fluxtrain bench --help)");
  const SweepSpec spec = make_sweep(*entries);
  if (spec.bench.b("dry_run")) {  // the points and what each would run
    const auto points = expand_grid(spec);
    for (const auto& p : points) {
      std::string line = p.name + ":";
      if (spec.mode == "train") {
        line += " fluxtrain";
        for (const auto& a : train_point_args(spec, p, "<bench dir>/points")) line += " " + a;
      } else {
        for (const auto& [k, v] : p.settings) line += " " + k + "=" + v;
      }
      std::printf("%s\n", line.c_str());
    }
    std::printf("%zu point(s), mode %s\n", points.size(), spec.mode.c_str());
    return 0;
  }
  std::string command = "fluxtrain bench";
  for (const auto& a : args) command += " " + a;
  install_bench_stop_handlers();
  const BenchResults r = run_bench(spec, {"", command});
  int ok = 0;
  for (const auto& p : r.points) ok += p.status == "ok";
  std::printf("bench: %s\n", r.dir.c_str());
  std::printf("points: %zu, ok: %d\n", r.points.size(), ok);
  std::printf("report: %s/report.html\n", r.dir.c_str());
  return 0;
}

}  // namespace fluxtrain
