// profile_steps: libtorch's profiler over the last N training steps of a run (never the
// process's first step, which pays one-time costs, unless it is the only one), written as
// profile.csv and profile.txt (top 15 ops and the phases) in the run directory. A validation or
// a stop inside that stretch ends the profile early, so only training steps are measured.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "train/profiler.h"

namespace fluxtrain {

class StepProfiler {
 public:
  // Profiles steps max(total - n, first + 1) + 1 .. total (1-based), first = the step the
  // process starts at; n = 0: off.
  StepProfiler(int64_t n, int64_t first_step, int64_t total_steps, torch::Device device,
               std::string run_dir);
  // Before running step `step` + 1 (0-based `step` steps done).
  void before_step(int64_t step);
  bool active() const { return profiler_ != nullptr; }
  // Ends the profile after step `last_step` (1-based) and writes its files; a no-op when idle.
  void finish(int64_t last_step);

 private:
  int64_t n_, from_;
  torch::Device device_;
  std::string run_dir_;
  std::unique_ptr<OpProfiler> profiler_;
  std::chrono::steady_clock::time_point t0_;
  int64_t first_ = 0;  // first profiled step (1-based); 0 = not started
};

}  // namespace fluxtrain
