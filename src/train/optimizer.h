// AdamW with decoupled weight decay, fp32 state, named parameters so that its state saves to
// and loads from a checkpoint by name.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace fluxtrain {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  torch::ScalarType state_dtype = torch::kFloat;  // fp32, or bf16 to halve optimizer memory
};

class AdamW {
 public:
  using Named = std::vector<std::pair<std::string, torch::Tensor>>;
  AdamW(Named params, AdamWOptions options);

  // One update with learning rate lr from each parameter's .grad() (parameters without a gradient
  // are skipped, as torch does).
  void step(double lr);
  void zero_grad();
  int64_t steps_taken() const { return step_; }
  const Named& params() const { return params_; }

  // "exp_avg.<name>" and "exp_avg_sq.<name>" for every parameter.
  Named state_tensors() const;
  // Restores state from tensors named as state_tensors() writes them; throws UserError naming a
  // missing or mis-shaped tensor.
  void load_state(const std::function<torch::Tensor(const std::string&)>& get, int64_t steps,
                  const std::string& origin);

 private:
  Named params_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  AdamWOptions opt_;
  int64_t step_ = 0;
};

// Global L2 norm of all gradients; if max_norm > 0, gradients are scaled so the norm is at most
// max_norm. Returns the norm before clipping (float64 accumulation).
double clip_grad_norm(const AdamW::Named& params, double max_norm);

}  // namespace fluxtrain
