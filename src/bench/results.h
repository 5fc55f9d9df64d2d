// What a benchmark produced: one PointResult per grid point (status, settings, figures) and the
// bench around them (spec, environment), as the reports and results.json see them.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bench/environment.h"
#include "bench/figures.h"
#include "bench/sweep.h"

namespace fluxtrain {

// ok: measured. oom: out of memory (CUDA/CPU allocator message, or killed by SIGKILL, which is
// what the kernel's OOM killer sends). failed: any other error (see `error`). unsupported: asks
// for a feature that does not exist yet (not run). timeout: killed at point_timeout_s.
// interrupted: stopped by Ctrl-C. skipped: not reached because the sweep was stopped.
namespace point_status {
inline const std::string kOk = "ok", kOom = "oom", kFailed = "failed", kUnsupported = "unsupported",
                         kTimeout = "timeout", kInterrupted = "interrupted", kSkipped = "skipped",
                         kPending = "pending";
}

struct PointResult {
  SweepPoint point;
  Settings columns;  // resolved values of the report's setting columns (resolution 0 -> preset's)
  std::string status = point_status::kPending;
  std::string error;                // one line: why it is not ok
  std::string device, device_name;  // "cuda:0", "NVIDIA H100 80GB HBM3"
  std::string run_dir, log;         // relative to the bench directory
  double seconds = 0;               // wall time of the whole point (start-up included)
  int64_t image_tokens = 0, text_tokens = 0;
  std::optional<PointFigures> figures;
  std::string profile;        // profile.txt (profile_steps), relative to the bench directory
  std::string profile_table;  // its text: the top-15 ops (report.html)

  std::string column(const std::string& key) const;  // "" when absent
  nlohmann::json to_json() const;
};

struct BenchResults {
  std::string id, dir;  // runs/bench/<id>
  std::string command;  // the command line
  SweepSpec spec;
  Environment env;
  std::vector<PointResult> points;
};

// The setting columns of a sweep: the keys every report shows for its mode (model, precision,
// batch size, resolution, ...), then the axes and fixed keys not among them.
std::vector<std::string> setting_columns(const SweepSpec& spec);
// Their values at one point, resolved against the run schema's defaults and the preset.
Settings resolve_columns(const SweepSpec& spec, const SweepPoint& point);

}  // namespace fluxtrain
