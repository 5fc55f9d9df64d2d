// MLPerf validation-loss accumulation (see validation_loss.h).
#include "train/validation_loss.h"

namespace fluxtrain {

ValidationLoss::ValidationLoss(int64_t timesteps)
    : sums_(torch::zeros({timesteps}, torch::kDouble)),
      counts_(torch::zeros({timesteps}, torch::kDouble)) {}

void ValidationLoss::add(const torch::Tensor& losses, const torch::Tensor& timestep_indices) {
  auto index = timestep_indices.to(torch::kCPU, torch::kLong);
  TORCH_CHECK(losses.dim() == 1 && index.sizes() == losses.sizes(),
              "ValidationLoss::add: losses and timestep indices must both be [B]");
  TORCH_CHECK(index.numel() == 0 ||
                  (index.min().item<int64_t>() >= 0 && index.max().item<int64_t>() < sums_.size(0)),
              "ValidationLoss::add: a timestep index outside [0, ", sums_.size(0), ")");
  sums_.scatter_add_(0, index, losses.detach().to(torch::kCPU, torch::kDouble));
  counts_.scatter_add_(0, index, torch::ones(index.sizes(), torch::kDouble));
}

void ValidationLoss::all_reduce(DistContext& dist) {
  dist.all_reduce_sum(sums_);
  dist.all_reduce_sum(counts_);
}

double ValidationLoss::value() const {
  const double* sum = sums_.data_ptr<double>();
  const double* count = counts_.data_ptr<double>();
  double total = 0;
  int used = 0;
  for (int64_t k = 0; k < sums_.size(0); ++k)
    if (count[k] > 0) total += sum[k] / count[k], ++used;
  return used ? total / used : 0.0;
}

}  // namespace fluxtrain
