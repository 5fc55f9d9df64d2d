// AdamW (see optimizer.h).
#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "core/device.h"
#include "core/errors.h"

namespace fluxtrain {

AdamW::AdamW(Named params, AdamWOptions options) : params_(std::move(params)), opt_(options) {
  for (const auto& [name, p] : params_) {
    const bool q8 = opt_.state_8bit && p.numel() >= opt_.min_8bit_size;
    auto opts = p.options().dtype(opt_.state_8bit ? torch::kFloat : opt_.state_dtype);
    exp_avg_.push_back(q8 ? torch::Tensor() : torch::zeros(p.sizes(), opts));
    exp_avg_sq_.push_back(q8 ? torch::Tensor() : torch::zeros(p.sizes(), opts));
    exp_avg_q_.push_back(q8 ? BlockQuantized(p.sizes().vec(), p.device(), opt_.block_size, true)
                            : BlockQuantized());
    exp_avg_sq_q_.push_back(q8 ? BlockQuantized(p.sizes().vec(), p.device(), opt_.block_size, false)
                               : BlockQuantized());
  }
}

void AdamW::step(double lr) {
  begin_step();
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].second.grad().defined()) update(i, params_[i].second.grad(), lr);
}

void AdamW::begin_step() {
  ++step_;
}

void AdamW::update(size_t i, const torch::Tensor& grad, double lr) {
  torch::NoGradGuard no_grad;
  const double bc1 = 1 - std::pow(opt_.beta1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(opt_.beta2, static_cast<double>(step_));
  auto& p = params_[i].second;
  auto g = grad.to(torch::kFloat);
  const bool q8 = !exp_avg_[i].defined();
  const bool fp32_state = !q8 && exp_avg_[i].scalar_type() == torch::kFloat;
  // Low-precision state: update in fp32, store rounded (8-bit: the update uses the fp32
  // moments, then they are stored quantised, as bitsandbytes' kernels do).
  auto m =
      q8 ? exp_avg_q_[i].dequantize() : (fp32_state ? exp_avg_[i] : exp_avg_[i].to(torch::kFloat));
  auto v = q8 ? exp_avg_sq_q_[i].dequantize()
              : (fp32_state ? exp_avg_sq_[i] : exp_avg_sq_[i].to(torch::kFloat));
  m.mul_(opt_.beta1).add_(g, 1 - opt_.beta1);
  v.mul_(opt_.beta2).addcmul_(g, g, 1 - opt_.beta2);
  if (q8) {
    exp_avg_q_[i].assign(m);
    exp_avg_sq_q_[i].assign(v);
  } else if (!fp32_state) {
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

void AdamW::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
}

AdamW::Named AdamW::state_tensors() const {
  Named out;  // (handles sharing the state's storage: load_state copies into them)
  for (size_t i = 0; i < params_.size(); ++i) {
    const std::string& n = params_[i].first;
    if (exp_avg_[i].defined()) {
      out.emplace_back("exp_avg." + n, exp_avg_[i]);
      out.emplace_back("exp_avg_sq." + n, exp_avg_sq_[i]);
    } else {
      out.emplace_back("exp_avg." + n + ".q8", exp_avg_q_[i].codes);
      out.emplace_back("exp_avg." + n + ".absmax", exp_avg_q_[i].absmax);
      out.emplace_back("exp_avg_sq." + n + ".q8", exp_avg_sq_q_[i].codes);
      out.emplace_back("exp_avg_sq." + n + ".absmax", exp_avg_sq_q_[i].absmax);
    }
  }
  return out;
}

void AdamW::load_state(const std::function<torch::Tensor(const std::string&)>& get, int64_t steps,
                       const std::string& origin) {
  torch::NoGradGuard no_grad;
  for (auto& [name, dst] : state_tensors()) {
    auto t = get(name);
    if (!t.defined())
      user_error(
          "{}: optimizer state '{}' is missing (optimizer_state differs from the run that "
          "wrote it?)",
          origin, name);
    if (t.sizes() != dst.sizes())
      user_error("{}: optimizer state '{}' has shape {}, expected {}", origin, name,
                 shape_str(t.sizes()), shape_str(dst.sizes()));
    dst.copy_(t.to(dst.device(), dst.scalar_type()));
  }
  step_ = steps;
}

double clip_grad_norm(const AdamW::Named& params, double max_norm) {
  torch::NoGradGuard no_grad;
  // Squared norms summed per device (block swap keeps some gradients on the host), then added.
  std::vector<std::pair<torch::Device, std::vector<torch::Tensor>>> sq;
  for (const auto& [name, p] : params) {
    if (!p.grad().defined()) continue;
    auto it = std::find_if(sq.begin(), sq.end(),
                           [&](const auto& d) { return d.first == p.grad().device(); });
    if (it == sq.end()) it = sq.insert(sq.end(), {p.grad().device(), {}});
    // (accumulated in float64 without a float64 copy of the gradient)
    it->second.push_back(
        torch::linalg_vector_norm(p.grad(), 2, c10::nullopt, false, torch::kDouble).square());
  }
  if (sq.empty()) return 0.0;
  double total = 0;
  for (const auto& [device, parts] : sq) total += torch::stack(parts).sum().item<double>();
  const double norm = std::sqrt(total);
  if (max_norm > 0 && norm > max_norm) {
    const double coef = max_norm / (norm + 1e-6);
    for (const auto& [name, p] : params)
      if (p.grad().defined()) p.grad().mul_(coef);
  }
  return norm;
}

}  // namespace fluxtrain
