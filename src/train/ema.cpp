// Weight EMA (see ema.h).
#include "train/ema.h"

#include "core/device.h"
#include "core/errors.h"

namespace fluxtrain {

Ema::Ema(const AdamW::Named& params, double decay, bool on_cpu) : params_(params), decay_(decay) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params_)
    shadow_.push_back(
        p.detach().to(on_cpu ? torch::Device(torch::kCPU) : p.device(), torch::kFloat).clone());
}

double Ema::decay_at(int64_t step) const {
  return std::min(decay_, (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step)));
}

void Ema::update(int64_t step) {
  torch::NoGradGuard no_grad;
  const double d = decay_at(step);
  for (size_t i = 0; i < params_.size(); ++i)
    shadow_[i].mul_(d).add_(params_[i].second.detach().to(shadow_[i].device(), torch::kFloat),
                            1.0 - d);
}

void Ema::with_averaged_weights(const std::function<void()>& fn) {
  std::vector<torch::Tensor> live;
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
      live.push_back(params_[i].second.detach().clone());
      params_[i].second.copy_(shadow_[i]);
    }
  }
  auto restore = [&] {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) params_[i].second.copy_(live[i]);
  };
  try {
    fn();
  } catch (...) {
    restore();
    throw;
  }
  restore();
}

AdamW::Named Ema::tensors() const {
  AdamW::Named out;
  for (size_t i = 0; i < params_.size(); ++i) out.emplace_back(params_[i].first, shadow_[i]);
  return out;
}

void Ema::load(const std::function<torch::Tensor(const std::string&)>& get,
               const std::string& origin) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto t = get(params_[i].first);
    if (!t.defined()) user_error("{}: EMA weight '{}' is missing", origin, params_[i].first);
    if (t.sizes() != shadow_[i].sizes())
      user_error("{}: EMA weight '{}' has shape {}, expected {}", origin, params_[i].first,
                 shape_str(t.sizes()), shape_str(shadow_[i].sizes()));
    shadow_[i].copy_(t.to(shadow_[i].device(), torch::kFloat));
  }
}

}  // namespace fluxtrain
