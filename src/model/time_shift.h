// FLUX's timestep shift, shared by training (timestep sampling) and sampling (the schedule).
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace fluxtrain {

// mu for FLUX's resolution-dependent shift: linear in image tokens, 0.5 at 256, 1.15 at 4096.
double flux_shift_mu(int64_t image_tokens, double base_shift = 0.5, double max_shift = 1.15);
// t' = e^mu / (e^mu + (1/t - 1)^sigma), with t' = 0 at t = 0 and 1 at t = 1.
torch::Tensor time_shift(double mu, double sigma, const torch::Tensor& t);
// t' = s t / (1 + (s - 1) t) (SD3-style constant shift); equals time_shift(ln s, 1, t).
torch::Tensor constant_shift(double s, const torch::Tensor& t);

}  // namespace fluxtrain
