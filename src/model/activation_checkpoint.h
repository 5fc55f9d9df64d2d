// Reentrant activation (gradient) checkpointing: run a piece of the model without keeping its
// intermediate activations, and recompute them in backward. libtorch has no
// torch.utils.checkpoint; this is the reentrant variant of it.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace fluxtrain {

// A pure function of its tensor inputs (and of module parameters it reaches): tensor inputs in,
// tensor outputs out. Non-tensor arguments are captured by the lambda.
using CheckpointedFn = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;

// Runs fn(inputs) under NoGradGuard and keeps only `inputs` for backward. Backward re-runs fn on
// detached copies of the inputs with grad enabled, under the autocast state (CPU and CUDA: on/off
// and dtype) that forward ran under, then back-propagates the incoming output gradients through
// that recomputation: parameters fn uses accumulate their .grad as without checkpointing, and
// the inputs receive their gradients (none for inputs that do not require grad).
//
// Random numbers fn draws from the default generator of its inputs' device (dropout in LoRA
// adapters) are drawn again in the recomputation: that generator's state is saved in forward and
// restored around the recomputation (torch.utils.checkpoint's preserve_rng_state). Inputs must not be modified in place before backward (the saved-tensor version check
// reports it). Double backward (create_graph) is not supported.
// Outputs are fn's, tied to one graph node; with grad disabled this is just fn(inputs).
std::vector<torch::Tensor> activation_checkpoint(const CheckpointedFn& fn,
                                                 const std::vector<torch::Tensor>& inputs);

}  // namespace fluxtrain
