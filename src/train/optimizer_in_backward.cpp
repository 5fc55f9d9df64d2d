// The optimizer step inside backward (see optimizer_in_backward.h).
#include "train/optimizer_in_backward.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <cmath>

namespace fluxtrain {

// Runs after a parameter's AccumulateGrad node: its .grad() is complete.
struct OptimizerInBackward::Hook : torch::autograd::FunctionPostHook {
  Hook(OptimizerInBackward* owner, size_t index) : owner(owner), index(index) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& inputs) override {
    owner->on_gradient(index);
    return outputs;
  }
  OptimizerInBackward* owner;
  size_t index;
};

OptimizerInBackward::OptimizerInBackward(AdamW& optimizer, double max_grad_norm)
    : optimizer_(optimizer), max_norm_(max_grad_norm) {
  const auto& params = optimizer_.params();
  for (size_t i = 0; i < params.size(); ++i) {
    TORCH_CHECK(params[i].second.requires_grad() && params[i].second.is_leaf(),
                "optimizer_in_backward: ", params[i].first, " is not a trainable leaf");
    auto acc = torch::autograd::impl::grad_accumulator(params[i].second);
    acc->add_post_hook(std::make_unique<Hook>(this, i));
    accumulators_.push_back(std::move(acc));
  }
}

OptimizerInBackward::~OptimizerInBackward() {
  // The accumulators may outlive this (a graph still referring to them): take the hooks out.
  for (auto& acc : accumulators_) {
    auto& hooks = acc->post_hooks();
    hooks.erase(std::remove_if(hooks.begin(), hooks.end(),
                               [&](const std::unique_ptr<torch::autograd::FunctionPostHook>& h) {
                                 const auto* mine = dynamic_cast<const Hook*>(h.get());
                                 return mine && mine->owner == this;
                               }),
                hooks.end());
  }
}

void OptimizerInBackward::arm(double lr) {
  optimizer_.begin_step();
  lr_ = lr;
  squares_.assign(optimizer_.params().size(), torch::Tensor());
  updated_ = 0;
  armed_ = true;
}

double OptimizerInBackward::finish() {
  armed_ = false;
  // Summed in parameter order, whatever order backward completed them in (block swap changes
  // that order): the same norm, bit for bit, for the same gradients.
  std::vector<torch::Tensor> parts;
  for (const auto& sq : squares_)
    if (sq.defined()) parts.push_back(parts.empty() ? sq : sq.to(parts.front().device()));
  squares_.clear();
  return parts.empty() ? 0.0 : std::sqrt(torch::stack(parts).sum().item<double>());
}

void OptimizerInBackward::on_gradient(size_t i) {
  auto& p = const_cast<torch::Tensor&>(optimizer_.params()[i].second);
  if (!armed_ || !p.grad().defined()) return;
  torch::NoGradGuard no_grad;
  torch::Tensor g = p.grad();
  // On the device, without a synchronisation per parameter: the factor is 1 (exactly) when the
  // gradient is within max_grad_norm.
  const auto sq =  // (accumulated in float64 without a float64 copy of the gradient)
      torch::linalg_vector_norm(g, 2, c10::nullopt, false, torch::kDouble).square();
  squares_[i] = sq;
  // (in place: the gradient is freed below anyway)
  if (max_norm_ > 0) g.mul_((max_norm_ / (sq.sqrt() + 1e-6)).clamp_max(1.0).to(g.scalar_type()));
  optimizer_.update(i, g, lr_);
  ++updated_;
  p.mutable_grad() = torch::Tensor();  // freed now, not after the whole backward
}

}  // namespace fluxtrain
