// fluxtrain's linear layer (see linear.h).
#include "model/linear.h"

#include <cmath>

#include "model/block_swap.h"
#include "model/flux.h"

namespace fluxtrain {
namespace {

thread_local BaseWeights g_linear_storage = BaseWeights::kDense;

}  // namespace

LinearStorageScope::LinearStorageScope(BaseWeights kind) : previous_(g_linear_storage) {
  g_linear_storage = kind;
}
LinearStorageScope::~LinearStorageScope() {
  g_linear_storage = previous_;
}
BaseWeights LinearStorageScope::current() {
  return g_linear_storage;
}

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias)
    : in_features(in), out_features(out) {
  const BaseWeights storage = g_linear_storage;
  const bool deferred = storage != BaseWeights::kDense;
  weight = register_parameter("weight", deferred ? torch::empty({0}) : torch::empty({out, in}),
                              /*requires_grad=*/!deferred);
  if (deferred) {
    quantized = std::make_shared<QuantizedWeight>();
    quantized->kind = storage;
  }
  if (with_bias) bias = register_parameter("bias", torch::empty({out}));
  torch::NoGradGuard no_grad;
  if (!deferred) torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (with_bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y;
  if (swap) {
    y = swapped_linear(x, *this);
  } else if (quantized) {
    TORCH_CHECK(quantized->codes.defined(), "Linear: 8-bit weight not loaded");
    y = quantized_linear(x, *quantized, bias);
  } else {
    y = torch::nn::functional::linear(x, weight, bias);
  }
  return adapter ? adapter->forward(x, y, *this) : y;
}

void LinearImpl::quantize_weight(BaseWeights kind) {
  if (kind == BaseWeights::kDense || quantized) return;
  set_quantized(QuantizedWeight::quantize(weight, kind));
}

void LinearImpl::set_quantized(QuantizedWeight w) {
  TORCH_CHECK(
      w.codes.dim() == 2 && w.codes.size(0) == out_features && w.codes.size(1) == in_features,
      "Linear: quantized weight of the wrong shape");
  if (!swap) w.to(weight.device());  // (a swapped layer's weights stay where they are given)
  quantized = std::make_shared<QuantizedWeight>(std::move(w));
  torch::NoGradGuard no_grad;
  weight.set_requires_grad(false);
  weight.set_data(torch::empty({0}, weight.options()));
}

torch::Tensor LinearImpl::dense_weight() const {
  if (swap) return swapped_dense_weight(*this);
  return quantized ? quantized->dequantize(torch::kFloat) : weight.to(torch::kFloat);
}

torch::Device LinearImpl::device() const {
  return swap ? swap->swap->device() : weight.device();
}

void LinearImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  if (swap) {
    to(dtype, non_blocking);
    return to(device, non_blocking);
  }
  torch::nn::Module::to(device, dtype, non_blocking);
  if (quantized && quantized->codes.defined()) quantized->to(device);
}
void LinearImpl::to(torch::Dtype dtype, bool non_blocking) {
  if (!swap) return torch::nn::Module::to(dtype, non_blocking);
  torch::NoGradGuard no_grad;
  if (bias.defined()) bias.set_data(bias.to(dtype));
  // The swapped weight lives in its block's host buffer (page-locked on CUDA); converting it
  // would leave that buffer behind: every loader converts before enabling the swap.
  if (!quantized && weight.scalar_type() != dtype)
    throw std::logic_error("Linear: convert the model's dtype before enable_block_swap");
}
void LinearImpl::to(torch::Device device, bool non_blocking) {
  if (swap) {
    torch::NoGradGuard no_grad;
    if (bias.defined()) bias.set_data(bias.to(device, non_blocking));
    return;
  }
  torch::nn::Module::to(device, non_blocking);
  if (quantized && quantized->codes.defined()) quantized->to(device);
}

std::vector<std::pair<std::string, LinearImpl*>> flux_linear_layers(torch::nn::Module& model) {
  std::vector<std::pair<std::string, LinearImpl*>> out;
  for (const auto& item : model.named_modules("", /*include_self=*/false))
    if (auto* l = item.value()->as<LinearImpl>()) out.emplace_back(item.key(), l);
  return out;
}

int64_t quantize_block_weights(torch::nn::Module& model, BaseWeights kind) {
  int64_t bytes = 0;
  for (const auto& [name, layer] : flux_linear_layers(model)) {
    if (is_flux_block_name(name)) layer->quantize_weight(kind);
    bytes += layer->quantized ? layer->quantized->bytes()
                              : layer->weight.numel() * layer->weight.element_size();
  }
  return bytes;
}

}  // namespace fluxtrain
