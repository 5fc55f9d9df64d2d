// Exponential moving average of the trainable weights (used for validation, evaluation and
// sampling when enabled): ema = d * ema + (1 - d) * w after every optimizer step, with the
// warm-up d_t = min(decay, (1 + t) / (10 + t)) so that early averages are not dominated by init.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>

#include "train/optimizer.h"

namespace fluxtrain {

class Ema {
 public:
  // on_cpu: the averages live in CPU memory (the update copies each weight over), which frees
  // the device of a second fp32 copy of the trainable weights.
  Ema(const AdamW::Named& params, double decay, bool on_cpu = false);
  // After optimizer step number `step` (1-based).
  void update(int64_t step);
  double decay_at(int64_t step) const;
  // Runs fn with the averaged weights in place of the live ones, then puts the live ones back.
  void with_averaged_weights(const std::function<void()>& fn);
  // "<name>" for every parameter (fp32).
  AdamW::Named tensors() const;
  void load(const std::function<torch::Tensor(const std::string&)>& get, const std::string& origin);

 private:
  AdamW::Named params_;
  std::vector<torch::Tensor> shadow_;
  double decay_;
};

}  // namespace fluxtrain
