// AdamW (see optimizer.h).
#include "train/optimizer.h"

#include <cmath>

#include "core/device.h"
#include "core/errors.h"

namespace fluxtrain {

AdamW::AdamW(Named params, AdamWOptions options) : params_(std::move(params)), opt_(options) {
  for (const auto& [name, p] : params_) {
    auto opts = p.options().dtype(opt_.state_dtype);
    exp_avg_.push_back(torch::zeros(p.sizes(), opts));
    exp_avg_sq_.push_back(torch::zeros(p.sizes(), opts));
  }
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++step_;
  const double bc1 = 1 - std::pow(opt_.beta1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(opt_.beta2, static_cast<double>(step_));
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i].second;
    if (!p.grad().defined()) continue;
    auto g = p.grad().to(torch::kFloat);
    const bool fp32_state = opt_.state_dtype == torch::kFloat;
    // Low-precision state: update in fp32, store rounded.
    auto m = fp32_state ? exp_avg_[i] : exp_avg_[i].to(torch::kFloat);
    auto v = fp32_state ? exp_avg_sq_[i] : exp_avg_sq_[i].to(torch::kFloat);
    m.mul_(opt_.beta1).add_(g, 1 - opt_.beta1);
    v.mul_(opt_.beta2).addcmul_(g, g, 1 - opt_.beta2);
    if (!fp32_state) {
      exp_avg_[i].copy_(m);
      exp_avg_sq_[i].copy_(v);
    }
    auto denom = (v.sqrt() / std::sqrt(bc2)).add_(opt_.eps);
    if (p.scalar_type() == torch::kFloat) {
      if (opt_.weight_decay != 0) p.mul_(1 - lr * opt_.weight_decay);
      p.addcdiv_(m, denom, -lr / bc1);
    } else {  // low-precision weights: update in fp32, round once
      auto pf = p.to(torch::kFloat);
      if (opt_.weight_decay != 0) pf.mul_(1 - lr * opt_.weight_decay);
      pf.addcdiv_(m, denom, -lr / bc1);
      p.copy_(pf);
    }
  }
}

void AdamW::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
}

AdamW::Named AdamW::state_tensors() const {
  Named out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("exp_avg." + params_[i].first, exp_avg_[i]);
    out.emplace_back("exp_avg_sq." + params_[i].first, exp_avg_sq_[i]);
  }
  return out;
}

void AdamW::load_state(const std::function<torch::Tensor(const std::string&)>& get, int64_t steps,
                       const std::string& origin) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto [prefix, dst] : {std::pair<const char*, torch::Tensor*>{"exp_avg.", &exp_avg_[i]},
                               {"exp_avg_sq.", &exp_avg_sq_[i]}}) {
      const std::string name = prefix + params_[i].first;
      auto t = get(name);
      if (!t.defined()) user_error("{}: optimizer state '{}' is missing", origin, name);
      if (t.sizes() != dst->sizes())
        user_error("{}: optimizer state '{}' has shape {}, expected {}", origin, name,
                   shape_str(t.sizes()), shape_str(dst->sizes()));
      dst->copy_(t.to(dst->device(), dst->scalar_type()));
    }
  }
  step_ = steps;
}

double clip_grad_norm(const AdamW::Named& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> sq;
  for (const auto& [name, p] : params)
    if (p.grad().defined()) sq.push_back(p.grad().to(torch::kDouble).pow(2).sum());
  if (sq.empty()) return 0.0;
  const double norm = std::sqrt(torch::stack(sq).sum().item<double>());
  if (max_norm > 0 && norm > max_norm) {
    const double coef = max_norm / (norm + 1e-6);
    for (const auto& [name, p] : params)
      if (p.grad().defined()) p.grad().mul_(coef);
  }
  return norm;
}

}  // namespace fluxtrain
