// The MLPerf validation loss: every validation sample carries a timestep index i in 0..7 and is
// scored at t = i / 8; the loss is the mean over indices of each index's mean loss. Sums and
// counts accumulate per index in float64 tensors (scatter_add_, as torchtitan accumulates its
// validation), so that ranks can all-reduce them before the means are taken.
#pragma once
#include <torch/torch.h>

#include "dist/context.h"

namespace fluxtrain {

class ValidationLoss {
 public:
  explicit ValidationLoss(int64_t timesteps = 8);
  // losses [B] (any floating dtype), timestep_indices [B] int64 in [0, timesteps).
  void add(const torch::Tensor& losses, const torch::Tensor& timestep_indices);
  // Sums and counts over every rank.
  void all_reduce(DistContext& dist);
  // Mean over the indices that have samples of sum / count; 0 with no samples.
  double value() const;
  const torch::Tensor& sums() const { return sums_; }      // [timesteps] float64
  const torch::Tensor& counts() const { return counts_; }  // [timesteps] float64

 private:
  torch::Tensor sums_, counts_;
};

}  // namespace fluxtrain
