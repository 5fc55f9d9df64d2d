// fluxtrain's one linear layer: y = x W^T + b with parameters "weight" [out, in] and "bias"
// [out] (the names torch::nn::Linear registers, so checkpoints keep their keys), and the single
// place where an adapter (LoRA, DoRA: model/lora_adapter.h) attaches. An adapter's tensors are
// not registered as parameters of the layer: the module's state dict stays the base model's,
// and the method that owns the adapters (train/lora_model.h) lists, saves and loads them.
#pragma once
#include <torch/torch.h>

#include <memory>

namespace fluxtrain {

struct LinearImpl;

// Computes the adapted output of `base` for input x from the base output x W^T + b.
class LinearAdapter {
 public:
  virtual ~LinearAdapter() = default;
  // x: [..., in]; base_out: [..., out] -> [..., out].
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& base_out,
                                const LinearImpl& base) = 0;
};

struct LinearImpl : torch::nn::Module {
  // Initialised as torch::nn::Linear is (weight Kaiming-uniform with a = sqrt(5), bias
  // U(-1/sqrt(in), 1/sqrt(in))), drawing the same numbers in the same order.
  LinearImpl(int64_t in_features, int64_t out_features, bool with_bias = true);
  // x: [..., in] -> [..., out].
  torch::Tensor forward(const torch::Tensor& x);

  int64_t in_features, out_features;
  torch::Tensor weight, bias;              // bias undefined without one
  std::shared_ptr<LinearAdapter> adapter;  // null: the plain layer
};
TORCH_MODULE(Linear);

}  // namespace fluxtrain
