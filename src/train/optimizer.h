// AdamW with decoupled weight decay, named parameters so that its state saves to and loads from
// a checkpoint by name. Moments in fp32, bf16, or 8 bits block-wise (bitsandbytes' 8-bit AdamW:
// train/block_quantized.h; tensors under min_8bit_size elements keep fp32 moments, as there).
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "train/block_quantized.h"

namespace fluxtrain {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  torch::ScalarType state_dtype = torch::kFloat;  // fp32, or bf16 to halve optimizer memory
  bool state_8bit = false;                        // 8-bit block-wise moments (state_dtype unused)
  int64_t block_size = 256, min_8bit_size = 4096;
};

class AdamW {
 public:
  using Named = std::vector<std::pair<std::string, torch::Tensor>>;
  AdamW(Named params, AdamWOptions options);

  // One update with learning rate lr from each parameter's .grad() (parameters without a gradient
  // are skipped, as torch does).
  void step(double lr);
  void zero_grad();
  // step() in parts, for the update inside backward (train/optimizer_in_backward.h): one call
  // of begin_step() per step, then update(i, grad) for each parameter as its gradient is ready.
  void begin_step();
  void update(size_t i, const torch::Tensor& grad, double lr);
  int64_t steps_taken() const { return step_; }
  const Named& params() const { return params_; }

  // "exp_avg.<name>" and "exp_avg_sq.<name>" for every parameter; 8-bit moments as
  // "<moment>.<name>.q8" (uint8 codes) and "<moment>.<name>.absmax" (float32 per block), so that
  // a resumed run continues from the very same state.
  Named state_tensors() const;
  // Restores state from tensors named as state_tensors() writes them; throws UserError naming a
  // missing or mis-shaped tensor.
  void load_state(const std::function<torch::Tensor(const std::string&)>& get, int64_t steps,
                  const std::string& origin);

 private:
  Named params_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;       // dense moments (undefined when 8-bit)
  std::vector<BlockQuantized> exp_avg_q_, exp_avg_sq_q_;  // 8-bit moments (empty when dense)
  AdamWOptions opt_;
  int64_t step_ = 0;
};

// Global L2 norm of all gradients; if max_norm > 0, gradients are scaled so the norm is at most
// max_norm. Returns the norm before clipping (float64 accumulation).
double clip_grad_norm(const AdamW::Named& params, double max_norm);

}  // namespace fluxtrain
