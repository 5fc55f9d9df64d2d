// The optimizer step inside backward (optimizer_in_backward): each trainable parameter is
// updated by AdamW the moment autograd has accumulated its gradient, and the gradient is freed
// then, so a step holds at most the gradients of the tensors in flight instead of all of them
// (PyTorch's register_post_accumulate_grad_hook recipe; kohya's fused_backward_pass).
//
// Gradient clipping: the global norm is known only once backward is over, after the updates, so
// max_grad_norm clips each parameter's gradient by its own L2 norm (what kohya's and OneTrainer's
// fused passes do), not all of them by the global one. The global norm (before clipping) is
// still measured and logged. No gradient accumulation: each backward is one step.
#pragma once
#include <torch/torch.h>

#include <atomic>
#include <memory>
#include <vector>

#include "train/optimizer.h"

namespace torch::autograd {
struct Node;
}

namespace fluxtrain {

class OptimizerInBackward {
 public:
  // Hooks `optimizer`'s parameters (their gradient accumulators, which this keeps alive).
  OptimizerInBackward(AdamW& optimizer, double max_grad_norm);
  ~OptimizerInBackward();
  // Before a step's backward: the hooks update with learning rate `lr` (AdamW::begin_step).
  void arm(double lr);
  // After the backward: the global gradient norm before clipping (float64 accumulation); the
  // hooks are off until the next arm().
  double finish();
  int64_t updated() const { return updated_; }  // parameters updated in the last step

 private:
  struct Hook;
  void on_gradient(size_t i);
  AdamW& optimizer_;
  double max_norm_, lr_ = 0;
  std::vector<torch::Tensor> squares_;  // per parameter: its gradient's squared norm (float64)
  bool armed_ = false;
  // (Hooks of host parameters, block swap's, run in the thread that called backward while CUDA
  // parameters' run in the device's autograd thread: the count is atomic; each hook writes only
  // its own parameter's slot of squares_.)
  std::atomic<int64_t> updated_{0};
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
};

}  // namespace fluxtrain
