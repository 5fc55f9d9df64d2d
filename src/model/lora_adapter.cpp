// LoRA / DoRA adapters (see lora_adapter.h).
#include "model/lora_adapter.h"

#include <cmath>

#include "core/errors.h"

namespace fluxtrain {

torch::Tensor dora_weight_norm(const torch::Tensor& weight, const torch::Tensor& delta) {
  return (weight.to(torch::kFloat) + delta.to(torch::kFloat)).norm(2, {1});
}

LoraAdapter::LoraAdapter(const LinearImpl& base, const LoraAdapterOptions& o,
                         at::Generator generator)
    : options(o), scale(o.alpha / static_cast<double>(o.rank)) {
  if (o.rank <= 0) user_error("lora_rank: {} (expected a positive integer)", o.rank);
  if (!(o.dropout >= 0.0 && o.dropout < 1.0))
    user_error("lora_dropout: {} (expected 0 <= p < 1)", o.dropout);
  const auto dev = base.device();
  torch::NoGradGuard no_grad;
  const double bound = 1.0 / std::sqrt(static_cast<double>(base.in_features));
  down = torch::empty({o.rank, base.in_features}, torch::kFloat)
             .uniform_(-bound, bound, generator)
             .to(dev)
             .requires_grad_(true);
  up = torch::zeros({base.out_features, o.rank}, torch::TensorOptions(torch::kFloat).device(dev))
           .requires_grad_(true);
  if (o.dora)
    magnitude = dora_weight_norm(base.dense_weight(), torch::zeros({}, dev)).requires_grad_(true);
}

torch::Tensor LoraAdapter::delta_weight() const {
  return scale * torch::matmul(up.to(torch::kFloat), down.to(torch::kFloat));
}

torch::Tensor adapted_weight(const torch::Tensor& weight, const torch::Tensor& delta,
                             const torch::Tensor& magnitude) {
  auto w = weight.to(torch::kFloat) + delta.to(torch::kFloat);
  if (!magnitude.defined()) return w;
  return w * (magnitude.to(torch::kFloat) / w.norm(2, {1})).unsqueeze(1);
}

torch::Tensor LoraAdapter::merged_weight(const torch::Tensor& weight) const {
  torch::NoGradGuard no_grad;
  return adapted_weight(weight, delta_weight(), magnitude).to(weight.scalar_type());
}

torch::Tensor LoraAdapter::forward(const torch::Tensor& x, const torch::Tensor& base_out,
                                   const LinearImpl& base) {
  const auto dt = x.scalar_type();
  const bool drop = options.dropout > 0 && base.is_training();
  auto xd = drop ? torch::dropout(x, options.dropout, /*train=*/true) : x;
  auto lora = torch::matmul(torch::matmul(xd, down.to(dt).t()), up.to(dt).t());  // [..., out]
  if (!magnitude.defined()) return base_out + scale * lora;
  // DoRA: the norm of the adapted weight, detached (PEFT, DoRA paper section 4.3).
  const auto w = base.dense_weight().detach();  // (once: 8-bit and swapped layers make it)
  auto norm = dora_weight_norm(w, delta_weight().detach());
  auto mag_norm = (magnitude / norm).to(dt);  // [out], broadcasts over the last dim
  auto wx = drop ? torch::matmul(xd, w.to(dt).t())
                 : (base.bias.defined() ? base_out - base.bias.to(dt) : base_out);
  return base_out + (mag_norm - 1) * wx + mag_norm * (scale * lora);
}

}  // namespace fluxtrain
