// Rectified-flow (flow-matching) training objective: t = 0 is data, t = 1 is noise,
// x_t = (1 - t) x0 + t eps, target v = eps - x0, loss = MSE(v_pred, v).
#pragma once
#include <torch/torch.h>

#include <string>

#include "model/time_shift.h"

namespace fluxtrain {

enum class TimestepSampling { kUniform, kLogitNormal, kShift, kFluxShift };
TimestepSampling parse_timestep_sampling(const std::string& name);  // UserError if unknown

struct TimestepOptions {
  TimestepSampling mode = TimestepSampling::kUniform;
  double logit_mean = 0.0;  // logit_normal, and the base draw of shift / flux_shift
  double logit_std = 1.0;
  double shift = 3.0;  // for `shift`
};

// [batch] timesteps in [0, 1] drawn with `gen`.
//  uniform:      t ~ U(0, 1)
//  logit_normal: t = sigmoid(N(m, s))
//  shift:        t = constant_shift(shift, sigmoid(N(m, s)))
//  flux_shift:   t = time_shift(flux_shift_mu(image_tokens), 1, sigmoid(N(m, s)))
torch::Tensor sample_timesteps(const TimestepOptions& opt, int64_t batch, int64_t image_tokens,
                               at::Generator& gen);

struct FlowMatchingPair {
  torch::Tensor x_t;     // model input
  torch::Tensor target;  // velocity eps - x0
};
// x0, noise: [B, ...]; t: [B].
FlowMatchingPair flow_matching_pair(const torch::Tensor& x0, const torch::Tensor& noise,
                                    const torch::Tensor& t);
// Mean squared error per sample -> [B] (float32).
torch::Tensor flow_matching_loss_per_sample(const torch::Tensor& pred, const torch::Tensor& target);

}  // namespace fluxtrain
