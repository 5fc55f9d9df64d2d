// Learning-rate schedules: constant, warmup_hold, cosine (with warmup) and linear (with warmup).
#pragma once
#include <cstdint>
#include <string>

namespace fluxtrain {

struct LrSchedule {
  std::string kind = "constant";  // constant | warmup_hold | cosine | linear
  double base_lr = 1e-4;
  int64_t warmup_steps = 0;  // linear ramp from lr/warmup to lr (not used by constant)
  int64_t total_steps = 1;
  double min_lr_ratio = 0.0;  // floor of cosine / linear decay, as a fraction of base_lr
  // Learning rate for optimizer step `step` (0-based).
  double at(int64_t step) const;
};

}  // namespace fluxtrain
