// Learning-rate schedules (see schedule.h).
#include "train/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/errors.h"

namespace fluxtrain {

double LrSchedule::at(int64_t step) const {
  if (kind == "constant") return base_lr;
  if (warmup_steps > 0 && step < warmup_steps)
    return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (kind == "warmup_hold") return base_lr;
  const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = std::clamp(static_cast<double>(step - warmup_steps) / span, 0.0, 1.0);
  const double lo = base_lr * min_lr_ratio;
  if (kind == "cosine") return lo + (base_lr - lo) * 0.5 * (1 + std::cos(M_PI * progress));
  if (kind == "linear") return lo + (base_lr - lo) * (1 - progress);
  user_error("lr_schedule '{}': expected constant, warmup_hold, cosine or linear", kind);
}

}  // namespace fluxtrain
