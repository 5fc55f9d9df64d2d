// LoRA and DoRA adapters on a fluxtrain Linear (model/linear.h), as PEFT computes them.
//
//   LoRA:  y = x W^T + b + s * (drop(x) A^T) B^T                 s = alpha / r
//   DoRA:  y = x W^T + b + (m / n - 1) * (drop(x) W^T) + (m / n) * s * (drop(x) A^T) B^T
//          n = ||W + s B A|| per output row (detached, as PEFT and the DoRA paper do), m the
//          learned magnitude [out], initialised to n so that step 0 equals the base model.
//   A: [r, in] "down", Kaiming-uniform (a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))); B: [out, r]
//   "up", zero. drop: dropout with probability p in training mode only.
// Adapter tensors are float32 masters; they are cast to x's dtype for the matmuls.
#pragma once
#include <torch/torch.h>

#include <cstdint>

#include "model/linear.h"

namespace fluxtrain {

struct LoraAdapterOptions {
  int64_t rank = 16;
  double alpha = 16.0;
  double dropout = 0.0;
  bool dora = false;
};

class LoraAdapter : public LinearAdapter {
 public:
  // PEFT's initialisation for `base`, A drawn from `generator` (a CPU generator), the tensors
  // created on the base weight's device.
  LoraAdapter(const LinearImpl& base, const LoraAdapterOptions& options, at::Generator generator);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& base_out,
                        const LinearImpl& base) override;

  // s * B A, [out, in] float32: what the adapter adds to W (LoRA; DoRA see merged_weight).
  torch::Tensor delta_weight() const;
  // The weight that gives the same output without the adapter (same dtype as `weight`):
  // W + s B A (LoRA); m / ||W + s B A||_row * (W + s B A) (DoRA).
  torch::Tensor merged_weight(const torch::Tensor& weight) const;

  LoraAdapterOptions options;
  double scale;             // alpha / rank
  torch::Tensor down, up;   // A [r, in], B [out, r]: requires grad
  torch::Tensor magnitude;  // [out] (DoRA only)
};

// Per-output-row L2 norm of W + s B A in float32 ([out]): DoRA's n.
torch::Tensor dora_weight_norm(const torch::Tensor& weight, const torch::Tensor& delta);
// The adapted weight in float32: W + delta, or with a DoRA magnitude m [out]
// m / ||W + delta||_row * (W + delta). (The one formula for adapters and merged files.)
torch::Tensor adapted_weight(const torch::Tensor& weight, const torch::Tensor& delta,
                             const torch::Tensor& magnitude);

}  // namespace fluxtrain
