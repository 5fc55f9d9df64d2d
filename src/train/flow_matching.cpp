// Flow-matching objective and timestep sampling (see flow_matching.h).
#include "train/flow_matching.h"

#include <cmath>

#include "core/errors.h"

namespace fluxtrain {

TimestepSampling parse_timestep_sampling(const std::string& name) {
  if (name == "uniform") return TimestepSampling::kUniform;
  if (name == "logit_normal") return TimestepSampling::kLogitNormal;
  if (name == "shift") return TimestepSampling::kShift;
  if (name == "flux_shift") return TimestepSampling::kFluxShift;
  user_error("timestep_sampling '{}': expected uniform, logit_normal, shift or flux_shift", name);
}

torch::Tensor sample_timesteps(const TimestepOptions& opt, int64_t batch, int64_t image_tokens,
                               at::Generator& gen) {
  if (opt.mode == TimestepSampling::kUniform) return torch::rand({batch}, gen);
  auto t = torch::sigmoid(torch::randn({batch}, gen) * opt.logit_std + opt.logit_mean);
  switch (opt.mode) {
    case TimestepSampling::kShift:
      return constant_shift(opt.shift, t);
    case TimestepSampling::kFluxShift:
      return time_shift(flux_shift_mu(image_tokens), 1.0, t);
    default:
      return t;
  }
}

FlowMatchingPair flow_matching_pair(const torch::Tensor& x0, const torch::Tensor& noise,
                                    const torch::Tensor& t) {
  std::vector<int64_t> shape(x0.dim(), 1);
  shape[0] = x0.size(0);
  auto tb = t.to(x0.scalar_type()).view(shape);
  return {(1 - tb) * x0 + tb * noise, noise - x0};
}

torch::Tensor flow_matching_loss_per_sample(const torch::Tensor& pred,
                                            const torch::Tensor& target) {
  auto d = pred.to(torch::kFloat) - target.to(torch::kFloat);
  return d.pow(2).flatten(1).mean(1);
}

}  // namespace fluxtrain
