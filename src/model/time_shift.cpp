// Timestep shift (see time_shift.h).
#include "model/time_shift.h"

#include <cmath>

namespace fluxtrain {

double flux_shift_mu(int64_t image_tokens, double base_shift, double max_shift) {
  const double x1 = 256, x2 = 4096;
  const double m = (max_shift - base_shift) / (x2 - x1);
  return m * static_cast<double>(image_tokens) + (base_shift - m * x1);
}

torch::Tensor time_shift(double mu, double sigma, const torch::Tensor& t) {
  auto td = t.to(torch::kDouble);
  auto shifted = std::exp(mu) / (std::exp(mu) + torch::pow(1.0 / td - 1.0, sigma));
  shifted = torch::where(td <= 0, torch::zeros_like(td), shifted);
  shifted = torch::where(td >= 1, torch::ones_like(td), shifted);
  return shifted.to(t.scalar_type());
}

torch::Tensor constant_shift(double s, const torch::Tensor& t) {
  return s * t / (1 + (s - 1) * t);
}

}  // namespace fluxtrain
