// The memory plan: a training run's peak memory predicted part by part by arithmetic over the
// model's shapes and the run's options, before anything is allocated (`fluxtrain info --method
// ...`, `memory_budget_gb`). Parts:
//   weights      the transformer (8-bit block weights with base_weights), the trained extras
//                (LoRA adapters, the ControlNet) in float32
//   gradients    one per trainable value, in its dtype (optimizer_in_backward: the largest
//                trainable tensor's only)
//   optimizer    AdamW's two moments (fp32 8 B, bf16 4 B, int8 2 B + 8 B per block of
//                optimizer_block_size; tensors under 4096 values stay fp32)
//   ema          float32 copies of the trainable values (0 on the device with ema_on_cpu)
//   activations  what backward keeps, per token and block, counted from the blocks' code (see
//                memory_plan.cpp): 27 H per token of a double block, 24 H of a single block, in
//                the compute dtype, plus on the CPU each block's attention probabilities
//                (heads x L^2 float32: libtorch's math attention); a checkpointed block keeps
//                its input (1 H per token) and one block at a time is recomputed in full
//   workspace    the transients: the gradients of one block's activations in its backward (as
//                large as what it keeps), one block's attention scores and probabilities in
//                forward (CPU), one layer's dequantized weight (8-bit bases)
// What the arithmetic leaves out: allocator fragmentation and caching, the CUDA context, the text
// encoders and VAE (released or small during training), the process's own code and libraries.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/flux.h"
#include "train/train_options.h"

namespace fluxtrain {

struct MemoryPart {
  std::string name;  // weights, gradients, optimizer, ema, activations, workspace
  double bytes = 0;
  std::string how;  // one line: what was counted
};

struct MemoryPlan {
  std::vector<MemoryPart> parts;
  std::string setting;  // "lora rank 16 (attn_mlp), 1024 image + 512 text tokens, batch 1, ..."
  double total() const;
  double part(const std::string& name) const;  // bytes of one part (0 if absent)
};

// The plan for training `params` with options `o` (method, savers, batch_size, weights /
// precision dtypes, device) on `image_tokens` + `text_tokens` tokens per sample (the image tokens
// of o.resolution: (resolution / (ae_factor x 2))^2).
MemoryPlan plan_training_memory(const TrainOptions& o, const FluxParams& params,
                                int64_t image_tokens, int64_t text_tokens);

// "weights 22.17 GiB (...)" lines and the total, for `info` and the logs.
std::string format_memory_plan(const MemoryPlan& plan);

// memory_budget_gb: turns on savers the user left at their defaults, in order, until the plan
// fits `budget_bytes`: gradient_checkpointing, optimizer_state int8, base_weights int8 (lora and
// controlnet), optimizer_in_backward (grad_accum 1), last the fewest blocks_to_swap that fit
// (block_swap.h). `explicitly_set` names the keys the user
// gave (never changed). Returns the savers turned on ("gradient_checkpointing", ...); UserError
// naming the budget and the smallest plan when even all of them do not fit.
std::vector<std::string> fit_memory_budget(TrainOptions& o, const FluxParams& params,
                                           int64_t image_tokens, int64_t text_tokens,
                                           double budget_bytes,
                                           const std::vector<std::string>& explicitly_set);

// `train` with memory_budget_gb > 0: the plan for the configuration's model (a preset or a model
// path's headers), savers turned on in `cfg` by fit_memory_budget (so config.yaml records them),
// the choice and the plan logged. Returns the savers turned on.
std::vector<std::string> apply_memory_budget(Config& cfg);

}  // namespace fluxtrain
