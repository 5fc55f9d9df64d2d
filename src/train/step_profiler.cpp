// Profiling a stretch of training steps (see step_profiler.h).
#include "train/step_profiler.h"

#include <filesystem>
#include <fstream>

#include "core/device.h"
#include "core/log.h"

namespace fluxtrain {
namespace fs = std::filesystem;

StepProfiler::StepProfiler(int64_t n, int64_t first_step, int64_t total_steps, torch::Device device,
                           std::string run_dir)
    : n_(n),
      from_(std::max(total_steps - n, first_step + (total_steps - first_step > 1 ? 1 : 0))),
      device_(device),
      run_dir_(std::move(run_dir)) {}

void StepProfiler::before_step(int64_t step) {
  if (n_ <= 0 || profiler_ || first_ != 0 || step < from_) return;
  first_ = step + 1;
  t0_ = std::chrono::steady_clock::now();
  profiler_ = std::make_unique<OpProfiler>(device_.is_cuda());
}

void StepProfiler::finish(int64_t last_step) {
  if (!profiler_) return;
  if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
  const ProfileThreads events = profiler_->stop();
  profiler_.reset();
  ProfileReport rep = aggregate_profile(events, training_phases());
  rep.steps = last_step - first_ + 1;
  rep.first_step = first_;
  rep.wall_ms =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count() * 1000.0;
  rep.device = device_description(device_);
  const std::string table = profile_table(rep, 15);
  std::ofstream(fs::path(run_dir_) / "profile.csv") << profile_csv(rep);
  std::ofstream(fs::path(run_dir_) / "profile.txt") << table;
  log_info("profile of steps {}..{}: {} and profile.txt\n{}", first_, last_step,
           (fs::path(run_dir_) / "profile.csv").string(), table);
}

}  // namespace fluxtrain
